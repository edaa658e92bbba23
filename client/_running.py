"""The handlers a runtime is running now, with their time limit and keep-alive."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from .transport import Delivery


class Running:
    """The handlers running now, oldest first: their time limit and their keep-alive.

    Every handler gets the same limit, so the earliest deadline is the oldest entry (a dict
    keeps insertion order) and one timer serves them all; ``asyncio.timeout`` per message
    cost a timer handle, heap work and a context manager for each."""

    def __init__(self, limit_s: float) -> None:
        self.limit_s = limit_s
        # what each handler holds: one delivery, or a batch's
        self.handlers: dict[asyncio.Task[Any], tuple[Delivery | Sequence[Delivery], float]] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.TimerHandle | None = None

    def start(self, task: asyncio.Task[Any], delivery: Delivery | Sequence[Delivery]) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        self.handlers[task] = (delivery, now)
        if self._timer is None:
            self._timer = loop.call_at(now + self.limit_s, self._expire)

    def finish(self, task: asyncio.Task[Any]) -> bool:
        """Forget ``task``; True when its time ran out (once)."""
        self.handlers.pop(task, None)
        if task in self._expired:
            self._expired.discard(task)
            return True
        return False

    def _expire(self) -> None:
        """Cancel the handlers past their time; wait for the next oldest."""
        self._timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        for task, (_, started) in list(self.handlers.items()):
            if task in self._expired:
                continue
            if started + self.limit_s > now:
                self._timer = loop.call_at(started + self.limit_s, self._expire)
                return
            self._expired.add(task)
            task.cancel()

    def older_than(self, age_s: float) -> list[Delivery]:
        now = asyncio.get_running_loop().time()
        old: list[Delivery] = []
        for held, started in self.handlers.values():
            if now - started >= age_s:
                old.extend((held,) if isinstance(held, Delivery) else held)
        return old

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
