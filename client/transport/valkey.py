"""Valkey / Redis streams backend (Valkey 8, Redis >= 7).

Layout (prefix ``kf``, see docs/protocol.md): a topic is the stream ``kf:topic:<topic>``;
a channel is a consumer group of that name. A channel's retries go to its own stream
``kf:retry:<topic>:<channel>`` (same group name) so they are not fanned out again; dead
letters to ``kf:dead:<topic>:<channel>``. Delayed entries wait in ``kf:delayed:<stream>``
sorted sets (listed in ``kf:delayed``) until :meth:`maintain` moves them. Reply inboxes
are lists ``kf:reply:<id>`` that expire when nobody reads them.

Options (URL query): ``prefix``, ``visibility_timeout_s`` (30), ``block_ms`` (2000),
``trim_interval_s`` (5), ``stale_consumer_s`` (3600; 0 keeps every consumer),
``read_count`` (16: entries taken per read, at most).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio import Redis
from redis.backoff import EqualJitterBackoff
from redis.exceptions import (
    ClusterDownError,
    CrossSlotTransactionError,
    RedisClusterException,
    RedisError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from ..errors import TransportError, Undeliverable
from ..wire import new_id
from . import _valkey_scripts as scripts
from . import check_name, number_option, options
from ._coalesce import Coalescer
from ._valkey_pack import hiredis_packing
from ._valkey_sub import ValkeyDelivery, ValkeyInbox, ValkeySubscription, entry_attempts
from .base import ChannelStats, DeadLetter, Delivery, Inbox, Subscription, Transport

log = logging.getLogger(__name__)

REPLY_TTL_MS = 60_000
PRUNE_EVERY_S = 60.0  # how often maintain() looks for consumers that left
# URL options and their defaults (docs/protocol.md, "Bus URL")
OPTIONS = {
    "prefix": "kf",
    "visibility_timeout_s": "30",
    "block_ms": "2000",
    "trim_interval_s": "5",
    "stale_consumer_s": "3600",
    "read_count": "16",
}
# (a cluster's answers while a master fails over count as the bus being away too)
CONNECTION_ERRORS = (
    RedisConnectionError,
    RedisTimeoutError,
    OSError,
    ClusterDownError,
    TryAgainError,
    RedisClusterException,
)


class Keys:
    """Key names of one prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.streams = f"{prefix}:streams"
        self.delayed_index = f"{prefix}:delayed"
        self.reply_prefix = f"{prefix}:reply:"
        self.delayed_prefix = f"{prefix}:delayed:"

    def topic(self, topic: str) -> str:
        return f"{self.prefix}:topic:{topic}"

    def retry(self, topic: str, channel: str) -> str:
        return f"{self.prefix}:retry:{topic}:{channel}"

    def dead(self, topic: str, channel: str) -> str:
        return f"{self.prefix}:dead:{topic}:{channel}"

    def delayed(self, stream: str) -> str:
        return self.delayed_prefix + stream

    def reply(self) -> str:
        return self.reply_prefix + new_id()

    def hashed(self, kind: str, key: str) -> str:
        """``<prefix>:<kind>:<sha256 of key>``: any key, bounded in length."""
        return f"{self.prefix}:{kind}:{self.digest(key)}"

    def dedupe(self, topic: str, key: str) -> str:
        return self.hashed("dedupe", f"{topic}|{key}")

    @staticmethod
    def digest(key: str) -> str:
        return hashlib.sha256(key.encode()).hexdigest()


def redis_url(url: str) -> str:
    """The redis-py URL for a bus URL: valkey(s):// -> redis(s)://, kubefuncs options dropped."""
    parts = urlsplit(url)
    scheme = {"valkey": "redis", "valkeys": "rediss"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, parts.path, "", ""))


def delayed_member(attempts: int, body: bytes) -> bytes:
    return b"%d\n%s\n%s" % (attempts, new_id().encode(), body)


class ValkeyTransport(Transport):
    """Transport on Valkey/Redis streams; see the module docstring for the layout."""

    def __init__(
        self, url: str, *, password: str | None = None, redis: Redis | None = None
    ) -> None:
        self.url = url
        opts = {**OPTIONS, **options(url, OPTIONS)}
        self.keys = self._make_keys(opts["prefix"])
        self.visibility_timeout_s = number_option(
            "visibility_timeout_s", opts["visibility_timeout_s"], 0.001
        )
        self.block_ms = int(number_option("block_ms", opts["block_ms"]))
        self.trim_interval_s = number_option("trim_interval_s", opts["trim_interval_s"])
        self.stale_consumer_s = number_option("stale_consumer_s", opts["stale_consumer_s"])
        self.read_count = int(number_option("read_count", opts["read_count"], 1))
        self.touch_interval_s = self.visibility_timeout_s / 3
        self.redis: Redis = redis or self._make_client(url, password)
        self.coalescer = Coalescer(self.redis, failed=self._failed, succeeded=self._worked)
        self._ok = False
        self._known_streams: set[str] = set()
        self._subs: list[ValkeySubscription] = []
        self._inboxes: list[ValkeyInbox] = []
        self._last_trim = 0.0
        self._last_prune = time.monotonic()
        self._closed = False

    def _make_keys(self, prefix: str) -> Keys:
        return Keys(prefix)

    def _make_client(self, url: str, password: str | None) -> Any:
        redis = Redis.from_url(
            redis_url(url),
            password=password,
            retry=Retry(EqualJitterBackoff(cap=1.0, base=0.05), 3),
            retry_on_error=[RedisConnectionError, RedisTimeoutError],
            socket_connect_timeout=5,
            socket_keepalive=True,
        )
        pool = redis.connection_pool
        pool.connection_class = hiredis_packing(pool.connection_class)
        return redis

    # -- connection ------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._ok and not self._closed

    def mark(self, ok: bool) -> None:
        if ok != self._ok:
            log.log(
                logging.INFO if ok else logging.WARNING,
                "bus %s %s",
                self.safe_url,
                "connected" if ok else "unreachable",
            )
        self._ok = ok

    @property
    def safe_url(self) -> str:
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        return f"{parts.scheme}://{host}:{parts.port or 6379}{parts.path}"

    async def connect(self) -> None:
        try:
            await self.redis.ping()
        except (RedisError, RedisClusterException, OSError) as e:
            self.mark(False)
            raise TransportError(f"cannot reach the bus at {self.safe_url}: {e}") from e
        self.mark(True)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for sub in self._subs:
            await sub.close()
        for inbox in self._inboxes:
            await inbox.close()
        await self.redis.aclose()

    async def call(self, *args: Any) -> Any:
        """Run one command through the coalescer; TransportError on connection trouble."""
        return await self._checked(self.coalescer.execute(*args))

    async def ack(self, stream: str, group: str, entry_id: bytes) -> None:
        """XACK one entry; acks waiting for the same round trip go as one XACK."""
        await self._checked(self.coalescer.merged(("XACK", stream, group), entry_id))

    async def _checked(self, command: Awaitable[Any]) -> Any:
        try:
            result = await command
        except CONNECTION_ERRORS as e:
            raise self._failed(e) from e
        self._ok = True
        return result

    def _failed(self, error: Exception) -> Exception:
        """Connection trouble -> TransportError (and the bus marked unreachable)."""
        if not isinstance(error, CONNECTION_ERRORS) or _cross_slot(error):
            return error
        self.mark(False)
        failure = TransportError(f"bus {self.safe_url} unreachable: {error}")
        failure.__cause__ = error
        return failure

    def _worked(self) -> None:
        self._ok = True

    # -- publishing ------------------------------------------------------------------------

    async def publish(self, topic: str, body: bytes, *, delay_s: float = 0.0) -> None:
        stream = self.keys.topic(topic)
        if stream not in self._known_streams:
            await self._register(topic, stream)
        if delay_s > 0:
            await self.delay(stream, body, 0, delay_s)
        else:
            batch, single = self._xadd_forms(stream)
            await self._checked(self.coalescer.merged_or_now(batch, body, single))

    def publish_soon(self, topic: str, body: bytes) -> asyncio.Future[Any]:
        stream = self.keys.topic(topic)
        if stream not in self._known_streams:
            return super().publish_soon(topic, body)
        batch, single = self._xadd_forms(stream)
        return self.coalescer.merged_soon(batch, body, single=single)

    @staticmethod
    def _xadd_forms(stream: str) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
        # concurrent publishes to one stream go as one script call (one command to pack
        # and parse instead of one per message); a lone one as a plain XADD
        return ("EVAL", scripts.PUBLISH_MANY, 1, stream), ("XADD", stream, "*", "m")

    async def publish_once(
        self, topic: str, body: bytes, *, key: str, window_s: float, id: str, delay_s: float = 0.0
    ) -> str:
        """The de-duplication key and the message go together, in one script."""
        target, item, due = await self._once_target(topic, body, delay_s)
        dedupe = self.keys.dedupe(topic, key)
        keys = (dedupe, target, self.keys.delayed_index)
        window_ms = max(1, int(window_s * 1000))
        first = await self.call("EVAL", scripts.PUBLISH_ONCE, 3, *keys, id, window_ms, item, due)
        return _s(first)

    async def _once_target(self, topic: str, body: bytes, delay_s: float) -> tuple[str, bytes, str]:
        """Where a once-only publish writes: the topic's stream, or its delay set with the
        member and the due time (unix ms) when delayed."""
        stream = self.keys.topic(topic)
        if stream not in self._known_streams:
            await self._register(topic, stream)
        if delay_s <= 0:
            return stream, body, ""
        due = str(int((time.time() + delay_s) * 1000))
        return self.keys.delayed(stream), delayed_member(0, body), due

    async def recall(self, key: str) -> bytes | None:
        value = await self.call("GET", self.keys.hashed("once", key))
        return None if value is None else _b(value)

    async def remember(self, key: str, value: bytes, ttl_s: float) -> None:
        ttl_ms = max(1, int(ttl_s * 1000))
        await self.call("SET", self.keys.hashed("once", key), value, "PX", ttl_ms)

    async def _register(self, topic: str, stream: str) -> None:
        check_name("topic", topic)
        await self.call("SADD", self.keys.streams, stream)
        self._known_streams.add(stream)

    async def delay(
        self, stream: str, body: bytes, attempts: int, delay_s: float, *ack: Any
    ) -> None:
        """Park ``body`` for ``stream`` until ``delay_s`` from now; optionally ack atomically."""
        due_ms = int((time.time() + delay_s) * 1000)
        zkey = self.keys.delayed(stream)
        await self.transaction(
            ("ZADD", zkey, due_ms, delayed_member(attempts, body)),
            ("SADD", self.keys.delayed_index, zkey),
            *([ack] if ack else []),
        )

    async def transaction(self, *commands: tuple[Any, ...]) -> list[Any]:
        """Run commands in MULTI/EXEC; TransportError on connection trouble."""
        pipe = self.redis.pipeline(transaction=True)
        for command in commands:
            pipe.execute_command(*command)
        result: list[Any] = await self._checked(pipe.execute())
        return result

    # -- consuming -------------------------------------------------------------------------

    async def ensure_channel(self, topic: str, channel: str, *, lost: bool = False) -> None:
        """Create the channel's groups; ``lost``: the server lost them, so they start at 0."""
        check_name("topic", topic)
        check_name("channel", channel)
        for stream in (self.keys.topic(topic), self.keys.retry(topic, channel)):
            await self.call("EVAL", scripts.ENSURE_GROUP, 1, stream, channel, "0" if lost else "")
            await self.call("SADD", self.keys.streams, stream)

    async def subscribe(self, topic: str, channel: str, *, max_in_flight: int) -> Subscription:
        await self.ensure_channel(topic, channel)
        sub = ValkeySubscription(self, topic, channel, max_in_flight)
        self._subs.append(sub)
        return sub

    # -- replies ---------------------------------------------------------------------------

    async def open_inbox(self, ttl_s: float) -> Inbox:
        inbox = ValkeyInbox(self, self.keys.reply())
        self._inboxes.append(inbox)
        return inbox

    async def send_reply(self, address: str, body: bytes) -> None:
        self._check_inbox(address)
        # the replies of concurrent handlers to one inbox go as one command (the runtime's
        # hottest spot was one MULTI/EXEC round trip per reply)
        done = await self._checked(
            self.coalescer.merged(("EVAL", scripts.REPLY_MANY, 1, address, REPLY_TTL_MS), body)
        )
        if done == -1:
            raise _wrong_type(address)

    async def reply_and_ack(self, delivery: Delivery, address: str, body: bytes) -> None:
        if not isinstance(delivery, ValkeyDelivery):
            await super().reply_and_ack(delivery, address, body)
            return
        self._check_inbox(address)
        await delivery.settle_with(lambda: self._reply_ack(delivery, address, body))

    async def _reply_ack(self, delivery: ValkeyDelivery, address: str, body: bytes) -> None:
        # one script for the reply and the ack, merged with the other handlers' of this
        # loop turn: one command per batch instead of two, and never an ack without its reply
        head = ("EVAL", scripts.REPLY_ACK, 1, delivery.stream, delivery.group, REPLY_TTL_MS)
        refused = await self._checked(self.coalescer.merged(head, address, body, delivery.entry_id))
        if refused and delivery.entry_id in refused:  # one result for the whole batch
            raise _wrong_type(address)

    async def ack_many(self, deliveries: list[Delivery]) -> None:
        ours = [d for d in deliveries if isinstance(d, ValkeyDelivery) and not d.settled]
        others = [d for d in deliveries if not isinstance(d, ValkeyDelivery)]
        if others:
            await super().ack_many(others)
        if not ours:
            return
        by_stream: dict[str, list[bytes]] = {}
        for d in ours:
            by_stream.setdefault(d.stream, []).append(d.entry_id)
        group = ours[0].group  # one subscription, one channel

        async def ack() -> None:  # one XACK per stream, merged with concurrent acks
            for stream, ids in by_stream.items():
                await self._checked(self.coalescer.merged(("XACK", stream, group), *ids))

        try:  # retried through a bus outage as any settlement, then all are settled
            await ours[0].settle_with(ack)
        finally:
            for d in ours:
                d.release()

    def _check_inbox(self, address: str) -> None:
        if not address.startswith(self.keys.reply_prefix):
            raise Undeliverable(f"reply address {address!r} is not a reply inbox of this bus")

    # -- figures and dead letters ----------------------------------------------------------

    async def stats(self, topic: str, channel: str) -> ChannelStats:
        depth = in_flight = delayed = 0
        for stream in (self.keys.topic(topic), self.keys.retry(topic, channel)):
            lag, pending = await self._group_figures(stream, channel)
            depth += lag
            in_flight += pending
            delayed += int(await self.call("ZCARD", self.keys.delayed(stream)))
        dead = int(await self.call("XLEN", self.keys.dead(topic, channel)))
        return ChannelStats(topic, channel, depth, in_flight, delayed, dead)

    async def consumers(self, topic: str, channel: str | None, *, idle_s: float) -> int | None:
        """Consumers of the group (None: of every group) whose last read attempt (XINFO
        CONSUMERS ``idle``; a blocked XREADGROUP counts) is under ``idle_s`` old: a process
        that died leaves its consumer behind, idle ever longer."""
        stream = self.keys.topic(topic)
        try:
            groups = [channel] if channel is not None else await self._group_names(stream)
            found = [await self.call("XINFO", "CONSUMERS", stream, g) for g in groups]
        except RedisError as e:
            if "NOGROUP" in str(e) or "no such key" in str(e):
                return 0  # nobody ever consumed it: no group, or not even a stream yet
            raise TransportError(f"cannot list the consumers of {topic}: {e}") from e
        limit_ms = idle_s * 1000
        return sum(1 for each in found for raw in each if int(_info(raw)["idle"]) < limit_ms)

    async def _group_names(self, stream: str) -> list[str]:
        return [_s(_info(raw)["name"]) for raw in await self.call("XINFO", "GROUPS", stream)]

    async def _group_figures(self, stream: str, group: str) -> tuple[int, int]:
        try:
            groups = await self.call("XINFO", "GROUPS", stream)
        except RedisError:
            return 0, 0  # no such stream yet
        if not groups:  # e.g. the server restarted empty: the first group will start at 0
            return int(await self.call("XLEN", stream)), 0
        for raw in groups:
            info = _info(raw)
            if _s(info["name"]) == group:
                lag = info.get("lag")
                if lag is None:  # the server cannot tell (after deletions): count by hand
                    lag = len(
                        await self.call("XRANGE", stream, b"(" + _b(info["last-delivered-id"]), "+")
                    )
                return int(lag), int(info["pending"])
        return 0, 0

    async def dead_letters(self, topic: str, channel: str, *, limit: int = 100) -> list[DeadLetter]:
        entries = await self.call(
            "XRANGE", self.keys.dead(topic, channel), "-", "+", "COUNT", limit
        )
        return [_dead_letter(entry_id, fields) for entry_id, fields in _pairs(entries)]

    async def replay_dead(self, topic: str, channel: str, ids: list[str] | None = None) -> int:
        dead_key = self.keys.dead(topic, channel)
        retry_key = self.keys.retry(topic, channel)
        chosen = [
            d
            for d in await self.dead_letters(topic, channel, limit=1_000_000)
            if ids is None or d.id in ids
        ]
        for d in chosen:
            await self.transaction(("XADD", retry_key, "*", "m", d.body), ("XDEL", dead_key, d.id))
        return len(chosen)

    async def purge_dead(self, topic: str, channel: str, ids: list[str] | None = None) -> int:
        dead_key = self.keys.dead(topic, channel)
        if ids is None:
            count = int(await self.call("XLEN", dead_key))
            await self.call("DEL", dead_key)
            return count
        return int(await self.call("XDEL", dead_key, *ids)) if ids else 0

    # -- housekeeping ----------------------------------------------------------------------

    async def maintain(self) -> None:
        """Move due delayed entries; every ``trim_interval_s`` trim what all groups acked."""
        zkeys = await self.call("SMEMBERS", self.keys.delayed_index)
        if zkeys:
            await self._move_due(list(zkeys))
        if time.monotonic() - self._last_trim >= self.trim_interval_s:
            self._last_trim = time.monotonic()
            await self.trim()
        if self.stale_consumer_s > 0 and time.monotonic() - self._last_prune >= PRUNE_EVERY_S:
            self._last_prune = time.monotonic()
            await self.prune_consumers(self.stale_consumer_s)

    async def _move_due(self, zkeys: list[Any]) -> None:
        now_ms = int(time.time() * 1000)
        cut = len(self.keys.delayed_prefix)
        index = self.keys.delayed_index
        await self.call("EVAL", scripts.MOVE_DUE, 1 + len(zkeys), index, *zkeys, now_ms, 1000, cut)

    async def prune_consumers(self, idle_s: float) -> int:
        """Delete the consumers that hold nothing and were not seen for ``idle_s``."""
        gone, idle_ms = 0, int(idle_s * 1000)
        for stream in await self.call("SMEMBERS", self.keys.streams):
            gone += int(await self.call("EVAL", scripts.PRUNE_CONSUMERS, 1, stream, idle_ms))
        return gone

    async def trim(self) -> int:
        """Trim every known stream below the oldest entry some channel still needs."""
        trimmed = 0
        for stream in await self.call("SMEMBERS", self.keys.streams):
            trimmed += int(await self.call("EVAL", scripts.TRIM_ACKED, 1, stream))
        return trimmed


def _cross_slot(error: Exception) -> bool:
    """Keys of several slots in one command or transaction: a bug, not the bus away."""
    return isinstance(error, CrossSlotTransactionError) or "same key slot" in str(error)


def _b(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _info(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return {_s(k): v for k, v in raw.items()}
    return {_s(raw[i]): raw[i + 1] for i in range(0, len(raw), 2)}


def _pairs(entries: Any) -> list[tuple[str, dict[bytes, bytes]]]:
    out = []
    for entry_id, flat in entries:
        fields = dict(zip(flat[::2], flat[1::2], strict=True)) if isinstance(flat, list) else flat
        out.append((_s(entry_id), fields))
    return out


def _dead_letter(entry_id: str, fields: dict[bytes, bytes]) -> DeadLetter:
    return DeadLetter(
        id=entry_id,
        body=fields.get(b"m", b""),
        reason=fields.get(b"reason", b"").decode(errors="replace"),
        attempt=entry_attempts(fields)[0],  # a dead entry anyone wrote still lists
        time_ms=int(entry_id.split("-")[0]),
    )


def _wrong_type(address: str) -> Undeliverable:
    return Undeliverable(f"reply address {address!r} holds a key that is not a reply inbox")
