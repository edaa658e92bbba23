"""Async calls: results kept for a bounded time, fetched by call id, POSTed to callbacks.

On a Valkey bus the results live on the bus (``<prefix>:gw:call:<id>``, expiring) so any
gateway replica can answer ``GET /calls/{id}``; on NSQ every replica receives every result
and keeps it in memory (calls_nsq.py); on the memory bus they stay in this process.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp
import msgpack  # type: ignore[import-untyped, unused-ignore]

log = logging.getLogger(__name__)

PENDING, DONE = "pending", "done"
CALLBACK_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class CallResult:
    state: str  # pending or done
    status: int = 0
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    def encode(self) -> bytes:
        packed: bytes = msgpack.packb(
            {"s": self.state, "c": self.status, "h": dict(self.headers), "b": self.body},
            use_bin_type=True,
        )
        return packed

    @classmethod
    def decode(cls, raw: bytes) -> CallResult:
        d = msgpack.unpackb(raw, raw=False)
        return cls(d["s"], d["c"], d["h"], d["b"])


class CallStore(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def put(self, call_id: str, result: CallResult, ttl_s: float) -> None: ...

    async def get(self, call_id: str) -> CallResult | None: ...


MAX_ITEMS = 100_000
MAX_BYTES = 64 * 1024 * 1024
ENTRY_OVERHEAD_BYTES = 200  # a rough cost of one entry beyond its body and headers


def merge(old: CallResult | None, new: CallResult) -> CallResult:
    """What to keep when ``new`` arrives. NSQ does not promise order, so a PENDING that
    arrives after the DONE of the same call must not hide the result."""
    if old is not None and old.state == DONE and new.state == PENDING:
        return old
    return new


def entry_bytes(result: CallResult) -> int:
    headers = sum(len(k) + len(v) for k, v in result.headers.items())
    return len(result.body) + headers + ENTRY_OVERHEAD_BYTES


class ResultCache:
    """Call results by id, forgotten after their TTL, at most ``max_items`` entries and
    about ``max_bytes``: the oldest go first when either bound is reached.

    The map is kept in order of the last update, which with one TTL for every call is also
    the order of expiry, so expired entries are dropped from the front at no search cost
    (an OrderedDict: a plain dict makes reaching its front slower with every pop there).
    """

    def __init__(
        self,
        *,
        max_items: int = MAX_ITEMS,
        max_bytes: int = MAX_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.bytes = 0
        self._items: OrderedDict[str, tuple[float, CallResult]] = OrderedDict()
        self._clock = clock

    def __len__(self) -> int:
        return len(self._items)

    def put(self, call_id: str, result: CallResult, ttl_s: float) -> None:
        now = self._clock()
        old = self._pop(call_id)
        kept = merge(old[1] if old and old[0] > now else None, result)
        self._items[call_id] = (now + ttl_s, kept)
        self.bytes += entry_bytes(kept)
        self._evict(now)

    def get(self, call_id: str) -> CallResult | None:
        item = self._items.get(call_id)
        if item is None:
            return None
        if item[0] <= self._clock():
            self._pop(call_id)
            return None
        return item[1]

    def _pop(self, call_id: str) -> tuple[float, CallResult] | None:
        item = self._items.pop(call_id, None)
        if item is not None:
            self.bytes -= entry_bytes(item[1])
        return item

    def _evict(self, now: float) -> None:
        # never the entry just put: a result bigger than the budget is still served here
        while len(self._items) > 1:
            call_id = next(iter(self._items))
            expires = self._items[call_id][0]
            full = len(self._items) > self.max_items or self.bytes > self.max_bytes
            if expires > now and not full:
                return
            self._pop(call_id)


class MemoryCallStore:
    """Results in this process only (the memory bus of ``functl dev``, tests)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.cache = ResultCache(clock=clock)

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def put(self, call_id: str, result: CallResult, ttl_s: float) -> None:
        self.cache.put(call_id, result, ttl_s)

    async def get(self, call_id: str) -> CallResult | None:
        return self.cache.get(call_id)


class ValkeyCallStore:
    def __init__(self, call: Callable[..., Awaitable[Any]], prefix: str) -> None:
        self._call = call
        self._prefix = f"{prefix}:gw:call:"

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def put(self, call_id: str, result: CallResult, ttl_s: float) -> None:
        await self._call("SET", self._prefix + call_id, result.encode(), "PX", int(ttl_s * 1000))

    async def get(self, call_id: str) -> CallResult | None:
        raw = await self._call("GET", self._prefix + call_id)
        return None if raw is None else CallResult.decode(raw)


def callback_problem(url: str) -> str | None:
    """Why ``url`` cannot be a callback URL, or None when it can."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"callback URL must be an absolute http(s) URL, got {url!r}"
    return None


async def post_callback(
    session: aiohttp.ClientSession, url: str, call_id: str, result: CallResult, timeout_s: float
) -> bool:
    """POST a finished call's response to ``url``: its body, its content type, and
    X-Call-Id / X-Call-Status headers. A few attempts on connection errors and 5xx."""
    headers = {
        "X-Call-Id": call_id,
        "X-Call-Status": str(result.status),
        "Content-Type": _content_type(result.headers),
    }
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    for attempt in range(1, CALLBACK_ATTEMPTS + 1):
        try:
            async with session.post(url, data=result.body, headers=headers, timeout=timeout) as r:
                if r.status < 500:
                    return r.status < 400
                problem = f"HTTP {r.status}"
        except (aiohttp.ClientError, TimeoutError) as e:
            problem = str(e) or type(e).__name__
        log.info("callback attempt %d failed: %s", attempt, problem, extra={"call_id": call_id})
        if attempt < CALLBACK_ATTEMPTS:
            await asyncio.sleep(0.2 * 2**attempt)
    return False


def _content_type(headers: Mapping[str, str]) -> str:
    for name, value in headers.items():
        if name.lower() == "content-type":
            return value
    return "application/octet-stream"
