"""Where NSQ tests run: the nsqd double (in this event loop), or a real nsqd/nsqlookupd
when ``NSQD_TCP_ADDRESS`` + ``NSQD_HTTP_ADDRESS`` (and optionally ``NSQLOOKUPD_HTTP_ADDRESS``)
are set. Real servers live long, so every URL carries a fresh topic ``prefix``."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from kubefuncs.transport import Delivery, Subscription
from kubefuncs.wire import new_id

from tests.nsq_double import LookupdDouble, NsqdDouble, running_nsqd

FAST_MSG_TIMEOUT_S = 0.4  # the double accepts less than nsqd's 1 s minimum
# nsqd acts on retries and timeouts in its queue scan loop, whose channel list it refreshes
# every 5 s: these tests run the double as nsqd's own tests run nsqd, at 0.1 s
DOUBLE = {"msg_timeout_s": FAST_MSG_TIMEOUT_S, "queue_scan_refresh_interval_s": 0.1}
OPTIONS = "lookupd_poll_interval_s=0.2&dial_timeout_s=1"


def real_nsq() -> tuple[str, str, str | None] | None:
    """(nsqd TCP, nsqd HTTP, lookupd HTTP or None) from the environment, else None."""
    tcp, http = os.environ.get("NSQD_TCP_ADDRESS"), os.environ.get("NSQD_HTTP_ADDRESS")
    if not (tcp and http):
        return None
    return tcp, http, os.environ.get("NSQLOOKUPD_HTTP_ADDRESS") or None


def bus_url(*, tcp: str, http: str, lookupd: str | None, real: bool, extra: str = "") -> str:
    options = f"prefix=t{new_id()[:8]}.&{OPTIONS}"
    if real:
        options += "&msg_timeout_s=1"  # nsqd's minimum
    if extra:
        options += f"&{extra}"
    if lookupd:
        return f"nsq://{lookupd}?{options}"
    return f"nsq://?nsqd={tcp}&nsqd_http={http}&{options}"


@asynccontextmanager
async def nsq_url(*, lookupd: bool = True, extra: str = "") -> AsyncIterator[str]:
    """A bus URL for one test: a fresh double (with a lookupd unless told otherwise), or
    the real nsqd from the environment."""
    real = real_nsq()
    if real is not None:
        tcp, http, real_lookupd = real
        yield bus_url(
            tcp=tcp, http=http, lookupd=real_lookupd if lookupd else None, real=True, extra=extra
        )
        return
    async with running_nsqd(with_lookupd=lookupd, **DOUBLE) as nsqd:
        found = nsqd.lookupd.http_address if nsqd.lookupd else None
        yield bus_url(
            tcp=nsqd.tcp_address, http=nsqd.http_address, lookupd=found, real=False, extra=extra
        )


@asynccontextmanager
async def cluster(
    nodes: int, **options: Any
) -> AsyncIterator[tuple[LookupdDouble, list[NsqdDouble]]]:
    """``nodes`` nsqd doubles registered with one nsqlookupd double."""
    options = {**DOUBLE, **options}
    lookupd = LookupdDouble()
    await lookupd.start("127.0.0.1", 0)
    started: list[NsqdDouble] = []
    try:
        for _ in range(nodes):
            started.append(await start_node(lookupd, **options))
        yield lookupd, started
    finally:
        for nsqd in started:
            await nsqd.stop()
        await lookupd.stop()


async def start_node(lookupd: LookupdDouble | None, **options: Any) -> NsqdDouble:
    nsqd = NsqdDouble(lookupd=lookupd, **{**DOUBLE, **options})
    await nsqd.start("127.0.0.1", 0, 0)
    return nsqd


class Pump:
    """Reads a subscription into a queue so tests can wait with a timeout."""

    def __init__(self, sub: Subscription) -> None:
        self.sub = sub
        self.queue: asyncio.Queue[Delivery] = asyncio.Queue()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for delivery in self.sub:
            self.queue.put_nowait(delivery)

    async def take(self, n: int = 1, timeout_s: float = 5.0) -> list[Delivery]:
        async with asyncio.timeout(timeout_s):
            return [await self.queue.get() for _ in range(n)]

    async def nothing(self, wait_s: float = 0.3) -> bool:
        await asyncio.sleep(wait_s)
        return self.queue.empty()

    async def stop(self) -> None:
        await self.sub.close()
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


async def eventually(check: Callable[[], Any], within_s: float = 5.0) -> Any:
    """Poll ``check`` (sync or async) until it returns something truthy."""
    async with asyncio.timeout(within_s):
        while True:
            result = check()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return result
            await asyncio.sleep(0.02)
