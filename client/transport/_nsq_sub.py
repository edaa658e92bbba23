"""Consuming side of the NSQ backend: a subscription over every nsqd, deliveries, inboxes.

A subscription holds one SUB connection (a *link*) per (nsqd, topic). ``max_in_flight`` is
honoured across all links: each link's RDY is its own unsettled count plus a share of the
free slots, so nsqd can never hand out more than ``max_in_flight`` messages in total. When
there are fewer free slots than links, the shares rotate every quarter second so that no
nsqd is starved.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from nsq import protocol

from ..errors import TransportError
from ._flow import Window, backoff_s
from ._nsq_config import Node
from ._nsq_conn import CLS, NsqdConn
from .base import Delivery, Inbox, Subscription

if TYPE_CHECKING:
    from .nsq import NsqTransport

log = logging.getLogger("kubefuncs.transport.nsq")

ROTATE_EVERY_S = 0.25
DeadLetterFn = Callable[["NsqDelivery", str], Awaitable[None]]


def allot(
    in_flight: list[int], limit: int, offset: int, primary: list[bool] | None = None
) -> list[int]:
    """RDY per link: its unsettled count plus a share of the free slots. Shares are equal;
    the remainder goes to primary links first (the channel's topic before its rarely used
    replay topic; the other way round on every fourth ``offset``), starting at ``offset``
    within each group, so rotating ``offset`` gives every link its turn."""
    count = len(in_flight)
    if not count:
        return []
    base, extra = divmod(max(0, limit - sum(in_flight)), count)
    first = primary or [True] * count
    order = [i for i in range(count) if first[i]], [i for i in range(count) if not first[i]]
    if offset % 4 == 3:
        order = order[::-1]
    position: dict[int, int] = {}
    start = 0
    for group in order:
        for rank, i in enumerate(group):
            position[i] = start + (rank - offset) % len(group)
        start += len(group)
    return [held + base + (1 if position[i] < extra else 0) for i, held in enumerate(in_flight)]


class NsqDelivery(Delivery):
    __slots__ = ("_done", "_msg", "link", "taken")

    def __init__(self, link: _Link, msg: Any) -> None:
        # nsqd's attempts is a uint16; pynsq decodes it signed, so 32768 and up came out
        # negative and never reached max_attempts
        super().__init__(msg.body, int(msg.attempts) & 0xFFFF)
        self.link = link
        self._msg = msg
        self._done = False
        self.taken = False  # handed to the application (holds a window slot)

    @property
    def usable(self) -> bool:
        return not self._done and self.link.conn.alive

    @property
    def timestamp_ms(self) -> int:
        return int(self._msg.timestamp) // 1_000_000

    async def ack(self) -> None:
        self._settle(lambda: self._msg.finish())

    async def retry(self, delay_s: float) -> None:
        # nsqd clamps REQ delays to its --max-req-timeout; so do we, to say so in the log
        delay_ms = max(0, round(delay_s * 1000))
        limit_ms = round(self.link.sub.transport.config.max_req_timeout_s * 1000)
        if delay_ms > limit_ms:
            log.warning("retry delay %.0fs capped at nsqd's max-req-timeout", delay_s)
            delay_ms = limit_ms
        self._settle(lambda: self._msg.requeue(backoff=False, time_ms=delay_ms))

    async def dead_letter(self, reason: str) -> None:
        if self._done:
            return
        self._check()
        try:
            await self.link.sub.dead_letter(self, reason)
        except TransportError:
            # not kept anywhere yet: hand it back, the next attempt dead-letters it again
            self._settle(lambda: self._msg.requeue(backoff=False, time_ms=1000))
            raise
        self._settle(lambda: self._msg.finish())

    async def touch(self) -> None:
        if not self._done:
            self._check()
            self._msg.touch()

    def hand_back(self) -> None:
        """Requeue a delivery the application never saw (the subscription is closing)."""
        if self.usable:
            self._settle(lambda: self._msg.requeue(backoff=False, time_ms=0))

    def _check(self) -> None:
        if not self.link.conn.alive:
            raise TransportError(
                f"connection to nsqd {self.link.conn.address} was lost; nsqd hands the "
                "message out again after its msg_timeout"
            )

    def _settle(self, respond: Callable[[], None]) -> None:
        if self._done:
            return
        self._done = True
        try:
            self._check()
            respond()
        finally:
            self.link.settled(self)


class _Link:
    """One SUB connection: one nsqd, one topic."""

    def __init__(self, sub: NsqSubscription, node: Node, topic: str) -> None:
        self.sub = sub
        self.node = node
        self.topic = topic
        self.conn = NsqdConn(
            node.tcp, sub.transport.config, on_message=self.received, on_close=self.lost
        )

    @property
    def key(self) -> tuple[str, str]:
        return (self.node.tcp, self.topic)

    @property
    def in_flight(self) -> int:
        return int(self.conn.raw.in_flight)

    def ready(self, count: int) -> None:
        if self.conn.alive:
            self.conn.raw.send_rdy(min(count, int(self.conn.raw.max_rdy_count)))

    def received(self, msg: Any) -> None:
        self.sub.received(NsqDelivery(self, msg))

    def settled(self, delivery: NsqDelivery) -> None:
        self.sub.settled(self, delivery)

    def lost(self, conn: NsqdConn) -> None:
        self.sub.lost(self)

    async def shutdown(self) -> None:
        """CLS (nsqd answers once every earlier FIN/REQ is processed), then close."""
        try:
            with contextlib.suppress(TransportError):
                await self.conn.command(CLS, timeout_s=1.0)
        finally:
            self.conn.close()


class NsqSubscription(Subscription):
    """Deliveries of ``channel`` on ``topics`` (NSQ names) from every nsqd of the transport."""

    def __init__(
        self,
        transport: NsqTransport,
        topics: list[str],
        channel: str,
        max_in_flight: int,
        *,
        dead_letter: DeadLetterFn | None = None,
    ) -> None:
        self.transport = transport
        self.topics = topics
        self.channel = channel
        self.window = Window(max_in_flight)
        self.links: dict[tuple[str, str], _Link] = {}
        self.closed = False
        self._dead_letter = dead_letter
        self._queue: asyncio.Queue[NsqDelivery | None] = asyncio.Queue()
        self._connecting: set[tuple[str, str]] = set()
        self._failures: dict[tuple[str, str], int] = {}
        self._next_try: dict[tuple[str, str], float] = {}
        self._offset = 0
        self._rotated = time.monotonic()
        self._attempted = asyncio.Event()  # set whenever a connection attempt ends

    # -- links -----------------------------------------------------------------------------

    def sync(self, nodes: list[Node]) -> None:
        """Connect to every node not yet connected (with backoff after failures)."""
        if self.closed:
            return
        now = time.monotonic()
        for node in nodes:
            for topic in self.topics:
                key = (node.tcp, topic)
                if key in self.links or key in self._connecting:
                    continue
                if now >= self._next_try.get(key, 0.0):
                    self._connecting.add(key)
                    self.transport.spawn(self._connect(_Link(self, node, topic)))
        if now - self._rotated >= ROTATE_EVERY_S:
            self._rotated = now
            self._offset += 1
            self.rebalance()

    async def _connect(self, link: _Link) -> None:
        try:
            await link.conn.open(self.transport.config.dial_timeout_s)
            await link.conn.command(protocol.subscribe(link.topic, self.channel))
        except TransportError as e:
            self._failed(link.key, str(e))
            link.conn.close()
            return
        finally:
            self._connecting.discard(link.key)
            self._attempted.set()
        if self.closed:
            await link.shutdown()
            return
        if self._failures.pop(link.key, 0):
            log.info("consuming %s/%s on nsqd %s again", link.topic, self.channel, link.node.tcp)
        self.links[link.key] = link
        self.transport.negotiated(link.conn)
        self.rebalance()

    def _failed(self, key: tuple[str, str], why: str) -> None:
        failures = self._failures.get(key, 0) + 1
        self._failures[key] = failures
        self._next_try[key] = time.monotonic() + backoff_s(failures)
        if failures == 1:
            log.warning("cannot consume %s/%s on nsqd %s: %s", key[1], self.channel, key[0], why)

    def tried(self, keys: set[tuple[str, str]]) -> bool:
        """Every one of ``keys`` is linked, or failed at least once."""
        return all(
            key in self.links or (key not in self._connecting and key in self._failures)
            for key in keys
        )

    async def wait_tried(self, keys: set[tuple[str, str]], timeout_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while not self.tried(keys):
                    self._attempted.clear()
                    await self._attempted.wait()

    def lost(self, link: _Link) -> None:
        if self.links.get(link.key) is not link:
            return
        del self.links[link.key]
        if not self.closed:
            self._failed(link.key, "connection lost")
        self.rebalance()

    def rebalance(self) -> None:
        links = [link for link in self.links.values() if link.conn.alive]
        if self.closed:
            counts = [0] * len(links)
        else:
            counts = allot(
                [link.in_flight for link in links],
                self.window.limit,
                self._offset,
                [link.topic == self.topics[0] for link in links],
            )
        for link, count in zip(links, counts, strict=True):
            link.ready(count)

    # -- deliveries ------------------------------------------------------------------------

    def received(self, delivery: NsqDelivery) -> None:
        if self.closed:
            delivery.hand_back()
            return
        self._queue.put_nowait(delivery)
        self.rebalance()

    def settled(self, link: _Link, delivery: NsqDelivery) -> None:
        if delivery.taken:
            self.window.release()
        if self.closed and link.in_flight == 0 and self.links.pop(link.key, None) is link:
            self.transport.spawn(link.shutdown())
        else:
            self.rebalance()

    async def dead_letter(self, delivery: NsqDelivery, reason: str) -> None:
        if self._dead_letter is None:
            raise TransportError(f"{self.topics[0]}/{self.channel} keeps no dead letters")
        await self._dead_letter(delivery, reason)

    async def _deliveries(self) -> AsyncIterator[Delivery]:
        while await self.window.wait_free():
            delivery = await self._queue.get()
            if delivery is None:
                return
            if not delivery.usable:  # its connection is gone: nsqd hands it out again
                continue
            delivery.taken = True
            self.window.take()
            yield delivery

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.window.close()
        while not self._queue.empty():
            waiting = self._queue.get_nowait()
            if waiting is not None:
                waiting.hand_back()
        self._queue.put_nowait(None)
        self.rebalance()  # RDY 0 everywhere
        for link in list(self.links.values()):
            if link.in_flight == 0:
                del self.links[link.key]
                self.transport.spawn(link.shutdown())

    def abort(self) -> None:
        """Drop every connection (the transport is closing)."""
        for link in list(self.links.values()):
            link.conn.close()
        self.links.clear()


class NsqInbox(Inbox):
    """Replies to this process: an ephemeral topic read on every nsqd; FIN on receipt."""

    def __init__(self, sub: NsqSubscription, address: str) -> None:
        self.sub = sub
        self.address = address

    async def _bodies(self) -> AsyncIterator[bytes]:
        async for delivery in self.sub:
            with contextlib.suppress(TransportError):
                await delivery.ack()
            yield delivery.body

    async def close(self) -> None:
        await self.sub.close()
