"""Token-bucket rate limits per route and client.

:func:`take` is the whole algorithm (pure). :class:`MemoryLimiter` keeps buckets in this
process; :class:`ValkeyLimiter` runs the same arithmetic as a Lua script on the bus so
every gateway replica shares the buckets (server time, so replica clocks do not matter).
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from kubefuncs.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RateLimit:
    rate: float  # tokens added per second
    burst: int  # bucket size: requests allowed at once after a quiet period
    per: str = "client"  # "client": one bucket per route and client; "route": one per route


def parse_rate_limit(value: Any, where: str) -> RateLimit | None:
    """``rate_limit: 10`` (10/s, burst 10) or ``{rate: 10, burst: 20, per: client|route}``."""
    if value is None or value is False:
        return None
    if _positive(value):
        return RateLimit(float(value), max(1, math.ceil(value)))
    if not isinstance(value, dict):
        raise ConfigError(where, f"must be a number (requests/s) or a mapping, got {value!r}")
    unknown = set(value) - {"rate", "burst", "per"}
    if unknown:
        raise ConfigError(where, f"has unknown keys {sorted(unknown)}")
    rate = value.get("rate")
    if not isinstance(rate, int | float) or not _positive(rate):
        raise ConfigError(f"{where}.rate", f"must be a number of requests/s > 0, got {rate!r}")
    burst = value.get("burst", max(1, math.ceil(rate)))
    if not isinstance(burst, int) or isinstance(burst, bool) or burst < 1:
        raise ConfigError(f"{where}.burst", f"must be an integer >= 1, got {burst!r}")
    per = value.get("per", "client")
    if per not in ("client", "route"):
        raise ConfigError(f"{where}.per", f"must be client or route, got {per!r}")
    return RateLimit(float(rate), burst, per)


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


def take(
    tokens: float, updated_s: float, now_s: float, rate: float, burst: int, cost: int = 1
) -> tuple[bool, float, float]:
    """One request against a bucket: (allowed, tokens left, seconds until one is free).
    ``cost=0`` only looks: is there a token, without taking it."""
    tokens = min(float(burst), tokens + max(0.0, now_s - updated_s) * rate)
    if tokens >= 1.0:
        return True, tokens - cost, 0.0
    return False, tokens, (1.0 - tokens) / rate


class Limiter(Protocol):
    async def wait_s(self, key: str, limit: RateLimit, cost: int = 1) -> float:
        """0 when the request may pass (taking ``cost`` tokens), else seconds until the
        bucket has a token. ``cost=0`` looks without taking."""


class MemoryLimiter:
    """Buckets in this process (memory bus, or when the bus has no shared store)."""

    def __init__(self, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic):
        self._buckets: dict[str, tuple[float, float, float]] = {}  # tokens, updated, full_s
        self._max_keys = max_keys
        self._clock = clock

    async def wait_s(self, key: str, limit: RateLimit, cost: int = 1) -> float:
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if cost == 0:
                return 0.0  # a full bucket: nothing to remember
            bucket = (float(limit.burst), now, 0.0)
        tokens, updated, _ = bucket
        _, tokens, wait = take(tokens, updated, now, limit.rate, limit.burst, cost)
        if cost:
            self._buckets[key] = (tokens, now, now + (limit.burst - tokens) / limit.rate)
            if len(self._buckets) > self._max_keys:
                self._forget_full(now)
        return wait

    def _forget_full(self, now: float) -> None:
        # a bucket that has refilled is the same as no bucket
        for key, (_, _, full_s) in list(self._buckets.items()):
            if now >= full_s:
                del self._buckets[key]


class FailureBudget:
    """Failed authentications (and refused topics) per client address: looked at before
    credentials are checked, charged after a refusal; ``per_min=0`` turns it off."""

    def __init__(self, limiter: Limiter, per_min: float, burst: int) -> None:
        self._limiter = limiter
        self._limit = RateLimit(per_min / 60.0, burst) if per_min > 0 else None

    async def wait_s(self, client: str) -> float:
        """0 while ``client`` may still try, else seconds until it may again."""
        if self._limit is None:
            return 0.0
        return await self._limiter.wait_s(_failures(client), self._limit, cost=0)

    async def charge(self, client: str) -> None:
        if self._limit is not None:
            await self._limiter.wait_s(_failures(client), self._limit)


def _failures(client: str) -> str:
    return f"auth-failures|{client}"


TOKEN_BUCKET = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 't', 'u')
local tokens = tonumber(state[1])
local updated = tonumber(state[2])
if tokens == nil or updated == nil then
  if cost == 0 then
    return 0
  end
  tokens = burst
  updated = now
end
tokens = math.min(burst, tokens + math.max(0, now - updated) * rate / 1000)
local wait_ms = 0
if tokens >= 1 then
  tokens = tokens - cost
else
  wait_ms = math.ceil((1 - tokens) * 1000 / rate)
end
if cost == 0 then
  return wait_ms
end
redis.call('HSET', KEYS[1], 't', tostring(tokens), 'u', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
return wait_ms
"""
_SHA = hashlib.sha1(TOKEN_BUCKET.encode()).hexdigest()

Command = Callable[..., Awaitable[Any]]
WARN_EVERY_S = 10.0  # while the bus is away, "rate limit not checked" is logged this often


class ValkeyLimiter:
    """Buckets shared by every gateway replica: one hash per bucket, updated by Lua."""

    def __init__(
        self, call: Command, prefix: str, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._call = call
        self._prefix = f"{prefix}:gw:rl:"
        self._clock = clock
        self._warned_s = -math.inf

    async def wait_s(self, key: str, limit: RateLimit, cost: int = 1) -> float:
        args = (1, self._prefix + key, repr(limit.rate), limit.burst, cost)
        try:
            try:
                wait_ms = await self._call("EVALSHA", _SHA, *args)
            except Exception as e:
                if type(e).__name__ != "NoScriptError" and "NOSCRIPT" not in str(e):
                    raise  # (redis-py drops the NOSCRIPT prefix from the message)
                wait_ms = await self._call("EVAL", TOKEN_BUCKET, *args)
        except Exception as e:  # the bus is away: let traffic through rather than fail it
            self._bus_away(e)
            return 0.0
        return int(wait_ms) / 1000.0

    def _bus_away(self, error: Exception) -> None:
        # every authenticated request looks at a bucket: one warning per interval, not each
        now = self._clock()
        quiet = now - self._warned_s < WARN_EVERY_S
        if not quiet:
            self._warned_s = now
        level = logging.DEBUG if quiet else logging.WARNING
        log.log(level, "rate limit not checked (%s); request allowed", error)
