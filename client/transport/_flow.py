"""Small flow-control pieces shared by the backends."""

from __future__ import annotations

import asyncio
import random


class Window:
    """Counts unsettled deliveries and makes the reader wait while ``limit`` are out."""

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self.out = 0
        self.closed = False
        self._free = asyncio.Event()
        self._free.set()

    @property
    def free(self) -> int:
        return max(0, self.limit - self.out)

    async def wait_free(self) -> int:
        """Wait until at least one slot is free; return how many are (0 once closed)."""
        while self.out >= self.limit and not self.closed:
            self._free.clear()
            await self._free.wait()
        return 0 if self.closed else self.limit - self.out

    def close(self) -> None:
        """Wake the reader for good: the subscription is closing."""
        self.closed = True
        self._free.set()

    def take(self, n: int = 1) -> None:
        self.out += n

    def release(self) -> None:
        self.out -= 1
        if self.out < self.limit:
            self._free.set()


def backoff_s(failures: int, *, base_s: float = 0.1, cap_s: float = 5.0) -> float:
    """Reconnect delay after ``failures`` consecutive failures: exponential, full jitter."""
    ceiling = min(cap_s, base_s * (2 ** min(failures, 16)))
    return random.uniform(ceiling / 2, ceiling)
