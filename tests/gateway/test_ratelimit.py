"""Token buckets: the arithmetic, the in-process buckets, the shared Valkey buckets."""

from __future__ import annotations

import pytest
from kubefuncs.gateway.ratelimit import (
    MemoryLimiter,
    RateLimit,
    ValkeyLimiter,
    parse_rate_limit,
    take,
)
from kubefuncs.transport import from_url


def test_a_full_bucket_allows_a_burst_then_refuses() -> None:
    # Given a full bucket of 3 refilling at 1/s
    tokens, now, results = 3.0, 100.0, []
    # When 4 requests come at once
    for _ in range(4):
        allowed, tokens, wait = take(tokens, now, now, rate=1.0, burst=3)
        results.append((allowed, round(wait, 3)))
    # Then 3 pass and the 4th must wait a whole token
    assert results == [(True, 0.0), (True, 0.0), (True, 0.0), (False, 1.0)]


def test_the_bucket_refills_with_time_up_to_its_size() -> None:
    assert take(0.0, 10.0, 10.5, rate=2.0, burst=5) == (True, 0.0, 0.0)
    assert take(0.0, 0.0, 1000.0, rate=2.0, burst=5) == (True, 4.0, 0.0)
    allowed, _, wait = take(0.5, 0.0, 0.0, rate=2.0, burst=5)
    assert not allowed and wait == pytest.approx(0.25)


def test_a_clock_going_backwards_adds_nothing() -> None:
    assert take(0.0, 10.0, 9.0, rate=1.0, burst=1)[0] is False


@pytest.mark.parametrize(
    ("value", "limit"),
    [
        (None, None),
        (10, RateLimit(10.0, 10)),
        (0.5, RateLimit(0.5, 1)),
        ({"rate": 2, "burst": 7, "per": "route"}, RateLimit(2.0, 7, "route")),
    ],
)
def test_rate_limit_values(value: object, limit: RateLimit | None) -> None:
    assert parse_rate_limit(value, "rate_limit") == limit


async def test_memory_buckets_are_per_key() -> None:
    # Given a limiter with a fake clock
    now = [0.0]
    limiter = MemoryLimiter(clock=lambda: now[0])
    limit = RateLimit(1.0, 1)
    # When two keys ask at once, then one asks again
    assert await limiter.wait_s("a", limit) == 0
    assert await limiter.wait_s("b", limit) == 0
    assert await limiter.wait_s("a", limit) == pytest.approx(1.0)
    # Then after a second it may pass again
    now[0] = 1.0
    assert await limiter.wait_s("a", limit) == 0


async def test_memory_buckets_forget_idle_clients() -> None:
    now = [0.0]
    limiter = MemoryLimiter(max_keys=2, clock=lambda: now[0])
    for key in ("a", "b"):
        await limiter.wait_s(key, RateLimit(1.0, 1))
    now[0] = 10.0
    await limiter.wait_s("c", RateLimit(1.0, 1))
    assert set(limiter._buckets) == {"c"}


@pytest.mark.real
async def test_valkey_buckets_are_shared_by_every_replica(shared_url: str) -> None:
    # Given two gateway replicas, each with its own connection to the bus
    a, b = from_url(shared_url), from_url(shared_url)
    await a.connect()
    await b.connect()
    try:
        limit = RateLimit(1.0, 3)
        first = ValkeyLimiter(a.call, a.keys.prefix)  # type: ignore[attr-defined]
        second = ValkeyLimiter(b.call, b.keys.prefix)  # type: ignore[attr-defined]
        # When both take from the same bucket
        waits = [
            await first.wait_s("r|c", limit),
            await second.wait_s("r|c", limit),
            await first.wait_s("r|c", limit),
            await second.wait_s("r|c", limit),
        ]
        # Then the burst of 3 is shared: the fourth request waits about a second
        assert waits[:3] == [0, 0, 0]
        assert 0.9 <= waits[3] <= 1.0
        assert await second.wait_s("r|other", limit) == 0
    finally:
        await a.close()
        await b.close()


def test_a_look_takes_nothing() -> None:
    assert take(2.0, 0.0, 0.0, rate=1.0, burst=2, cost=0) == (True, 2.0, 0.0)
    allowed, tokens, wait = take(0.5, 0.0, 0.0, rate=1.0, burst=2, cost=0)
    assert (allowed, tokens, wait) == (False, 0.5, 0.5)


async def test_memory_looks_neither_take_nor_remember() -> None:
    now = [0.0]
    limiter = MemoryLimiter(clock=lambda: now[0])
    limit = RateLimit(1.0, 2)
    # Given looks at a bucket nobody took from / Then they pass and store nothing
    assert [await limiter.wait_s("k", limit, cost=0) for _ in range(5)] == [0.0] * 5
    assert limiter._buckets == {}
    # When the bucket is emptied / Then a look sees the wait, and does not deepen it
    assert [await limiter.wait_s("k", limit) for _ in range(2)] == [0.0, 0.0]
    assert await limiter.wait_s("k", limit, cost=0) == pytest.approx(1.0)
    assert await limiter.wait_s("k", limit, cost=0) == pytest.approx(1.0)


@pytest.mark.real
async def test_valkey_looks_neither_take_nor_write(valkey_url: str) -> None:
    bus = from_url(valkey_url)
    await bus.connect()
    try:
        limiter = ValkeyLimiter(bus.call, bus.keys.prefix)  # type: ignore[attr-defined]
        limit = RateLimit(1.0, 2)
        key = f"{bus.keys.prefix}:gw:rl:peek"  # type: ignore[attr-defined]
        assert await limiter.wait_s("peek", limit, cost=0) == 0
        assert await bus.call("EXISTS", key) == 0  # type: ignore[attr-defined]
        assert [await limiter.wait_s("peek", limit) for _ in range(2)] == [0, 0]
        assert 0.9 <= await limiter.wait_s("peek", limit, cost=0) <= 1.0
        assert 0.9 <= await limiter.wait_s("peek", limit, cost=0) <= 1.0
    finally:
        await bus.close()


async def test_an_unreachable_bus_lets_requests_through_with_one_warning_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a limiter whose bus refuses every command
    async def down(*_: object) -> object:
        raise ConnectionError("bus away")

    now = [0.0]
    limiter = ValkeyLimiter(down, "kf", clock=lambda: now[0])
    # When 100 requests (and looks) are checked, then more after the interval
    waits = [await limiter.wait_s("k", RateLimit(1.0, 1), cost=i % 2) for i in range(100)]
    now[0] = 10.0
    waits.append(await limiter.wait_s("k", RateLimit(1.0, 1)))
    # Then all pass, and a warning was logged once per interval
    assert waits == [0.0] * 101
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 2 and "rate limit not checked" in warnings[0].getMessage()
