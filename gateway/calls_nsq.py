"""Async call results shared by every gateway replica on an NSQ bus.

NSQ keeps nothing a replica could look up later, so results travel instead of being
stored: every ``put()`` is published to the topic ``kf.gw.calls`` (after the bus URL's
``prefix``), and every replica reads that topic on a channel of its own,
``gw.<random>#ephemeral``. That is NSQ's fan-out: each replica receives each result and
keeps it in a bounded map until its TTL passes, so ``GET /calls/{id}`` reads the map of
whichever replica it reaches. Ephemeral channels vanish with their reader, so a replica
that stops leaves nothing behind on nsqd.

What this costs (docs/gateway.md): a result reaches the other replicas one message hop
later (milliseconds); a replica that starts after a call was made never learns about it;
nsqd drops messages of an ephemeral channel that overflow its memory queue instead of
writing them to disk. Only the transport seam is used, nothing specific to pynsq.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any, TypeGuard

import msgpack  # type: ignore[import-untyped, unused-ignore]
from kubefuncs.errors import TransportError
from kubefuncs.transport import Delivery, Subscription, Transport
from kubefuncs.wire import new_id

from .calls import CallResult, ResultCache, entry_bytes, unpack_map

__all__ = ["TOPIC", "NsqCallStore", "ResultCache", "decode_update", "encode_update", "entry_bytes"]

log = logging.getLogger(__name__)

TOPIC = "kf.gw.calls"
MAX_IN_FLIGHT = 256


@dataclass(frozen=True, slots=True)
class Update:
    """One message on the calls topic: a call's state, kept ``ttl_s`` from its arrival."""

    call_id: str
    result: CallResult
    ttl_s: float


def encode_update(call_id: str, result: CallResult, ttl_s: float) -> bytes:
    # a relative TTL: replicas' clocks need not agree, and the hop takes milliseconds; the
    # owner travels with every state, so each replica refuses other principals alike
    fields = {"id": call_id, "ttl_ms": max(1, round(ttl_s * 1000)), **result.fields()}
    packed: bytes = msgpack.packb(fields, use_bin_type=True)
    return packed


def decode_update(raw: bytes) -> Update:
    """The update in ``raw``; ValueError says what is wrong with a malformed one."""
    d = unpack_map(raw)
    call_id, ttl_ms = d.get("id"), d.get("ttl_ms")
    if not isinstance(call_id, str) or not call_id:
        raise ValueError("id must be a non-empty string")
    if not _positive_int(ttl_ms):
        raise ValueError("ttl_ms must be a positive integer")
    return Update(call_id, CallResult.from_fields(d), ttl_ms / 1000)


def _positive_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


class NsqCallStore:
    """The gateway's call store on NSQ: publish every update, read everyone's (fan-out)."""

    def __init__(self, transport: Transport, *, cache: ResultCache | None = None) -> None:
        self.transport = transport
        self.cache = cache or ResultCache()
        self.channel = f"gw.{new_id()}#ephemeral"
        self.malformed = 0  # messages on the topic that were not updates (dropped)
        self._sub: Subscription | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def listening(self) -> bool:
        """Subscribed: results other replicas publish from now on arrive here."""
        return self._sub is not None

    async def start(self) -> None:
        """Join the fan-out before the gateway serves, so every result published from now
        on arrives here. When the bus is away, keep trying in the background."""
        if self._task is not None:
            return
        try:
            self._sub = await self._subscribe()
        except TransportError as e:
            log.warning("async results of other replicas not visible yet: %s", e)
        self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        """Leave the fan-out (nsqd drops the ephemeral channel). Idempotent."""
        if self._sub is not None:
            await self._sub.close()
            self._sub = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def put(self, call_id: str, result: CallResult, ttl_s: float) -> None:
        # here at once, whatever the bus does; the other replicas get it through the topic
        self.cache.put(call_id, result, ttl_s)
        await self.transport.publish(TOPIC, encode_update(call_id, result, ttl_s))

    async def get(self, call_id: str) -> CallResult | None:
        return self.cache.get(call_id)

    async def _subscribe(self) -> Subscription:
        return await self.transport.subscribe(TOPIC, self.channel, max_in_flight=MAX_IN_FLIGHT)

    async def _run(self) -> None:
        failures = 0
        while self._sub is None:
            failures += 1
            await asyncio.sleep(min(5.0, 0.1 * 2**failures))
            with contextlib.suppress(TransportError):
                self._sub = await self._subscribe()
                log.info("async results of other replicas visible again")
        async for delivery in self._sub:
            await self._take(delivery)

    async def _take(self, delivery: Delivery) -> None:
        """FIN at once (the update is in memory now or never); a malformed one is dropped."""
        try:
            update: Update | None = decode_update(delivery.body)
        except ValueError as e:
            self.malformed += 1
            log.warning("dropped a malformed message on %s: %s", TOPIC, e)
            update = None
        with contextlib.suppress(TransportError):
            await delivery.ack()
        if update is not None:
            self.cache.put(update.call_id, update.result, update.ttl_s)
