"""Async calls: results kept for a bounded time, fetched by call id (callbacks.py POSTs
them to callbacks).

On a Valkey bus the results live on the bus (``<prefix>:gw:call:<id>``, expiring) so any
gateway replica can answer ``GET /calls/{id}``; on NSQ every replica receives every result
and keeps it in memory (calls_nsq.py); on the memory bus they stay in this process.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import msgpack  # type: ignore[import-untyped, unused-ignore]

from .responses import valid_header

if TYPE_CHECKING:  # auth needs settings, which need callbacks, which need this module
    from .auth import Principal

log = logging.getLogger(__name__)

PENDING, DONE = "pending", "done"


@dataclass(frozen=True, slots=True)
class CallResult:
    state: str  # pending or done
    status: int = 0
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    owner: str | None = None  # "<method>:<name>" of who started the call; None: anonymous

    def encode(self) -> bytes:
        packed: bytes = msgpack.packb(self.fields(), use_bin_type=True)
        return packed

    def fields(self) -> dict[str, Any]:
        """The result as a msgpack map (also the body of an NSQ update, calls_nsq.py)."""
        fields: dict[str, Any] = {
            "s": self.state,
            "c": self.status,
            "h": dict(self.headers),
            "b": self.body,
        }
        if self.owner is not None:
            fields["o"] = self.owner
        return fields

    @classmethod
    def decode(cls, raw: bytes) -> CallResult:
        """The result in ``raw``; ValueError says what is wrong with a malformed one."""
        return cls.from_fields(unpack_map(raw))

    @classmethod
    def from_fields(cls, d: Mapping[Any, Any]) -> CallResult:
        """The result in the map ``d``; ValueError says what is wrong. An entry written
        before owners were recorded has no ``o``: it reads as an anonymous call."""
        state, status, headers = d.get("s"), d.get("c"), d.get("h")
        body, owner = d.get("b"), d.get("o")
        if state not in (PENDING, DONE) or not isinstance(body, bytes):
            raise ValueError("s must be pending or done and b bytes")
        if not isinstance(status, int) or isinstance(status, bool):
            raise ValueError("c must be an integer")
        if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and valid_header(k, v)
            for k, v in headers.items()
        ):
            raise ValueError("h must be a map of header names to header values")
        if owner is not None and not (isinstance(owner, str) and owner):
            raise ValueError("o must be a non-empty string when present")
        return cls(state, status, headers, body, owner)


def unpack_map(raw: bytes) -> dict[Any, Any]:
    """The msgpack map in ``raw``; ValueError when it is not one."""
    try:
        d = msgpack.unpackb(raw, raw=False)
    except (ValueError, TypeError) as e:  # msgpack's errors are ValueErrors, keys TypeErrors
        raise ValueError(f"not msgpack: {str(e) or type(e).__name__}") from e
    if not isinstance(d, dict):
        raise ValueError(f"expected a map, got {type(d).__name__}")
    return d


def owner_of(principal: Principal | None) -> str | None:
    """Who may read a call's result: the principal that started it (None: anyone)."""
    return None if principal is None else f"{principal.method}:{principal.name}"


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
    return len(result.body) + headers + len(result.owner or "") + ENTRY_OVERHEAD_BYTES


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
        """The stored result; a malformed one (written by something else) reads as none."""
        raw = await self._call("GET", self._prefix + call_id)
        if raw is None:
            return None
        try:
            return CallResult.decode(raw)
        except ValueError as e:
            log.warning("ignored a malformed async result: %s", e, extra={"call_id": call_id})
            return None
