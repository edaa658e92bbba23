"""The reply router's time limits: one timer for every waiter."""

from __future__ import annotations

import asyncio

import pytest
from kubefuncs import wire
from kubefuncs.replies import ReplyRouter
from kubefuncs.transport import from_url


@pytest.fixture
async def router() -> ReplyRouter:
    transport = from_url(f"memory://r{wire.new_id()[:8]}")
    await transport.connect()
    r = ReplyRouter(transport)
    await r.address()
    yield r
    await r.close()
    await transport.close()


async def test_waiters_time_out_at_their_own_limits(router: ReplyRouter) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    slow = router.expect("slow", 0.3)
    fast = router.expect("fast", 0.1)
    never = router.expect("never")  # no limit: waits until answered or forgotten
    with pytest.raises(TimeoutError):
        await fast
    assert 0.09 <= loop.time() - started < 0.25 and not slow.done()
    with pytest.raises(TimeoutError):
        await slow
    assert 0.29 <= loop.time() - started < 0.45
    assert not never.done()


async def test_an_answered_waiter_does_not_time_out(router: ReplyRouter) -> None:
    future = router.expect("a", 0.1)
    reply = wire.make("", "hi", kind=wire.REPLY, correlation_id="a")
    await router.transport.send_reply(await router.address(), wire.encode(reply))
    assert (await future).payload == "hi"
    router.forget("a")
    await asyncio.sleep(0.15)
    assert future.exception() is None


async def test_a_forgotten_waiter_is_not_failed_later(router: ReplyRouter) -> None:
    future = router.expect("gone", 0.05)
    router.forget("gone")
    await asyncio.sleep(0.1)
    assert not future.done()


async def test_answered_waiters_do_not_pile_up_behind_the_timer(router: ReplyRouter) -> None:
    # Given many answered-and-forgotten waiters with a long limit
    for i in range(10_000):
        router.expect(f"w{i}", 30)
        router.forget(f"w{i}")
    # Then the deadline queue holds about what is still waited for, not every request
    queued = sum(len(q) for q in router._deadlines._queues.values())
    assert queued <= 2


async def test_a_waiter_added_with_an_earlier_deadline_rearms_the_timer(
    router: ReplyRouter,
) -> None:
    loop = asyncio.get_running_loop()
    router.expect("long", 5)
    started = loop.time()
    short = router.expect("short", 0.05)
    with pytest.raises(TimeoutError):
        await short
    assert loop.time() - started < 0.5
