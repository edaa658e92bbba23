"""What a process remembers for a while: the publishes it de-duplicates and the side
effects ``ctx.once`` has done, on buses with no shared store (NSQ, memory)."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

MAX_ITEMS = 100_000
MAX_BYTES = 16 * 1024 * 1024


class Recent:
    """Values by key, forgotten after their TTL; at most ``max_items`` entries and about
    ``max_bytes``, the oldest written first out (forgetting early means a duplicate goes
    through: the bound keeps a flood of keys from exhausting memory)."""

    def __init__(
        self,
        *,
        max_items: int = MAX_ITEMS,
        max_bytes: int = MAX_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_items, self.max_bytes, self.bytes = max_items, max_bytes, 0
        self._items: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._clock = clock

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str) -> bytes | None:
        item = self._items.get(key)
        if item is None:
            return None
        if item[0] <= self._clock():
            self.pop(key)
            return None
        return item[1]

    def put(self, key: str, value: bytes, ttl_s: float) -> None:
        self.pop(key)
        self._items[key] = (self._clock() + ttl_s, value)
        self.bytes += len(key) + len(value)
        while len(self._items) > 1 and (
            len(self._items) > self.max_items or self.bytes > self.max_bytes
        ):
            self.pop(next(iter(self._items)))

    def pop(self, key: str) -> None:
        item = self._items.pop(key, None)
        if item is not None:
            self.bytes -= len(key) + len(item[1])
