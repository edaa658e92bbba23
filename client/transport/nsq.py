"""NSQ backend on pynsq's connection class (tornado on the asyncio loop).

Topic and channel are NSQ's own. Every consumer connects to every nsqd the transport knows
(from ``?nsqd=`` and from nsqlookupd ``/nodes``, re-read every ``lookupd_poll_interval_s``),
so a topic that appears on an nsqd is consumed at once, without waiting for a lookupd poll.
A publish goes to one nsqd chosen by a stable hash of the topic (the next one on failure).

Retries are ``REQ <delay>`` (per channel, attempt = NSQ ``attempts``); delayed publishes
``DPUB``; long work ``TOUCH``. NSQ keeps no dead letters: they are published to the
per-channel topic ``<topic>.<channel>.dead`` as a msgpack map, then FINished; replays go to
``<topic>.<channel>.replay``, which the channel's consumers also read. Reply inboxes are
``kf.r.<id>#ephemeral`` topics; the address names the nsqd the owner prefers, and the
replier publishes there. docs/buses.md and docs/protocol.md §11 have the details.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import Any

from ..errors import TransportError, Undeliverable
from . import check_name
from ._nsq_config import (
    DEAD_CHANNEL,
    INBOX_CHANNEL,
    Node,
    NsqConfig,
    new_reply_topic,
    parse_reply_address,
    reply_address,
    side_topic,
    wire_channel,
)
from ._nsq_conn import NsqdConn, NsqdRefused
from ._nsq_dead import Decide, dead_passes, wrap
from ._nsq_http import Figures, NsqHttp
from ._nsq_pub import Publishers
from ._nsq_sub import NsqDelivery, NsqInbox, NsqSubscription
from .base import ChannelStats, DeadLetter, Inbox, Subscription, Transport

log = logging.getLogger("kubefuncs.transport.nsq")

TICK_S = 0.1  # how often links are checked and reconnected (each with its own backoff)
INBOX_MAX_IN_FLIGHT = 1000


class NsqTransport(Transport):
    """Transport on one NSQ cluster; see the module docstring."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.config = NsqConfig.from_url(url)
        self.touch_interval_s = (self.config.msg_timeout_s or 60.0) / 3
        self.http = NsqHttp(self.config.dial_timeout_s + 3)
        self.nodes: list[Node] = list(self.config.nsqd)
        self.publishers = Publishers(self.config, self.negotiated)
        self._subs: list[NsqSubscription] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._supervisor: asyncio.Task[None] | None = None
        self._refreshed = 0.0
        self._refreshing = False
        self._closed = False

    # -- connection ------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        if self._closed:
            return False
        conns = [
            *self.publishers.conns.values(),
            *(link.conn for sub in self._subs for link in sub.links.values()),
        ]
        return any(conn.alive for conn in conns)

    async def connect(self) -> None:
        self._check_open()
        self._start()
        if self.connected:
            return
        await self._refresh_nodes(required=True)
        errors = []
        for node in self.publishers.ranked(self.nodes, ""):
            try:
                await self.publishers.conn(node)
                return
            except TransportError as e:
                errors.append(str(e))
        raise TransportError(f"cannot reach any nsqd of {self._safe_url}: {'; '.join(errors)}")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._supervisor is not None:
            self._supervisor.cancel()
        for sub in self._subs:
            await sub.close()
            sub.abort()
        self.publishers.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._supervisor is not None:
            await asyncio.gather(self._supervisor, return_exceptions=True)
        await self.http.close()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` in the background, cancelled when the transport closes."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("NSQ background task failed: %r", task.exception())

    def negotiated(self, conn: NsqdConn) -> None:
        """nsqd told its msg_timeout (the visibility timeout): touch at a third of it."""
        if conn.msg_timeout_s:
            self.touch_interval_s = conn.msg_timeout_s / 3

    def _check_open(self) -> None:
        if self._closed:
            raise TransportError(f"transport {self._safe_url} is closed")

    @property
    def _safe_url(self) -> str:
        return self.url.split("?")[0]

    def _start(self) -> None:
        if self._supervisor is None:
            self._supervisor = asyncio.create_task(self._supervise())

    async def _supervise(self) -> None:
        """Reconnect what was lost, re-read nsqlookupd, drop connections gone silent."""
        while True:
            due = time.monotonic() - self._refreshed >= self.config.lookupd_poll_interval_s
            if due and not self._refreshing:
                self.spawn(self._refresh_nodes())
            now = time.time()
            for sub in self._subs:
                for link in list(sub.links.values()):
                    if link.conn.stale(now):
                        link.conn.close()
                sub.sync(self.nodes)
            self._keep_publisher()
            await asyncio.sleep(TICK_S)

    async def _refresh_nodes(self, *, required: bool = False) -> None:
        """Re-read the nsqd nodes from nsqlookupd (kept as they were when none answers)."""
        self._refreshed = time.monotonic()
        if not self.config.lookupd_http:
            return
        self._refreshing = True
        try:
            found, errors = await self._lookup_nodes()
        finally:
            self._refreshing = False
        if len(errors) == len(self.config.lookupd_http):
            log.warning("no nsqlookupd answered: %s", "; ".join(errors))
        else:
            known = {n.tcp for n in self.config.nsqd}
            self.nodes = [*self.config.nsqd, *(n for n in found if n.tcp not in known)]
        if required and not self.nodes:
            why = "; ".join(errors) or "nsqlookupd knows no nsqd yet"
            raise TransportError(f"no nsqd found through {self._safe_url}: {why}")

    async def _lookup_nodes(self) -> tuple[list[Node], list[str]]:
        found: dict[str, Node] = {}
        errors = []
        for lookupd in self.config.lookupd_http:
            try:
                found.update((n.tcp, n) for n in await self.http.nodes(lookupd))
            except TransportError as e:
                errors.append(str(e))
        return list(found.values()), errors

    async def _known_nodes(self) -> list[Node]:
        self._check_open()
        self._start()
        if not self.nodes:
            await self._refresh_nodes(required=True)
        return list(self.nodes)

    # -- publishing ------------------------------------------------------------------------

    async def publish(self, topic: str, body: bytes, *, delay_s: float = 0.0) -> None:
        wire = self.config.wire(check_name("topic", topic))
        delay_ms = max(0, round(delay_s * 1000))
        if delay_ms > self.config.max_req_timeout_s * 1000:
            raise TransportError(
                f"NSQ cannot delay a message by {delay_s:g}s: nsqd's max-req-timeout is "
                f"{self.config.max_req_timeout_s:g}s (bus URL option max_req_timeout_s)"
            )
        await self.publish_wire(wire, body, delay_ms=delay_ms)

    async def publish_wire(
        self, topic: str, body: bytes, *, delay_ms: int = 0, prefer: str | None = None
    ) -> None:
        """Publish to the NSQ topic ``topic`` on ``prefer`` or the topic's nsqd, else the next."""
        nodes = await self._known_nodes()
        await self.publishers.publish(nodes, topic, body, delay_ms, prefer)

    def _keep_publisher(self) -> None:
        """Keep one publishing connection up, so ``connected`` tells the truth."""
        if self.publishers.dialing or self.publishers.alive:
            return
        for node in self.publishers.ranked(self.nodes, ""):
            if self.publishers.up(node):
                self.spawn(self.publishers.redial(node))
                return

    # -- consuming -------------------------------------------------------------------------

    async def ensure_channel(self, topic: str, channel: str) -> None:
        wire = self.config.wire(check_name("topic", topic))
        wire_channel(check_name("channel", channel))
        for node in await self._known_nodes():
            await self.http.create_channel(node, wire, channel)
        for lookupd in self.config.lookupd_http:
            await self.http.register_channel(lookupd, wire, channel)

    async def subscribe(self, topic: str, channel: str, *, max_in_flight: int) -> Subscription:
        wire = self.config.wire(check_name("topic", topic))
        wire_channel(check_name("channel", channel))

        async def dead_letter(delivery: NsqDelivery, reason: str) -> None:
            await self._dead_letter(topic, channel, delivery, reason)

        # an ephemeral channel is gone with its last reader, so nothing could be replayed to
        # it, and its replay topic would stay behind on nsqd, one for every reader that ran
        ephemeral = channel.endswith("#ephemeral")
        topics = [wire] if ephemeral else [wire, side_topic(wire, channel, "replay")]
        sub = NsqSubscription(self, topics, channel, max_in_flight, dead_letter=dead_letter)
        await self._attach(sub)
        return sub

    async def _attach(self, sub: NsqSubscription) -> None:
        """Start consuming and wait until every nsqd had its chance: a message published
        after this returns is not missed by a channel that did not exist yet."""
        nodes = await self._known_nodes()
        self._subs.append(sub)
        sub.sync(nodes)
        keys = {(node.tcp, topic) for node in nodes for topic in sub.topics}
        await sub.wait_tried(keys, self.config.dial_timeout_s + 1)

    # -- replies ---------------------------------------------------------------------------

    async def open_inbox(self, ttl_s: float) -> Inbox:
        topic = new_reply_topic()
        sub = NsqSubscription(self, [topic], INBOX_CHANNEL, INBOX_MAX_IN_FLIGHT)
        await self._attach(sub)
        ranked = self.publishers.ranked(self.nodes, topic)
        linked = [node for node in ranked if (node.tcp, topic) in sub.links]
        home = (linked or ranked)[0]
        return NsqInbox(sub, reply_address(topic, home.tcp))

    async def send_reply(self, address: str, body: bytes) -> None:
        parsed = parse_reply_address(address)
        if parsed is None:
            raise Undeliverable(f"reply address {address!r} is not a reply inbox of an NSQ bus")
        topic, nsqd = parsed
        if nsqd not in {node.tcp for node in self.nodes}:
            # an nsqd we do not know yet (it joined since the last poll): ask lookupd now
            await self._refresh_nodes()
        await self.publish_wire(topic, body, prefer=nsqd)

    # -- figures and dead letters ----------------------------------------------------------

    async def stats(self, topic: str, channel: str) -> ChannelStats:
        wire = self.config.wire(topic)
        names = (wire, side_topic(wire, channel, "replay"))
        dead_topic = side_topic(wire, channel, "dead")
        main = dead = Figures()
        for node in await self._known_nodes():
            for name in names:
                main += await self.http.figures(node, name, channel)
            dead += await self.http.figures(node, dead_topic, DEAD_CHANNEL)
        total_dead = dead.topic_depth + dead.depth + dead.in_flight + dead.deferred
        return ChannelStats(topic, channel, main.depth, main.in_flight, main.deferred, total_dead)

    async def _dead_letter(
        self, topic: str, channel: str, delivery: NsqDelivery, reason: str
    ) -> None:
        dead_topic = side_topic(self.config.wire(topic), channel, "dead")
        prefer = delivery.link.node.tcp
        letter = wrap(delivery.body, reason, delivery.attempt, topic, channel)
        try:
            await self.publish_wire(dead_topic, letter, prefer=prefer)
        except NsqdRefused as e:  # too big for nsqd with the wrapper: keep what we can
            log.warning("dead letter of %s/%s kept without its body: %s", topic, channel, e)
            note = f"{reason} [body of {len(delivery.body)} bytes not kept: {e}]"
            letter = wrap(b"", note, delivery.attempt, topic, channel)
            await self.publish_wire(dead_topic, letter, prefer=prefer)

    async def dead_letters(self, topic: str, channel: str, *, limit: int = 100) -> list[DeadLetter]:
        async def keep(_: DeadLetter) -> bool:
            return False

        return await self._dead_passes(topic, channel, keep, limit=limit, repeat=False)

    async def replay_dead(self, topic: str, channel: str, ids: list[str] | None = None) -> int:
        replay = side_topic(self.config.wire(topic), channel, "replay")
        count = 0

        async def chosen(letter: DeadLetter) -> bool:
            nonlocal count
            if ids is not None and letter.id not in ids:
                return False
            await self.publish_wire(replay, letter.body)
            count += 1
            return True

        await self._dead_passes(topic, channel, chosen, repeat=ids is None)
        return count

    async def purge_dead(self, topic: str, channel: str, ids: list[str] | None = None) -> int:
        count = 0

        async def chosen(letter: DeadLetter) -> bool:
            nonlocal count
            if ids is not None and letter.id not in ids:
                return False
            count += 1
            return True

        await self._dead_passes(topic, channel, chosen, repeat=ids is None)
        return count

    async def _dead_passes(
        self, topic: str, channel: str, decide: Decide, *, limit: int = 0, repeat: bool
    ) -> list[DeadLetter]:
        dead_topic = side_topic(self.config.wire(topic), channel, "dead")
        nodes = await self._known_nodes()
        return await dead_passes(
            self.config, self.http, nodes, dead_topic, decide, limit=limit, repeat=repeat
        )

    async def maintain(self) -> None:
        """Nothing to move (nsqd defers natively); re-read nsqlookupd when it is time."""
        if time.monotonic() - self._refreshed >= self.config.lookupd_poll_interval_s:
            await self._refresh_nodes()
