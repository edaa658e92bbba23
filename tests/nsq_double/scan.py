"""nsqd's queue scan loop: the only thing that times out in-flight messages and releases
deferred ones (nsqd.go ``queueScanLoop``, a copy of Redis's probabilistic expiry).

Every ``queue_scan_interval_s`` it visits ``queue_scan_selection_count`` channels picked at
random from a list it refreshes only every ``queue_scan_refresh_interval_s``; when more than
``queue_scan_dirty_percent`` of them had work it goes again at once. So a channel created
since the last refresh has no timeouts and no deferrals at all until the next one (5 s by
default), and with many channels each one is visited only now and then.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

from .broker import Channel
from .options import NsqdOptions


async def queue_scan_loop(options: NsqdOptions, channels: Callable[[], list[Channel]]) -> None:
    loop = asyncio.get_running_loop()
    cached = channels()
    next_work = loop.time() + options.queue_scan_interval_s
    next_refresh = loop.time() + options.queue_scan_refresh_interval_s
    while True:
        await asyncio.sleep(max(0.0, min(next_work, next_refresh) - loop.time()))
        now = loop.time()
        if now >= next_refresh:  # nsqd's refresh tick: new list, no scan this round
            cached = channels()
            next_refresh = now + options.queue_scan_refresh_interval_s
            continue
        next_work = now + options.queue_scan_interval_s
        await scan_round(options, cached)


async def scan_round(options: NsqdOptions, cached: list[Channel]) -> None:
    """Scan random channels until no more than the dirty share of them had work."""
    loop = asyncio.get_running_loop()
    while cached:
        picked = random.sample(cached, min(options.queue_scan_selection_count, len(cached)))
        now = loop.time()
        dirty = sum(1 for channel in picked if channel.scan(now))
        if dirty / len(picked) <= options.queue_scan_dirty_percent:
            return
        await asyncio.sleep(0)  # nsqd's "goto loop", without starving the connections
