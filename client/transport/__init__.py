"""Bus transports. :func:`from_url` is the only place that picks a concrete backend.

``valkey://[:password@]host:port/db`` (also ``redis://``, ``rediss://``), a cluster as
``valkey+cluster://host:port,host:port`` (also ``valkeys+``, ``redis+``, ``rediss+cluster``),
``nsq://lookupd-host:4161[,more]`` or ``nsq://?nsqd=host:4150[,more]``, ``memory://[name]``.
Transport options travel as query parameters (``?visibility_timeout_s=30``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, urlsplit

from ..errors import ConfigError
from ._redis_import import import_redis
from .base import ChannelStats, DeadLetter, Delivery, Inbox, Subscription, Transport

__all__ = [
    "ChannelStats",
    "DeadLetter",
    "Delivery",
    "Inbox",
    "Subscription",
    "Transport",
    "from_url",
    "valid_name",
]

_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}(#ephemeral)?$")


def valid_name(name: str) -> bool:
    """Topic and channel names: 1-64 of ``[A-Za-z0-9._-]`` (NSQ's rule, kept for every bus)."""
    return bool(_NAME.fullmatch(name))


def check_name(kind: str, name: str) -> str:
    if not valid_name(name):
        raise ConfigError(
            kind, f"must be 1-64 characters of letters, digits, '.', '_' or '-', got {name!r}"
        )
    return name


def options(url: str, known: Iterable[str] | None = None) -> dict[str, str]:
    """The query options of a bus URL. With ``known``, other names are logged and ignored
    (not refused: one URL is often shared by processes of different versions)."""
    found = dict(parse_qsl(urlsplit(url).query))
    if known is not None:
        unknown = sorted(set(found) - set(known))
        if unknown:
            logging.getLogger(__name__).warning(
                "bus URL option(s) %s ignored: not known to this version (known: %s)",
                ", ".join(unknown),
                ", ".join(sorted(known)),
            )
    return found


def number_option(name: str, raw: str | None, minimum: float = 0.0) -> float:
    """A numeric bus URL option; ConfigError says which one and why."""
    try:
        value = float(raw or "")
    except ValueError:
        raise ConfigError("bus URL", f"option {name} must be a number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError("bus URL", f"option {name} must be at least {minimum:g}, got {raw!r}")
    return value


def from_url(url: str, *, password: str | None = None) -> Transport:
    """A transport for ``url``, not yet connected. Raises ConfigError for an unknown scheme."""
    scheme = urlsplit(url).scheme
    if scheme.split("+", 1)[0] in ("valkey", "valkeys", "redis", "rediss"):  # and +cluster
        import_redis()  # before a Valkey transport imports redis-py: without OpenTelemetry
    if scheme == "memory":
        from .memory import MemoryTransport

        return MemoryTransport(url)
    if scheme.endswith("+cluster"):  # valkey+cluster://, valkeys+, redis+, rediss+
        from ._valkey_cluster import SCHEMES, ValkeyClusterTransport

        if scheme in SCHEMES:
            return ValkeyClusterTransport(url, password=password)
    if scheme in ("valkey", "valkeys", "redis", "rediss"):
        from .valkey import ValkeyTransport

        return ValkeyTransport(url, password=password)
    if scheme == "nsq":
        try:
            from .nsq import NsqTransport  # type: ignore[import-not-found, unused-ignore]
        except ImportError as e:  # pragma: no cover - until the NSQ backend lands
            raise ConfigError("bus URL", f"nsq:// is not available: {e}") from e
        return NsqTransport(url)  # type: ignore[no-any-return, unused-ignore]
    raise ConfigError(
        "bus URL",
        f"has unknown scheme {scheme!r} in {url!r}: "
        "use valkey://, valkey+cluster://, redis://, nsq:// or memory://",
    )
