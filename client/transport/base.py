"""The transport seam: a narrow, byte-level interface every bus backend implements.

The runtime, the client and the gateway see only these types. Semantics every backend
keeps (checked by tests/transport/test_contract.py):

* ``publish(topic, body)`` appends to a topic; every *channel* on the topic gets every
  message (fan-out) and the consumers of one channel share them (load balancing).
* A :class:`Delivery` stays owned by its consumer until ``ack``, ``retry`` or
  ``dead_letter``. A consumer that dies without settling it loses it to another consumer
  of the channel after the visibility timeout, with ``attempt`` increased.
* ``retry(delay_s)`` delivers the same body again, to the same channel only, after the
  delay, with ``attempt`` increased.
* ``dead_letter(reason)`` moves the body to the channel's dead letters with the reason.
* Reply inboxes are per-process addresses that expire when their owner is gone.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from ._recent import Recent


@dataclass(frozen=True, slots=True)
class ChannelStats:
    """Queue figures for one channel of a topic."""

    topic: str
    channel: str
    depth: int  # published but not yet delivered to this channel (lag / NSQ depth)
    in_flight: int  # delivered, not yet settled
    delayed: int  # waiting for their retry or publish delay
    dead: int  # in the dead letters


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One dead-lettered message."""

    id: str  # transport id of the dead entry (for replay / purge)
    body: bytes
    reason: str
    attempt: int
    time_ms: int


class Delivery(abc.ABC):
    """One received message, owned by this consumer until it is settled."""

    __slots__ = ("attempt", "body", "malformed")

    def __init__(self, body: bytes, attempt: int, malformed: str | None = None) -> None:
        self.body = body
        self.attempt = attempt
        # why the bus entry itself is unusable (not only its body): the runtime
        # dead-letters it with this reason instead of decoding it
        self.malformed = malformed

    @abc.abstractmethod
    async def ack(self) -> None:
        """The work is done: never deliver this message to this channel again."""

    @abc.abstractmethod
    async def retry(self, delay_s: float) -> None:
        """Deliver the message to this channel again after ``delay_s`` seconds."""

    @abc.abstractmethod
    async def dead_letter(self, reason: str) -> None:
        """Give up: keep the message with ``reason`` in the channel's dead letters."""

    @abc.abstractmethod
    async def touch(self) -> None:
        """Still working: push back the visibility timeout."""


class Subscription(abc.ABC):
    """Deliveries of one channel; iterate with ``async for``. At most ``max_in_flight``
    deliveries are unsettled at once: the iterator waits until one is settled."""

    def __aiter__(self) -> AsyncIterator[Delivery]:
        return self._deliveries()

    @abc.abstractmethod
    def _deliveries(self) -> AsyncIterator[Delivery]: ...

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop receiving. Unsettled deliveries may still be settled until the transport
        closes; whatever stays unsettled is redelivered by the bus."""


class Inbox(abc.ABC):
    """A reply address owned by one process, read by one task."""

    address: str

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._bodies()

    @abc.abstractmethod
    def _bodies(self) -> AsyncIterator[bytes]: ...

    @abc.abstractmethod
    async def close(self) -> None: ...


class Transport(abc.ABC):
    """A connection to one bus. Create with :func:`kubefuncs.transport.from_url`."""

    url: str
    touch_interval_s: float | None = None  # how often long work should touch its delivery
    _recent: Recent | None = None  # publish_once / recall / remember of this process

    @abc.abstractmethod
    async def connect(self) -> None:
        """Open the connection. Idempotent. Raises TransportError when the bus is unreachable."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release every resource. Idempotent."""

    @property
    @abc.abstractmethod
    def connected(self) -> bool:
        """True while the last operation on the bus succeeded (used by /readyz)."""

    @abc.abstractmethod
    async def publish(self, topic: str, body: bytes, *, delay_s: float = 0.0) -> None:
        """Append ``body`` to ``topic``, visible to consumers after ``delay_s`` seconds."""

    def publish_soon(self, topic: str, body: bytes) -> asyncio.Future[Any]:
        """Start publishing ``body`` and return a future that is done when the bus has it
        (or fails with TransportError). For callers that wait on something else anyway:
        a backend that batches publishes serves it without a coroutine per message."""
        return asyncio.ensure_future(self.publish(topic, body))

    @abc.abstractmethod
    async def subscribe(self, topic: str, channel: str, *, max_in_flight: int) -> Subscription:
        """Consume ``topic`` as a member of ``channel`` (created when missing)."""

    @abc.abstractmethod
    async def ensure_channel(self, topic: str, channel: str) -> None:
        """Create the topic and channel so messages published from now on are kept for it."""

    @abc.abstractmethod
    async def open_inbox(self, ttl_s: float) -> Inbox:
        """A fresh reply address for this process; replies to it expire ``ttl_s`` after
        their owner stops reading."""

    @abc.abstractmethod
    async def send_reply(self, address: str, body: bytes) -> None:
        """Deliver a reply body to an inbox address (as found in ``reply_to``)."""

    async def reply_and_ack(self, delivery: Delivery, address: str, body: bytes) -> None:
        """Send the reply to a handled message, then ack the message: never the ack without
        the reply. Backends that can do both in one step (Valkey) override this."""
        await self.send_reply(address, body)
        await delivery.ack()

    async def ack_many(self, deliveries: list[Delivery]) -> None:
        """Ack several deliveries (a batch handler's); backends that can ack them in one
        command (Valkey) override this. TransportError when some could not be acked."""
        results = await asyncio.gather(*(d.ack() for d in deliveries), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    @abc.abstractmethod
    async def stats(self, topic: str, channel: str) -> ChannelStats: ...

    async def consumers(self, topic: str, channel: str | None, *, idle_s: float) -> int | None:
        """How many consumers of the channel (None: of any channel of the topic) were seen
        reading within ``idle_s``, or None when this bus cannot tell (the gateway then
        treats the function as maybe at zero: see gateway/presence.py)."""
        return None

    @abc.abstractmethod
    async def dead_letters(self, topic: str, channel: str, *, limit: int = 100) -> list[DeadLetter]:
        """The oldest dead letters of a channel."""

    @abc.abstractmethod
    async def replay_dead(self, topic: str, channel: str, ids: list[str] | None = None) -> int:
        """Put dead letters (all, or those ids) back on the channel with attempt reset; count."""

    @abc.abstractmethod
    async def purge_dead(self, topic: str, channel: str, ids: list[str] | None = None) -> int:
        """Delete dead letters (all, or those ids); returns how many."""

    async def publish_once(
        self, topic: str, body: bytes, *, key: str, window_s: float, id: str, delay_s: float = 0.0
    ) -> str:
        """Publish ``body`` (message id ``id``) unless a publish to ``topic`` with ``key``
        happened within ``window_s``; returns the id of the publish that counts (ours, or
        the first). This default remembers keys in this process only (NSQ, memory bus): a
        duplicate from another process goes through. Valkey keeps them on the bus."""
        recent = self.recent()
        name = f"{topic}|{key}"
        first = recent.get(name)
        if first is not None:
            return first.decode()
        recent.put(name, id.encode(), window_s)  # claimed before the await: no twin publish
        try:
            await self.publish(topic, body, delay_s=delay_s)
        except BaseException:
            recent.pop(name)
            raise
        return id

    async def recall(self, key: str) -> bytes | None:
        """What :meth:`remember` stored under ``key`` (None: nothing, or it expired). This
        default holds it in this process only; Valkey keeps it on the bus."""
        return self.recent().get(key)

    async def remember(self, key: str, value: bytes, ttl_s: float) -> None:
        """Keep ``value`` under ``key`` for ``ttl_s`` (``ctx.once``'s markers)."""
        self.recent().put(key, value, ttl_s)

    def recent(self) -> Recent:
        if self._recent is None:
            self._recent = Recent()
        return self._recent

    async def maintain(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Housekeeping a long-running process calls every second or so: move due delayed
        messages, trim what every channel has acknowledged, reclaim dead consumers' work."""

    async def __aenter__(self) -> Transport:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
