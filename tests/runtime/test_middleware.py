"""Per-message middleware: ordered wrappers that act before, after and on error, whose
failures count as the handler's (retries, dead letters, error replies)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from kubefuncs import Context, Reject, RemoteError, function
from kubefuncs.middleware import Next
from kubefuncs.testing import run


def recorder(name: str, seen: list[str]) -> Any:
    async def mw(call_next: Next, payload: Any, ctx: Context) -> Any:
        seen.append(f"{name} before {payload}")
        try:
            result = await call_next(payload, ctx)
        except Exception as e:
            seen.append(f"{name} error {type(e).__name__}")
            raise
        seen.append(f"{name} after {result}")
        return result

    mw.__name__ = name
    return mw


async def test_middleware_wraps_the_handler_in_order_first_outermost() -> None:
    seen: list[str] = []

    @function("mw-order", middleware=[recorder("outer", seen), recorder("inner", seen)])
    def handler(payload: str) -> str:  # sync, and without ctx: the chain gives it neither
        seen.append(f"handler {payload}")
        return payload.upper()

    async with run(handler) as fn:
        assert await fn.call("hi") == "HI"
    assert seen == [
        "outer before hi",
        "inner before hi",
        "handler hi",
        "inner after HI",
        "outer after HI",
    ]


async def test_middleware_may_change_the_payload_and_the_result() -> None:
    async def parse(call_next: Next, payload: Any, ctx: Context) -> Any:
        return {"wrapped": await call_next(int(payload), ctx), "attempt": ctx.attempt}

    @function("mw-change", middleware=[parse])
    async def double(n: int, ctx: Context) -> int:
        return n * 2

    async with run(double) as fn:
        assert await fn.call("21") == {"wrapped": 42, "attempt": 1}


async def test_what_a_middleware_raises_is_the_handlers_failure() -> None:
    seen: list[str] = []

    async def refuse(call_next: Next, payload: Any, ctx: Context) -> Any:
        if payload == "forbidden":
            raise Reject("refused by policy")
        return await call_next(payload, ctx)

    @function("mw-refuse", middleware=[recorder("log", seen), refuse], max_attempts=1)
    async def handler(payload: Any) -> Any:
        return payload

    async with run(handler) as fn:
        with pytest.raises(RemoteError, match="refused by policy"):
            await fn.call("forbidden")
        await fn.publish("forbidden")
        await fn.settle()
        dead = await fn.dead_letters()
    assert seen[:2] == ["log before forbidden", "log error Reject"]
    assert len(dead) == 2  # the call and the event: Reject is final for both
    assert all("refused by policy" in d.reason for d in dead)


async def test_the_time_limit_covers_the_whole_chain() -> None:
    async def slow(call_next: Next, payload: Any, ctx: Context) -> Any:
        await asyncio.sleep(5)
        return await call_next(payload, ctx)

    @function("mw-slow", middleware=[slow], timeout_s=0.2)
    async def handler(payload: Any) -> Any:
        return payload

    async with run(handler) as fn:
        with pytest.raises(RemoteError, match="TimeoutError"):
            await fn.call("x", timeout_s=3)


@pytest.mark.parametrize(
    ("middleware", "message"),
    [
        (lambda call_next, payload, ctx: None, "must be an async function"),
        (print, "must be an async function"),
    ],
)
def test_a_middleware_that_cannot_be_one_is_refused_at_declaration(
    middleware: Any, message: str
) -> None:
    with pytest.raises(TypeError, match=message):
        function("mw-bad", middleware=[middleware])


def test_a_middleware_with_the_wrong_arguments_is_refused() -> None:
    async def two(call_next: Next, payload: Any) -> Any:
        return await call_next(payload, None)  # type: ignore[arg-type]

    with pytest.raises(TypeError, match=r"must take \(call_next, payload, ctx\)"):
        function("mw-bad", middleware=[two])  # type: ignore[list-item]
