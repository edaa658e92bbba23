"""Waiting for correlated replies: one inbox per process, one reader task, a map from
correlation id to waiter (the shape nameko uses for RPC over a bus), and one timer for
every waiter's time limit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import deque

from . import wire
from .transport import Inbox, Transport

log = logging.getLogger(__name__)


class ReplyRouter:
    """Owns this process's reply inbox and hands each reply to whoever waits for it."""

    def __init__(self, transport: Transport, *, ttl_s: float = 60.0) -> None:
        self.transport = transport
        self.ttl_s = ttl_s
        self.late = 0  # replies nobody waited for any more (timed out, or unknown)
        self.malformed = 0  # replies dropped because they could not be read
        self._waiters: dict[str, asyncio.Future[wire.Envelope]] = {}
        self._deadlines = _Deadlines(self._waiters)
        self._inbox: Inbox | None = None
        self._reader: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def address(self) -> str:
        """The inbox address (opened on first use)."""
        if self._inbox is None:
            async with self._lock:
                if self._inbox is None:
                    inbox = await self.transport.open_inbox(self.ttl_s)
                    self._reader = asyncio.create_task(self._read(inbox))
                    self._inbox = inbox
        return self._inbox.address

    def expect(
        self, correlation_id: str, timeout_s: float | None = None
    ) -> asyncio.Future[wire.Envelope]:
        """Register interest in a reply before publishing the request. With ``timeout_s``
        the future fails with TimeoutError when no reply came in that time."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[wire.Envelope] = loop.create_future()
        self._waiters[correlation_id] = future
        if timeout_s is not None:
            self._deadlines.add(loop, correlation_id, timeout_s)
        return future

    def forget(self, correlation_id: str) -> None:
        self._waiters.pop(correlation_id, None)

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def _read(self, inbox: Inbox) -> None:
        async for body in inbox:
            try:
                self._deliver(body)
            except Exception as e:  # one bad reply must never stop the reader
                self.malformed += 1
                log.warning("dropped a malformed reply: %s: %.200s", type(e).__name__, e)

    def _deliver(self, body: bytes) -> None:
        reply = wire.decode(body)  # DecodeError: dropped and counted by the reader
        future = self._waiters.pop(reply.correlation_id or "", None)
        if future is None or future.done():
            self.late += 1
            log.info("late reply for %s dropped", reply.correlation_id)
            return
        future.set_result(reply)

    async def close(self) -> None:
        if self._inbox is not None:
            await self._inbox.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        for future in self._waiters.values():
            future.cancel()
        self._waiters.clear()
        self._deadlines.close()


class _Deadlines:
    """Time limits of many waiters on one timer (a timer per request cost more than the
    rest of the gateway's bookkeeping together). Waiters with the same time limit expire
    in the order they were added, so each limit keeps a FIFO of (deadline, id) and the
    timer only looks at the heads. Ids whose waiter is gone (answered and forgotten) are
    dropped from the heads as new ones come in, so a queue stays about as long as the
    number of requests in flight."""

    def __init__(self, waiters: dict[str, asyncio.Future[wire.Envelope]]) -> None:
        self._waiters = waiters
        self._queues: dict[float, deque[tuple[float, str]]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._armed_at = math.inf

    def add(self, loop: asyncio.AbstractEventLoop, correlation_id: str, timeout_s: float) -> None:
        at = loop.time() + timeout_s
        queue = self._queues.get(timeout_s)
        if queue is None:
            queue = self._queues[timeout_s] = deque()
        else:
            waiters = self._waiters
            while queue and queue[0][1] not in waiters:
                queue.popleft()
        queue.append((at, correlation_id))
        if at < self._armed_at:
            self._arm(loop, at)

    def _arm(self, loop: asyncio.AbstractEventLoop, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._armed_at = at
        self._timer = loop.call_at(at, self._expire, loop)

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer, self._armed_at = None, math.inf
        now, waiters, upcoming = loop.time(), self._waiters, math.inf
        for timeout_s, queue in list(self._queues.items()):
            while queue and (queue[0][0] <= now or queue[0][1] not in waiters):
                _, correlation_id = queue.popleft()
                future = waiters.get(correlation_id)
                if future is not None and not future.done():
                    future.set_exception(TimeoutError())
            if queue:
                upcoming = min(upcoming, queue[0][0])
            else:
                del self._queues[timeout_s]
        if upcoming < math.inf:
            self._arm(loop, upcoming)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._armed_at = None, math.inf
        self._queues.clear()
