"""Async calls: results kept for a bounded time, fetched by call id, POSTed to callbacks.

On a Valkey bus the results live on the bus (``<prefix>:gw:call:<id>``, expiring) so any
gateway replica can answer ``GET /calls/{id}``; on NSQ every replica receives every result
and keeps it in memory (calls_nsq.py); on the memory bus they stay in this process.
"""

from __future__ import annotations

import asyncio
import logging
import time
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
    async def put(self, call_id: str, result: CallResult, ttl_s: float) -> None: ...

    async def get(self, call_id: str) -> CallResult | None: ...


class MemoryCallStore:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._items: dict[str, tuple[float, CallResult]] = {}
        self._clock = clock

    async def put(self, call_id: str, result: CallResult, ttl_s: float) -> None:
        now = self._clock()
        self._items[call_id] = (now + ttl_s, result)
        if len(self._items) % 1024 == 0:
            self._items = {k: v for k, v in self._items.items() if v[0] > now}

    async def get(self, call_id: str) -> CallResult | None:
        item = self._items.get(call_id)
        if item is None or item[0] <= self._clock():
            return None
        return item[1]


class ValkeyCallStore:
    def __init__(self, call: Callable[..., Awaitable[Any]], prefix: str) -> None:
        self._call = call
        self._prefix = f"{prefix}:gw:call:"

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
