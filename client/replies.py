"""Waiting for correlated replies: one inbox per process, one reader task, a map from
correlation id to waiter (the shape nameko uses for RPC over a bus)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from . import wire
from .errors import DecodeError
from .transport import Inbox, Transport

log = logging.getLogger(__name__)


class ReplyRouter:
    """Owns this process's reply inbox and hands each reply to whoever waits for it."""

    def __init__(self, transport: Transport, *, ttl_s: float = 60.0) -> None:
        self.transport = transport
        self.ttl_s = ttl_s
        self.late = 0  # replies nobody waited for any more (timed out, or unknown)
        self._waiters: dict[str, asyncio.Future[wire.Envelope]] = {}
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

    def expect(self, correlation_id: str) -> asyncio.Future[wire.Envelope]:
        """Register interest in a reply before publishing the request."""
        future: asyncio.Future[wire.Envelope] = asyncio.get_running_loop().create_future()
        self._waiters[correlation_id] = future
        return future

    def forget(self, correlation_id: str) -> None:
        self._waiters.pop(correlation_id, None)

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def _read(self, inbox: Inbox) -> None:
        async for body in inbox:
            try:
                reply = wire.decode(body)
            except DecodeError as e:
                log.warning("dropped a malformed reply: %s", e)
                continue
            future = self._waiters.pop(reply.correlation_id or "", None)
            if future is None or future.done():
                self.late += 1
                log.info("late reply for %s dropped", reply.correlation_id)
                continue
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
