"""In-process bus with the same semantics as the real ones: fan-out channels, visibility
timeout, delayed publish and retry, dead letters, expiring reply inboxes.

``memory://NAME`` names a bus shared by every transport of the process that uses the same
name (``memory://`` is the default bus); ``functl dev`` runs the gateway and all functions
on one. Options: ``?visibility_timeout_s=30``.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ..errors import TransportError, Undeliverable
from ..wire import new_id
from . import check_name, options
from ._flow import Window
from ._recent import Recent
from .base import ChannelStats, DeadLetter, Delivery, Inbox, Subscription, Transport

_ids = itertools.count(1)


@dataclass
class _Item:
    body: bytes
    attempts: int = 0  # deliveries so far
    id: int = field(default_factory=lambda: next(_ids))


class _Channel:
    def __init__(self) -> None:
        self.ready: deque[_Item] = deque()
        self.in_flight: dict[int, _Item] = {}
        self.delayed = 0
        self.dead: list[DeadLetter] = []
        self.consumers = 0  # open subscriptions
        self._waiters: deque[asyncio.Future[None]] = deque()

    def push(self, item: _Item) -> None:
        self.ready.append(item)
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                break

    async def pop(self) -> _Item:
        while not self.ready:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                if not waiter.done():
                    waiter.cancel()
        item = self.ready.popleft()
        self.in_flight[item.id] = item  # in the same step, so stats never miss it
        return item


class MemoryBus:
    """The shared state of one in-process bus."""

    _buses: dict[str, MemoryBus] = {}

    def __init__(self) -> None:
        self.topics: dict[str, dict[str, _Channel]] = {}
        self.backlog: dict[str, list[bytes]] = {}  # topics with no channel yet
        self.inboxes: dict[str, asyncio.Queue[bytes]] = {}
        self.delayed: dict[str, int] = {}  # delayed publishes per topic
        self.timers: set[asyncio.TimerHandle] = set()
        self.remembered = Recent()  # publish_once / ctx.once keys: one store per bus

    @classmethod
    def named(cls, name: str) -> MemoryBus:
        return cls._buses.setdefault(name, cls())

    def channel(self, topic: str, channel: str) -> _Channel:
        channels = self.topics.setdefault(topic, {})
        if channel not in channels:
            channels[channel] = _Channel()
            for body in self.backlog.pop(topic, []):  # like NSQ: the first channel gets them
                channels[channel].push(_Item(body))
        return channels[channel]

    def publish(self, topic: str, body: bytes) -> None:
        channels = self.topics.get(topic)
        if not channels:
            self.backlog.setdefault(topic, []).append(body)
            return
        for ch in channels.values():
            ch.push(_Item(body))

    def later(self, delay_s: float, fn: Callable[..., None], *args: object) -> None:
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self.timers.discard(handle)
            fn(*args)

        handle = loop.call_later(delay_s, fire)
        self.timers.add(handle)


class _MemoryDelivery(Delivery):
    __slots__ = ("_item", "_sub", "_timer")

    def __init__(self, sub: _MemorySubscription, item: _Item) -> None:
        super().__init__(item.body, item.attempts)
        self._sub = sub
        self._item = item
        self._timer: asyncio.TimerHandle | None = None
        self.touch_sync()

    def touch_sync(self) -> None:
        if self._timer:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(
            self._sub.visibility_timeout_s, self._expire
        )

    def _expire(self) -> None:
        if self._settle():
            self._sub.ch.push(self._item)  # another consumer may take it; attempts grow

    def _settle(self) -> bool:
        if self._timer:
            self._timer.cancel()
        if self._sub.ch.in_flight.pop(self._item.id, None) is None:
            return False  # expired (or settled) already: the bus took it back
        self._sub.window.release()
        return True

    async def ack(self) -> None:
        self._settle()

    async def retry(self, delay_s: float) -> None:
        if not self._settle():
            return
        ch = self._sub.ch
        if delay_s <= 0:
            ch.push(self._item)
            return
        ch.delayed += 1

        def due() -> None:
            ch.delayed -= 1
            ch.push(self._item)

        self._sub.bus.later(delay_s, due)

    async def dead_letter(self, reason: str) -> None:
        if self._settle():
            self._sub.ch.dead.append(
                DeadLetter(
                    str(self._item.id), self.body, reason, self.attempt, int(time.time() * 1000)
                )
            )

    async def touch(self) -> None:
        if self._item.id in self._sub.ch.in_flight:
            self.touch_sync()


class _MemorySubscription(Subscription):
    def __init__(
        self, bus: MemoryBus, ch: _Channel, max_in_flight: int, visibility_timeout_s: float
    ) -> None:
        self.bus = bus
        self.ch = ch
        self.window = Window(max_in_flight)
        self.visibility_timeout_s = visibility_timeout_s
        self._closed = asyncio.Event()
        ch.consumers += 1

    async def _deliveries(self) -> AsyncIterator[Delivery]:
        while not self._closed.is_set():
            if not await self.window.wait_free():
                return
            item = await self._next()
            if item is None:
                return
            item.attempts += 1
            self.window.take()
            yield _MemoryDelivery(self, item)

    async def _next(self) -> _Item | None:
        pop = asyncio.ensure_future(self.ch.pop())
        closed = asyncio.ensure_future(self._closed.wait())
        try:
            await asyncio.wait({pop, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closed.cancel()
            if not pop.done():
                pop.cancel()
        if pop.cancelled() or not pop.done():
            return None
        if self._closed.is_set():
            item = pop.result()  # closing: leave it for someone else
            del self.ch.in_flight[item.id]
            self.ch.ready.appendleft(item)
            return None
        return pop.result()

    async def close(self) -> None:
        if not self._closed.is_set():
            self.ch.consumers -= 1
        self._closed.set()
        self.window.close()


class _MemoryInbox(Inbox):
    def __init__(self, bus: MemoryBus, address: str, queue: asyncio.Queue[bytes]) -> None:
        self.bus = bus
        self.address = address
        self.queue = queue
        self._closed = False

    async def _bodies(self) -> AsyncIterator[bytes]:
        while not self._closed:
            body = await self.queue.get()
            if body is None:
                return
            yield body

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.bus.inboxes.pop(self.address, None)
            self.queue.put_nowait(None)  # type: ignore[arg-type]


class MemoryTransport(Transport):
    """A transport on an in-process :class:`MemoryBus`."""

    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        self.bus = MemoryBus.named(urlsplit(url).netloc or "default")
        self._recent = self.bus.remembered
        self.visibility_timeout_s = float(options(url).get("visibility_timeout_s", 30))
        self.touch_interval_s = self.visibility_timeout_s / 3
        self._open = False
        self._subs: list[_MemorySubscription] = []
        self._inboxes: list[_MemoryInbox] = []

    @property
    def connected(self) -> bool:
        return self._open

    async def connect(self) -> None:
        self._open = True

    async def close(self) -> None:
        self._open = False
        for sub in self._subs:
            await sub.close()
        for inbox in self._inboxes:
            await inbox.close()
        self._subs.clear()
        self._inboxes.clear()

    def _check(self) -> None:
        if not self._open:
            raise TransportError(f"transport {self.url} is not connected")

    async def publish(self, topic: str, body: bytes, *, delay_s: float = 0.0) -> None:
        self._check()
        check_name("topic", topic)
        if delay_s > 0:
            self.bus.delayed[topic] = self.bus.delayed.get(topic, 0) + 1

            def due() -> None:
                self.bus.delayed[topic] -= 1
                self.bus.publish(topic, body)

            self.bus.later(delay_s, due)
        else:
            self.bus.publish(topic, body)

    async def ensure_channel(self, topic: str, channel: str) -> None:
        self._check()
        self.bus.channel(check_name("topic", topic), check_name("channel", channel))

    async def subscribe(self, topic: str, channel: str, *, max_in_flight: int) -> Subscription:
        await self.ensure_channel(topic, channel)
        sub = _MemorySubscription(
            self.bus, self.bus.channel(topic, channel), max_in_flight, self.visibility_timeout_s
        )
        self._subs.append(sub)
        return sub

    async def open_inbox(self, ttl_s: float) -> Inbox:
        self._check()
        address = f"memory-inbox:{new_id()}"
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.bus.inboxes[address] = queue
        inbox = _MemoryInbox(self.bus, address, queue)
        self._inboxes.append(inbox)
        return inbox

    async def send_reply(self, address: str, body: bytes) -> None:
        self._check()
        if not address.startswith("memory-inbox:"):  # as every bus: only inboxes take replies
            raise Undeliverable(f"reply address {address!r} is not a reply inbox of this bus")
        queue = self.bus.inboxes.get(address)
        if queue is not None:  # an inbox whose owner is gone has expired: drop the reply
            queue.put_nowait(body)

    def _existing(self, topic: str, channel: str) -> _Channel:
        return self.bus.topics.get(topic, {}).get(channel) or _Channel()

    async def consumers(self, topic: str, channel: str | None, *, idle_s: float) -> int | None:
        if channel is None:
            return sum(ch.consumers for ch in self.bus.topics.get(topic, {}).values())
        return self._existing(topic, channel).consumers

    async def stats(self, topic: str, channel: str) -> ChannelStats:
        ch = self._existing(topic, channel)
        return ChannelStats(
            topic,
            channel,
            len(ch.ready),
            len(ch.in_flight),
            ch.delayed + self.bus.delayed.get(topic, 0),
            len(ch.dead),
        )

    async def dead_letters(self, topic: str, channel: str, *, limit: int = 100) -> list[DeadLetter]:
        return list(self._existing(topic, channel).dead[:limit])

    async def replay_dead(self, topic: str, channel: str, ids: list[str] | None = None) -> int:
        ch = self._existing(topic, channel)
        chosen = [d for d in ch.dead if ids is None or d.id in ids]
        for dead in chosen:
            ch.dead.remove(dead)
            ch.push(_Item(dead.body))
        return len(chosen)

    async def purge_dead(self, topic: str, channel: str, ids: list[str] | None = None) -> int:
        ch = self._existing(topic, channel)
        keep = [d for d in ch.dead if ids is not None and d.id not in ids]
        purged = len(ch.dead) - len(keep)
        ch.dead[:] = keep
        return purged
