"""Automatic pipelining: concurrent commands share one round trip, a lone command goes
straight out. Sequential callers pay nothing; many concurrent callers (acks of parallel
handlers, gateway publishes) are batched into one pipeline per round trip."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis


class _Entry:
    """One queued command: its arguments, the callers waiting for its result (several
    when merged, see Coalescer.merged_soon) and, for a merged one, the cheaper head to use
    when it ends up with one item."""

    __slots__ = ("args", "futures", "single")

    def __init__(self, args: list[Any], single: tuple[Any, ...] | None = None) -> None:
        self.args = args
        self.futures: list[asyncio.Future[Any]] = []
        self.single = single

    def command(self) -> list[Any]:
        if self.single is not None and len(self.futures) == 1:
            return [*self.single, self.args[-1]]
        return self.args


MAX_MERGED = 512  # items per merged command: bounds one command's size on both sides


class Coalescer:
    def __init__(
        self,
        redis: Redis,
        *,
        failed: Callable[[Exception], Exception] = lambda e: e,
        succeeded: Callable[[], None] = lambda: None,
    ) -> None:
        self._redis = redis
        # what a queued caller gets when a round trip fails (the transport maps connection
        # trouble to TransportError there), and a hook for a round trip that worked
        self._failed = failed
        self._succeeded = succeeded
        self._queue: list[_Entry] = []
        self._merging: dict[tuple[Any, ...], _Entry] = {}
        self._busy = False
        self._flusher: asyncio.Task[None] | None = None

    async def execute(self, *args: Any) -> Any:
        if not self._busy:  # inline rather than a helper: sequential publishes come here
            self._busy = True
            try:
                return await self._redis.execute_command(*args)  # type: ignore[no-untyped-call]
            finally:
                self._busy = False
                self._kick()
        entry = _Entry(list(args))
        self._queue.append(entry)
        return await self._wait(entry)

    async def merged(
        self, head: tuple[Any, ...], *items: Any, single: tuple[Any, ...] | None = None
    ) -> Any:
        """Run ``*head, *items``; see :meth:`merged_soon`."""
        return await self.merged_soon(head, *items, single=single)

    async def merged_or_now(self, head: tuple[Any, ...], item: Any, single: tuple[Any, ...]) -> Any:
        """Like :meth:`merged`, but a caller that finds the connection idle goes straight
        out in its single form, as :meth:`execute` does: sequential publishes pay no wait
        for the end of the loop turn; concurrent ones merge behind the first."""
        if not self._busy and not self._queue:
            return await self.execute(*single, item)
        return await self.merged_soon(head, item, single=single)

    def merged_soon(
        self, head: tuple[Any, ...], *items: Any, single: tuple[Any, ...] | None = None
    ) -> asyncio.Future[Any]:
        """Queue ``*head, *items`` and return the future of its result. The items of
        callers with the same head that wait for the same round trip go as one command
        (``XACK stream group id1 id2 ...``, up to MAX_MERGED callers); every caller gets the
        merged command's result. ``single``, when given, is the cheaper head for a lone
        caller's one item (``XADD stream * m`` rather than the batch script).

        Unlike :meth:`execute`, a lone item waits for the end of the current loop turn:
        handlers of one batch finish in the same turn, and their acks then go as one
        command rather than one alone and the rest a round trip later (which also made the
        reader fetch one message, then the rest)."""
        loop = asyncio.get_running_loop()
        entry = self._merging.get(head)
        if entry is None or len(entry.futures) >= MAX_MERGED:
            entry = self._merging[head] = _Entry([*head], single)
            self._queue.append(entry)
            if not self._busy:
                loop.call_soon(self._kick)
        entry.args.extend(items)
        future: asyncio.Future[Any] = loop.create_future()
        entry.futures.append(future)
        return future

    @staticmethod
    async def _wait(entry: _Entry) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        entry.futures.append(future)
        return await future

    def _kick(self) -> None:
        if self._queue and not self._busy:
            self._busy = True
            self._flusher = asyncio.ensure_future(self._flush())

    async def _flush(self) -> None:
        try:
            while self._queue:
                batch, self._queue, self._merging = self._queue, [], {}
                await self._run(batch)
        finally:
            self._busy = False
            self._kick()

    async def _run(self, batch: list[_Entry]) -> None:
        try:
            results = await self._send(batch)
        except Exception as e:  # connection trouble (or the error of a lone command)
            failure = self._failed(e)
            for entry in batch:
                _settle(entry.futures, failure)
            return
        self._succeeded()
        for entry, result in zip(batch, results, strict=True):
            _settle(entry.futures, result)

    async def _send(self, batch: list[_Entry]) -> list[Any]:
        if len(batch) == 1:  # one (maybe merged) command: no pipeline needed
            return [await self._redis.execute_command(*batch[0].command())]  # type: ignore[no-untyped-call]
        pipe = self._redis.pipeline(transaction=False)
        for entry in batch:
            pipe.execute_command(*entry.command())
        return await pipe.execute(raise_on_error=False)


def _settle(futures: list[asyncio.Future[Any]], result: Any) -> None:
    for future in futures:
        if future.done():
            continue
        if isinstance(result, Exception):
            future.set_exception(result)
        else:
            future.set_result(result)
