"""Bus operations behind apply, publish, call, status and dlq (thin async I/O).

Everything goes through :func:`kubefuncs.transport.from_url`, so the commands work on any
bus the client library speaks (valkey, a Valkey Cluster, nsq, memory). Bus errors become
:class:`BusUnreachable` (exit 3); a bad URL becomes :class:`UsageError` (exit 2).
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from kubefuncs import wire
from kubefuncs.errors import CallTimeout, ConfigError, DecodeError, KubefuncsError, RemoteError

from .errors import BusUnreachable, CallFailed, UsageError

if TYPE_CHECKING:
    from kubefuncs.transport import ChannelStats, DeadLetter, Transport

BUS_HINT = (
    "    fix: pass --bus with an address reachable from here (e.g. after kubectl port-forward)"
)
PREPARE_HINT = f"{BUS_HINT}, or --skip-bus to leave bus preparation to the functions"


@contextlib.asynccontextmanager
async def connected(
    url: str, password: str | None = None, hint: str = BUS_HINT
) -> AsyncIterator[Transport]:
    """A connected transport for ``url``, closed on exit; errors mapped to FunctlError
    (an unreachable bus says ``hint`` on how to fix it)."""
    try:
        transport = _transport(url, password)
    except ConfigError as e:
        raise UsageError(f"bus URL {url!r}: {e.problem}") from e
    try:
        await transport.connect()
        yield transport
    except (ConfigError, DecodeError, CallTimeout, RemoteError):
        raise
    except KubefuncsError as e:
        raise BusUnreachable(f"bus {_safe(url)}: {e}\n{hint}") from e
    except OSError as e:
        raise BusUnreachable(f"cannot reach the bus {_safe(url)}: {e}\n{hint}") from e
    finally:
        await transport.close()


def _transport(url: str, password: str | None) -> Transport:
    """The client library's transport for ``url`` (a Valkey Cluster too)."""
    from kubefuncs.transport import from_url

    return from_url(url, password=password)


def _safe(url: str) -> str:
    """The URL without a password, for messages."""
    head, sep, tail = url.partition("@")
    if not sep or "://" not in head:
        return url
    scheme, _, creds = head.partition("://")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{tail}"


async def prepare(
    url: str,
    password: str | None,
    channels: Sequence[tuple[str, str]],
    progress: Callable[[str], None],
) -> None:
    """Create every topic and channel so messages published before the first replica
    starts (or while a function is scaled to zero) are kept for it."""
    async with connected(url, password, PREPARE_HINT) as transport:
        for topic, channel in channels:
            await transport.ensure_channel(topic, channel)
            progress(f"bus topic {topic} channel {channel} ready")


async def publish(
    url: str,
    password: str | None,
    topic: str,
    payload: Any,
    *,
    headers: Mapping[str, str],
    delay_s: float,
) -> str:
    """Publish one event envelope; returns its message id."""
    env = wire.make(
        topic, payload, kind=wire.EVENT, headers=headers, content_type=content_type(payload)
    )
    async with connected(url, password) as transport:
        await transport.publish(topic, wire.encode(env), delay_s=delay_s)
    return env.id


def content_type(payload: Any) -> str:
    return "application/octet-stream" if isinstance(payload, bytes) else wire.MSGPACK


async def call(
    url: str, password: str | None, topic: str, payload: Any, *, timeout_s: float
) -> Any:
    """Request/reply through :class:`kubefuncs.Client`; the reply payload."""
    from kubefuncs.client import Client

    try:
        async with Client(url, password=password) as client:
            return await client.call(topic, payload, timeout_s=timeout_s)
    except CallTimeout as e:
        raise CallFailed(f"no reply from topic {topic!r} within {timeout_s:g} s: {e}") from e
    except RemoteError as e:
        raise CallFailed(f"topic {topic!r} answered with an error: {e}") from e
    except ConfigError as e:
        raise UsageError(f"bus URL {url!r}: {e.problem}") from e
    except KubefuncsError as e:
        raise BusUnreachable(f"bus {_safe(url)}: {e}\n{BUS_HINT}") from e


async def stats(
    url: str, password: str | None, channels: Sequence[tuple[str, str]]
) -> list[ChannelStats]:
    async with connected(url, password) as transport:
        return [await transport.stats(topic, channel) for topic, channel in channels]


async def dead_letters(
    url: str, password: str | None, topic: str, channel: str, limit: int
) -> list[DeadLetter]:
    async with connected(url, password) as transport:
        return await transport.dead_letters(topic, channel, limit=limit)


async def replay(
    url: str, password: str | None, topic: str, channel: str, ids: list[str] | None
) -> int:
    async with connected(url, password) as transport:
        return await transport.replay_dead(topic, channel, ids)


async def purge(
    url: str, password: str | None, topic: str, channel: str, ids: list[str] | None
) -> int:
    async with connected(url, password) as transport:
        return await transport.purge_dead(topic, channel, ids)


def describe_dead(letter: DeadLetter) -> dict[str, Any]:
    """A dead letter as plain data: its envelope decoded when possible (pure)."""
    out: dict[str, Any] = {
        "id": letter.id,
        "time": datetime.fromtimestamp(letter.time_ms / 1000, UTC).isoformat(timespec="seconds"),
        "attempt": letter.attempt,
        "reason": letter.reason,
    }
    try:
        env = wire.decode(letter.body)
    except DecodeError as e:
        out["undecodable"] = str(e)
        out["body_base64"] = base64.b64encode(letter.body).decode()
        return out
    out.update(
        {
            "message_id": env.id,
            "kind": env.kind,
            "headers": dict(env.headers),
            "payload": plain(wire.payload_to_wire(env.payload)),
        }
    )
    return out


def plain(value: Any) -> Any:
    """msgpack values made JSON-safe: bytes become text (or base64 when not UTF-8)."""
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return {"base64": base64.b64encode(value).decode()}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value
