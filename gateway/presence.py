"""Which functions are running: the gateway's knowledge of its topics' consumers.

The gateway publishes every request and event, so it is the first to know that work has
arrived for a function; whether that function runs is read from the bus (live consumers,
``Transport.consumers``) every ``poll_s`` by one background task, never on the request
path. Two users:

* the KEDA external scaler (scaler.py): each open ``StreamIsActive`` stream is a
  :class:`Watcher` of one topic/channel, woken at once when work arrives for a channel with
  no live consumer (or none known yet), so KEDA scales it from zero without waiting for
  its next poll;
* routes with ``cold_start_timeout_s``: a request to a topic with no live consumer waits
  that long for its reply instead of the route's ``timeout_s``.

An unknown state (not polled yet, or a bus that cannot tell, e.g. NSQ) counts as cold: a
push too many costs KEDA one check, a push too few costs a caller the poll interval.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kubefuncs.errors import TransportError
from kubefuncs.transport import Transport

if TYPE_CHECKING:  # settings import this module, and routes import settings (via auth)
    from .routes import Route

log = logging.getLogger("kubefuncs.gateway.scaler")

Key = tuple[str, str | None]  # (topic, channel); channel None: any channel of the topic


@dataclass(frozen=True, slots=True)
class PresenceSettings:
    poll_s: float = 1.0  # how often live consumers are read from the bus
    idle_s: float = 10.0  # a consumer that has not read for this long is not running
    push_interval_s: float = 1.0  # at most one push per topic/channel this often
    active_s: float = 30.0  # IsActive stays true this long after the last arrival


@dataclass(eq=False, slots=True)
class Watcher:
    """One StreamIsActive stream: ``wake`` is set when it should send ``true``."""

    topic: str
    channel: str
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class Presence:
    """Live consumers by topic/channel, the last arrival by topic, and the watchers."""

    def __init__(
        self,
        transport: Transport,
        settings: PresenceSettings,
        topics: Iterable[str] = (),
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.transport = transport
        self.settings = settings
        self._clock = clock
        self.live: dict[Key, int | None] = {(t, None): None for t in topics}
        self.arrivals: dict[str, float] = {}
        self.watchers: dict[str, set[Watcher]] = {}
        self._pushed: dict[Key, float] = {}
        self.pushes: dict[str, int] = {}  # by topic (kubefuncs_gateway_scaler_pushes)

    def track(self, topics: Iterable[str]) -> None:
        """Poll these topics for any live consumer from now on (the cold-start routes of a
        reloaded table), and no longer those that left it."""
        wanted = set(topics)
        for key in [k for k in self.live if k[1] is None and k[0] not in wanted]:
            del self.live[key]
        for topic in wanted:
            self.live.setdefault((topic, None), None)

    # -- the request path (synchronous, no I/O) -------------------------------------------

    def arrived(self, topic: str) -> bool:
        """Note work for ``topic``; wake the watchers of its channels that may be at zero.
        True when no consumer of the topic is known to be running (a cold start)."""
        now = self._clock()
        self.arrivals[topic] = now
        watchers = self.watchers.get(topic)
        if watchers:
            for watcher in watchers:
                if not self.live.get((topic, watcher.channel)):
                    self._push(watcher, now)
        return not self.live.get((topic, None))

    def route_for(self, route: Route) -> Route:
        """Note work for ``route``'s topic; with no consumer running, the route with its
        cold-start timeout as its timeout when that is the longer."""
        cold_s = route.cold_start_timeout_s
        if not self.arrived(route.topic) or cold_s is None or cold_s <= route.timeout_s:
            return route
        return dataclasses.replace(route, timeout_s=cold_s)

    def _push(self, watcher: Watcher, now: float) -> None:
        key = (watcher.topic, watcher.channel)
        if now - self._pushed.get(key, float("-inf")) < self.settings.push_interval_s:
            return
        self._pushed[key] = now
        self.pushes[watcher.topic] = self.pushes.get(watcher.topic, 0) + 1
        for each in self.watchers.get(watcher.topic, ()):
            if each.channel == watcher.channel:
                each.wake.set()

    def streams(self) -> int:
        return sum(len(w) for w in self.watchers.values())

    def recently_active(self, topic: str) -> bool:
        arrived = self.arrivals.get(topic)
        return arrived is not None and self._clock() - arrived < self.settings.active_s

    # -- watchers (scaler.py) --------------------------------------------------------------

    def watch(self, topic: str, channel: str) -> Watcher:
        watcher = Watcher(topic, channel)
        self.watchers.setdefault(topic, set()).add(watcher)
        self.live.setdefault((topic, channel), None)
        return watcher

    def unwatch(self, watcher: Watcher) -> None:
        """Forget a closed stream, and its channel once no stream watches it (so streams
        naming ever new channels cannot grow what each poll reads)."""
        same = self.watchers.get(watcher.topic, set())
        same.discard(watcher)
        if not same:
            self.watchers.pop(watcher.topic, None)
        if not any(w.channel == watcher.channel for w in same):
            key = (watcher.topic, watcher.channel)
            self.live.pop(key, None)
            self._pushed.pop(key, None)

    # -- the poll loop ---------------------------------------------------------------------

    async def run(self) -> None:
        """Refresh every key each ``poll_s``; a bus that fails leaves the keys unknown."""
        while True:
            await self.refresh()
            await asyncio.sleep(self.settings.poll_s)

    async def refresh(self) -> None:
        """One pass over the keys; a key the bus cannot answer for is unknown (cold) until
        the next pass, and nothing a bus answers can end the loop."""
        for key in list(self.live):
            try:
                await self._refresh(key)
            except TransportError as e:
                log.debug("consumers of %s unknown: %s", key[0], e)
                self.live[key] = None
            except Exception:  # a bus answer we cannot read must not stop the loop
                log.exception("reading the consumers of %s failed", key[0])
                self.live[key] = None

    async def _refresh(self, key: Key) -> None:
        live = await self.transport.consumers(key[0], key[1], idle_s=self.settings.idle_s)
        if key in self.live:  # a stream may have closed meanwhile
            self.live[key] = live
        if key[1] is not None and not live:
            await self._wake_if_waiting(key[0], key[1])

    async def _wake_if_waiting(self, topic: str, channel: str) -> None:
        """Work that is waiting for a channel with no consumer (published while the state
        said it ran, or by someone else than this gateway) wakes its watchers too."""
        watchers = [w for w in self.watchers.get(topic, ()) if w.channel == channel]
        if watchers and await self.waiting(topic, channel):
            self._push(watchers[0], self._clock())

    async def waiting(self, topic: str, channel: str) -> int:
        """Messages waiting for the channel or held by it (depth + in flight + delayed)."""
        stats = await self.transport.stats(topic, channel)
        return stats.depth + stats.in_flight + stats.delayed

    async def depth(self, topic: str, channel: str) -> int:
        """Messages not yet delivered to the channel (its lag, retries included)."""
        return (await self.transport.stats(topic, channel)).depth
