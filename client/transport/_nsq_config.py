"""NSQ bus URL options and the names the NSQ backend derives (pure functions, no I/O).

``nsq://lookupd-host:4161[,host2:4161]?options`` discovers nsqd nodes through nsqlookupd's
``/nodes``; ``nsq://?nsqd=host:4150[,host:4150]&nsqd_http=host:4151[,...]`` names them
directly (both forms may be combined). See docs/buses.md for every option.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..errors import ConfigError
from ..wire import new_id
from . import number_option, options

DEAD_CHANNEL = "kubefuncs"  # the channel through which dead letters are listed on a dead topic
INBOX_CHANNEL = "kubefuncs#ephemeral"
KNOWN_OPTIONS = frozenset(
    {"nsqd", "nsqd_http", "prefix", "msg_timeout_s", "visibility_timeout_s"}
    | {"max_req_timeout_s", "lookupd_poll_interval_s", "heartbeat_interval_s"}
    | {"output_buffer_timeout_ms", "dial_timeout_s"}
)
_REPLY_TOPIC = re.compile(r"^kf\.r\.[0-9a-f]{32}#ephemeral$")
_WIRE_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$|^[A-Za-z0-9._-]{1,54}#ephemeral$")


@dataclass(frozen=True, slots=True)
class Node:
    """One nsqd: its TCP address (``host:port``) and its HTTP address."""

    tcp: str
    http: str


@dataclass(frozen=True, slots=True)
class NsqConfig:
    """Everything the bus URL says."""

    lookupd_http: tuple[str, ...] = ()
    nsqd: tuple[Node, ...] = ()
    prefix: str = ""
    msg_timeout_s: float | None = None  # sent in IDENTIFY; None = nsqd's --msg-timeout
    max_req_timeout_s: float = 3600.0  # nsqd's --max-req-timeout
    lookupd_poll_interval_s: float = 10.0
    heartbeat_interval_s: int = 30
    output_buffer_timeout_ms: int = 25
    dial_timeout_s: float = 2.0

    @classmethod
    def from_url(cls, url: str) -> NsqConfig:
        parts = urlsplit(url)
        opts = options(url, KNOWN_OPTIONS)
        lookupd = tuple(_addresses(parts.netloc, "lookupd address"))
        nsqd = _nsqd_nodes(opts.pop("nsqd", ""), opts.pop("nsqd_http", ""))
        if not lookupd and not nsqd:
            raise ConfigError(
                "bus URL", f"{url!r} names no nsqlookupd (nsq://host:4161) and no nsqd (?nsqd=)"
            )
        # visibility_timeout_s is the name the other buses use for the same thing
        timeout = opts.get("msg_timeout_s") or opts.get("visibility_timeout_s")
        return cls(
            lookupd_http=lookupd,
            nsqd=nsqd,
            prefix=opts.pop("prefix", ""),
            msg_timeout_s=number_option("msg_timeout_s", timeout, 1.0) if timeout else None,
            max_req_timeout_s=number_option(
                "max_req_timeout_s", opts.pop("max_req_timeout_s", "3600")
            ),
            lookupd_poll_interval_s=number_option(
                "lookupd_poll_interval_s", opts.pop("lookupd_poll_interval_s", "10"), 0.05
            ),
            heartbeat_interval_s=int(
                number_option("heartbeat_interval_s", opts.pop("heartbeat_interval_s", "30"), 1)
            ),
            output_buffer_timeout_ms=int(
                number_option(
                    "output_buffer_timeout_ms", opts.pop("output_buffer_timeout_ms", "25"), 1
                )
            ),
            dial_timeout_s=number_option("dial_timeout_s", opts.pop("dial_timeout_s", "2"), 0.05),
        )

    def wire(self, name: str) -> str:
        """The NSQ name of a kubefuncs topic (``prefix`` + name), checked against NSQ's rule."""
        wire = self.prefix + name
        if not _WIRE_NAME.fullmatch(wire):
            raise ConfigError("topic", f"{wire!r} is not a valid NSQ name (1-64 of [A-Za-z0-9._-])")
        return wire


def wire_channel(name: str) -> str:
    """A channel name checked against NSQ's rule (a final newline would split the command)."""
    if not _WIRE_NAME.fullmatch(name):
        raise ConfigError("channel", f"{name!r} is not a valid NSQ name (1-64 of [A-Za-z0-9._-])")
    return name


def _addresses(raw: str, what: str) -> list[str]:
    out = []
    for item in (a.strip() for a in raw.split(",")):
        if not item:
            continue
        host, sep, port = item.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ConfigError("bus URL", f"{what} {item!r} must be HOST:PORT")
        out.append(item)
    return out


def _nsqd_nodes(tcp_raw: str, http_raw: str) -> tuple[Node, ...]:
    tcp = _addresses(tcp_raw, "nsqd address")
    http = _addresses(http_raw, "nsqd_http address")
    if http and len(http) != len(tcp):
        raise ConfigError("bus URL", "nsqd_http must list one HTTP address per nsqd address")
    if not http:  # nsqd's defaults: TCP 4150, HTTP 4151
        http = [f"{host}:{int(port) + 1}" for host, _, port in (a.rpartition(":") for a in tcp)]
    return tuple(Node(t, h) for t, h in zip(tcp, http, strict=True))


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


# -- derived names --------------------------------------------------------------------------


def side_topic(topic: str, channel: str, kind: str) -> str:
    """The per-channel topic ``<topic>.<channel>.<kind>`` (``kind`` = ``dead`` or ``replay``).

    When that would break NSQ's 64-character rule (or the topic is ephemeral), the name is
    ``<topic[:30]>.<channel[:16]>.<8 hex of sha1("<topic>/<channel>")>.<kind>`` instead."""
    name = f"{topic}.{channel}.{kind}"
    if len(name) <= 64 and "#" not in name:
        return name
    digest = hashlib.sha1(f"{topic}/{channel}".encode()).hexdigest()[:8]
    short = [part.replace("#ephemeral", "")[:limit] for part, limit in ((topic, 30), (channel, 16))]
    return f"{short[0]}.{short[1]}.{digest}.{kind}"


def new_reply_topic() -> str:
    return f"kf.r.{new_id()}#ephemeral"


def reply_address(topic: str, nsqd_tcp: str) -> str:
    """An inbox address: the reply topic and the nsqd its owner reads it on."""
    return f"{topic}@{nsqd_tcp}"


def parse_reply_address(address: str) -> tuple[str, str] | None:
    """``(reply topic, nsqd address)``, or None when ``address`` is no NSQ reply inbox."""
    topic, sep, nsqd = address.rpartition("@")
    if not sep or not _REPLY_TOPIC.fullmatch(topic) or ":" not in nsqd or "\n" in nsqd:
        return None
    return topic, nsqd
