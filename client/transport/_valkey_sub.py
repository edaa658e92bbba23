"""Consuming side of the Valkey backend: subscription, deliveries, reply inboxes."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisClusterException, RedisError, ResponseError

from ..errors import TransportError, Undeliverable
from ..wire import new_id
from ._flow import Window, backoff_s
from .base import Delivery, Inbox, Subscription

if TYPE_CHECKING:
    from .valkey import ValkeyTransport

log = logging.getLogger(__name__)

INBOX_BATCH = 512  # replies taken from an inbox per round trip


def consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{new_id()[:6]}"


def lost_group(error: Exception) -> bool:
    """The server answered that the consumer group does not exist (any more)."""
    return str(error).startswith("NOGROUP")


def entry_attempts(fields: dict[bytes, bytes]) -> tuple[int, str | None]:
    """The attempts an entry records (``a``), or 0 and why the field is unusable: an entry
    anyone may have written must never stop the loop that reads it."""
    raw = fields.get(b"a", b"0")
    if raw.isdigit() and len(raw) <= 9:
        return int(raw), None
    shown = raw[:40].decode("utf-8", "backslashreplace")
    return 0, f"attempt field {shown!r} is not an integer of at most 9 digits"


class ValkeyDelivery(Delivery):
    __slots__ = ("_settled", "_sub", "entry_id", "stream")

    def __init__(
        self,
        sub: ValkeySubscription,
        stream: str,
        entry_id: bytes,
        body: bytes,
        attempt: int,
        malformed: str | None = None,
    ) -> None:
        super().__init__(body, attempt, malformed)
        self._sub = sub
        self.stream = stream
        self.entry_id = entry_id
        self._settled = False

    async def ack(self) -> None:
        await self._settle(None)

    async def retry(self, delay_s: float) -> None:
        sub = self._sub
        ack = ("XACK", self.stream, sub.channel, self.entry_id)
        if delay_s <= 0:
            op: tuple[Any, ...] = ("XADD", sub.retry_stream, "*", "m", self.body, "a", self.attempt)
            await self._settle(lambda: sub.transport.transaction(op, ack))
        else:
            await self._settle(
                lambda: sub.transport.delay(
                    sub.retry_stream, self.body, self.attempt, delay_s, *ack
                )
            )

    async def dead_letter(self, reason: str) -> None:
        sub = self._sub
        ack = ("XACK", self.stream, sub.channel, self.entry_id)
        add = (
            "XADD",
            sub.dead_stream,
            "*",
            "m",
            self.body,
            "reason",
            reason,
            "a",
            self.attempt,
            "t",
            int(time.time() * 1000),
        )
        await self._settle(lambda: sub.transport.transaction(add, ack))

    async def touch(self) -> None:
        if not self._settled:
            await self._sub.claim(self.stream, [self.entry_id])

    @property
    def group(self) -> str:
        return self._sub.channel

    async def settle_with(self, action: Callable[[], Awaitable[Any]]) -> None:
        """Settle by ``action`` (commands that include this entry's XACK), retried through
        a bus outage like every other settlement."""
        await self._settle(action)

    async def _settle(self, action: Any) -> None:
        """Run the settling command(s), retrying through a bus outage: the work is done and
        must not be lost or redone when the bus comes back."""
        if self._settled:
            return
        failures = 0
        while True:
            try:
                if action is None:
                    await self._sub.transport.ack(self.stream, self._sub.channel, self.entry_id)
                else:
                    await action()
                break
            except Undeliverable:
                raise  # the bus is fine, the reply address is not: the runtime decides
            except TransportError:
                if self._sub.transport._closed:
                    raise
                failures += 1
                await asyncio.sleep(backoff_s(failures))
            except ResponseError as e:
                if not lost_group(e):
                    self._release()
                    raise TransportError(f"settling {self.entry_id!r} refused: {e}") from e
                # the server lost the group (restart without persistence), and with it
                # this entry's pending state: there is nothing left to settle
                log.warning("group %s of %s is gone; %r counts as settled", self.group,
                            self.stream, self.entry_id)  # fmt: skip
                break
        self._release()

    @property
    def settled(self) -> bool:
        return self._settled

    def release(self) -> None:
        """Count as settled by a command that acked it with others (ack_many)."""
        self._release()

    def _release(self) -> None:
        if not self._settled:
            self._settled = True
            self._sub.window.release()


class ValkeySubscription(Subscription):
    def __init__(
        self, transport: ValkeyTransport, topic: str, channel: str, max_in_flight: int
    ) -> None:
        self.transport = transport
        self.topic = topic
        self.channel = channel
        keys = transport.keys
        self.streams = [keys.topic(topic), keys.retry(topic, channel)]
        self.retry_stream = self.streams[1]
        self.dead_stream = keys.dead(topic, channel)
        self.consumer = consumer_name()
        self.window = Window(max_in_flight)
        self._visibility_ms = int(transport.visibility_timeout_s * 1000)
        self._last_claim = 0.0
        self._closed = False

    async def _deliveries(self) -> AsyncIterator[Delivery]:
        failures = 0
        while not self._closed:
            free = await self.window.wait_free()
            if not free:
                return
            try:
                # at most read_count per read, however many slots are free: the first
                # replies go out while the next entries are read, and other replicas
                # get their share of a backlog
                batch = await self._fetch(min(free, self.transport.read_count))
            except (RedisError, RedisClusterException, OSError, TransportError) as e:
                failures += 1
                if not isinstance(e, ResponseError):  # an answer: the server is there
                    self.transport.mark(False)
                log.warning("reading %s/%s failed (%s); retrying", self.topic, self.channel, e)
                await asyncio.sleep(backoff_s(failures))
                continue
            failures = 0
            self.transport.mark(True)
            for delivery in batch:
                self.window.take()
                yield delivery

    async def _fetch(self, count: int) -> list[ValkeyDelivery]:
        try:
            return await self._reclaim(count) or await self._read(count)
        except ResponseError as e:
            if not lost_group(e):
                raise
            # the server lost the group (restart without persistence, or deleted): any
            # command of the round (XAUTOCLAIM, XPENDING, XREADGROUP) may see it first
            log.warning("group %s of %s is gone; creating it again", self.channel, self.topic)
            await self.transport.ensure_channel(self.topic, self.channel, lost=True)
            self._last_claim = 0.0
            return []

    async def _read(self, count: int) -> list[ValkeyDelivery]:
        block_ms = self.transport.block_ms
        response: Any = await self.transport.redis.xreadgroup(
            self.channel,
            self.consumer,
            {s: ">" for s in self.streams},
            count=count,
            block=block_ms if block_ms > 0 else None,
        )
        if not response and block_ms <= 0:  # polling mode (block_ms=0): pause between polls
            await asyncio.sleep(0.01)
        out = []
        for stream, entries in response or []:
            name = stream.decode()
            for entry_id, fields in entries:
                if fields:  # an entry deleted while pending comes back empty
                    out.append(self._delivery(name, entry_id, fields, 1))
        return out

    def _delivery(
        self, stream: str, entry_id: bytes, fields: dict[bytes, bytes], delivered: int
    ) -> ValkeyDelivery:
        prior, malformed = entry_attempts(fields)
        body = fields.get(b"m")
        if body is None:
            malformed = "entry has no m field"
        return ValkeyDelivery(self, stream, entry_id, body or b"", prior + delivered, malformed)

    async def _reclaim(self, count: int) -> list[ValkeyDelivery]:
        """Take over entries a dead consumer of this channel left unsettled."""
        now = time.monotonic()
        if now - self._last_claim < min(1.0, self.transport.visibility_timeout_s / 4):
            return []
        self._last_claim = now
        out: list[ValkeyDelivery] = []
        for stream in self.streams:
            _, entries, *_ = await self.transport.redis.xautoclaim(
                stream, self.channel, self.consumer, self._visibility_ms, "0-0", count=count
            )
            entries = [(i, f) for i, f in entries if f]
            if not entries:
                continue
            counts = await self._delivery_counts(stream, [i for i, _ in entries])
            out += [self._delivery(stream, i, f, counts.get(i, 1)) for i, f in entries]
            log.info(
                "took over %d unsettled message(s) of %s/%s", len(entries), self.topic, self.channel
            )
        return out

    async def _delivery_counts(self, stream: str, ids: list[bytes]) -> dict[bytes, int]:
        rows: Any = await self.transport.redis.xpending_range(
            stream,
            self.channel,
            min=ids[0],
            max=ids[-1],
            count=len(ids) + self.window.limit,  # ours in that range: these + in flight
            consumername=self.consumer,
        )
        return {bytes(row["message_id"]): int(row["times_delivered"]) for row in rows}

    async def claim(self, stream: str, ids: list[bytes], *, idle_ms: int = 0) -> None:
        """Reset (or set) the idle time of our own pending entries without counting a delivery."""
        try:
            await self.transport.redis.xclaim(
                stream, self.channel, self.consumer, 0, list[Any](ids), idle=idle_ms, justid=True
            )
        except (RedisError, RedisClusterException, OSError) as e:
            raise TransportError(f"touch failed: {e}") from e

    async def close(self) -> None:
        self._closed = True
        self.window.close()


class ValkeyInbox(Inbox):
    """Replies to this process: a list read by one task; it expires when nobody reads it."""

    def __init__(self, transport: ValkeyTransport, address: str) -> None:
        self.transport = transport
        self.address = address
        self._closed = False

    async def _bodies(self) -> AsyncIterator[bytes]:
        failures = 0
        while not self._closed:
            try:
                bodies = await self._pop()
            except (RedisError, RedisClusterException, OSError) as e:
                failures += 1
                self.transport.mark(False)
                log.warning("reading replies failed (%s); retrying", e)
                await asyncio.sleep(backoff_s(failures))
                continue
            failures = 0
            for body in bodies:
                yield bytes(body)

    async def close(self) -> None:
        self._closed = True

    async def _pop(self) -> list[bytes]:
        """The next replies, up to INBOX_BATCH in one round trip (waiting up to 1 s)."""
        redis = self.transport.redis
        if self.transport.block_ms > 0:
            got = await redis.execute_command(  # type: ignore[no-untyped-call]
                "BLMPOP", 1, 1, self.address, "LEFT", "COUNT", INBOX_BATCH
            )
            return list(got[1]) if got else []
        bodies = await redis.lpop(self.address, INBOX_BATCH)  # polling mode
        if not bodies:
            await asyncio.sleep(0.01)
            return []
        return list(bodies)  # type: ignore[arg-type]
