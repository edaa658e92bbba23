"""One contract-test body, many buses: memory, fakeredis, real Valkey 8, real Redis 7, a real
Valkey Cluster (3 masters, 3 replicas), and
NSQ (the nsqd double, or a real nsqd when NSQD_TCP_ADDRESS/NSQD_HTTP_ADDRESS are set)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from kubefuncs.transport import Delivery, Subscription, Transport, from_url
from kubefuncs.transport.valkey import ValkeyTransport
from kubefuncs.wire import new_id

from tests.nsq.support import nsq_url
from tests.servers import ServerProcess

# short timings so redelivery tests take a fraction of a second
OPTIONS = "visibility_timeout_s=0.4&block_ms=50&trim_interval_s=0"

BUSES = [
    "memory",
    "fakeredis",
    pytest.param("valkey", marks=pytest.mark.real),
    pytest.param("redis", marks=pytest.mark.real),
    pytest.param("cluster", marks=pytest.mark.real),
    "nsq",
]

BusFactory = Callable[[], Awaitable[Transport]]
_readers: list[Reader] = []


class Reader:
    """Pumps a subscription into a queue, so a test can wait for deliveries with a timeout
    without cancelling the subscription's iterator."""

    def __init__(self, sub: Subscription) -> None:
        self.queue: asyncio.Queue[Delivery] = asyncio.Queue()
        self.sub = sub
        self.task = asyncio.create_task(self._pump(sub))
        _readers.append(self)

    async def _pump(self, sub: Subscription) -> None:
        async for d in sub:
            self.queue.put_nowait(d)


def reader(sub: Subscription) -> Reader:
    return Reader(sub)


def _url(request: pytest.FixtureRequest, kind: str) -> str:
    prefix = "t" + new_id()[:10]
    if kind == "memory":
        return f"memory://{prefix}?{OPTIONS}"
    if kind == "cluster":  # the session's 3-master, 3-replica Valkey Cluster
        return f"{request.getfixturevalue('valkey_cluster').url}/?prefix={prefix}&{OPTIONS}"
    server: ServerProcess = request.getfixturevalue(f"{kind}_server")
    return f"{kind}://127.0.0.1:{server.port}/0?prefix={prefix}&{OPTIONS}"


@pytest.fixture(params=BUSES)
async def bus(request: pytest.FixtureRequest) -> AsyncIterator[BusFactory]:
    """A factory of connected transports that all talk to one fresh bus (like separate
    processes would), closed at the end of the test."""
    kind = request.param
    made: list[Transport] = []
    fake_server = None
    stack = contextlib.AsyncExitStack()
    if kind == "fakeredis":
        import fakeredis

        fake_server = fakeredis.FakeServer()
    if kind == "nsq":  # a fresh nsqd double + lookupd (visibility timeout = its msg_timeout)
        url = await stack.enter_async_context(nsq_url())
    else:
        url = _url(request, "memory" if kind == "fakeredis" else kind)

    async def make() -> Transport:
        if fake_server is not None:
            import fakeredis

            fake = fakeredis.FakeAsyncRedis(server=fake_server)
            # fakeredis blocks the event loop on blocking reads: poll instead (block_ms=0)
            t: Transport = ValkeyTransport(
                f"redis://fake/0?{OPTIONS.replace('block_ms=50', 'block_ms=0')}", redis=fake
            )
        else:
            t = from_url(url)
        await t.connect()
        made.append(t)
        return t

    yield make
    while _readers:  # stop readers the polite way first, as a process shutting down would
        r = _readers.pop()
        await r.sub.close()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(r.task, 2)
    for t in made:
        with contextlib.suppress(Exception):
            await t.close()
    await stack.aclose()


@contextlib.asynccontextmanager
async def maintained(t: Transport, every_s: float = 0.02) -> AsyncIterator[None]:
    """Run the transport's housekeeping in the background, as long-running processes do.
    Stopped by a flag, not only by cancel: redis-py's use of asyncio.wait_for on Python 3.11
    can swallow a cancellation, which would leave the loop running forever."""
    stop = asyncio.Event()

    async def loop() -> None:
        while not stop.is_set():
            await t.maintain()
            await asyncio.sleep(every_s)

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        stop.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
