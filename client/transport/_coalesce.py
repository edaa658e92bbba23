"""Automatic pipelining: concurrent commands share one round trip, a lone command goes
straight out. Sequential callers pay nothing; many concurrent callers (acks of parallel
handlers, gateway publishes) are batched into one pipeline per round trip."""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis


class Coalescer:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._queue: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = []
        self._busy = False
        self._flusher: asyncio.Task[None] | None = None

    async def execute(self, *args: Any) -> Any:
        if not self._busy:
            self._busy = True
            try:
                return await self._redis.execute_command(*args)
            finally:
                self._busy = False
                self._kick()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((args, future))
        return await future

    def _kick(self) -> None:
        if self._queue and not self._busy:
            self._busy = True
            self._flusher = asyncio.ensure_future(self._flush())

    async def _flush(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                await self._run(batch)
        finally:
            self._busy = False
            self._kick()

    async def _run(self, batch: list[tuple[tuple[Any, ...], asyncio.Future[Any]]]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for args, _ in batch:
            pipe.execute_command(*args)
        try:
            results = await pipe.execute(raise_on_error=False)
        except Exception as e:  # connection trouble: every caller of the batch hears it
            for _, future in batch:
                if not future.done():
                    future.set_exception(e)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)
