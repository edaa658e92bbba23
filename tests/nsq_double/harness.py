"""Ways to run the doubles: inside the current event loop, or on a background thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from .lookupd import LookupdDouble
from .server import NsqdDouble

T = TypeVar("T")


@asynccontextmanager
async def running_nsqd(
    *,
    with_lookupd: bool = False,
    host: str = "127.0.0.1",
    tcp_port: int = 0,
    http_port: int = 0,
    lookupd_http_port: int = 0,
    **options: Any,
) -> AsyncIterator[NsqdDouble]:
    """Start an :class:`NsqdDouble` (and optionally its lookupd) in the running loop.

    The lookupd, when requested, is reachable as ``nsqd.lookupd``.
    """
    lookupd = LookupdDouble() if with_lookupd else None
    if lookupd is not None:
        await lookupd.start(host, lookupd_http_port)
    nsqd = NsqdDouble(lookupd=lookupd, **options)
    try:
        await nsqd.start(host, tcp_port, http_port)
        yield nsqd
    finally:
        await nsqd.stop()
        if lookupd is not None:
            await lookupd.stop()


@dataclass
class BackgroundNsqd:
    """Handle on doubles running in a background thread's event loop."""

    nsqd: NsqdDouble
    loop: asyncio.AbstractEventLoop

    @property
    def tcp_address(self) -> str:
        return self.nsqd.tcp_address

    @property
    def http_address(self) -> str:
        return self.nsqd.http_address

    @property
    def lookupd_http_address(self) -> str | None:
        return self.nsqd.lookupd.http_address if self.nsqd.lookupd else None

    def call(self, fn: Callable[[], T], timeout: float = 5.0) -> T:
        """Run ``fn`` on the server's loop (the doubles are not thread-safe)."""

        async def invoke() -> T:
            return fn()

        return self.run(invoke(), timeout)

    def run(self, coro: Awaitable[T], timeout: float = 5.0) -> T:
        async def wrapper() -> T:
            return await coro

        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result(timeout)


@contextmanager
def nsqd_in_thread(**kwargs: Any) -> Iterator[BackgroundNsqd]:
    """Run :func:`running_nsqd` on a private event loop in a daemon thread (for sync code)."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    stopping = asyncio.Event()
    outcome: dict[str, Any] = {}

    async def serve() -> None:
        try:
            async with running_nsqd(**kwargs) as nsqd:
                outcome["nsqd"] = nsqd
                ready.set()
                await stopping.wait()
        except Exception as exc:
            outcome["error"] = exc
        finally:
            ready.set()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    try:
        if not ready.wait(10) or "error" in outcome:
            raise RuntimeError("nsqd double failed to start") from outcome.get("error")
        yield BackgroundNsqd(outcome["nsqd"], loop)
    finally:
        loop.call_soon_threadsafe(stopping.set)
        thread.join(10)
        loop.close()
