"""A batch handler on every bus (memory, fakeredis, real Valkey and Redis, the nsqd double):
per-message replies and errors, a whole batch retried and dead-lettered by attempt."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kubefuncs import Client, Context, RemoteError, function
from kubefuncs.runtime import Runtime
from kubefuncs.transport import Transport

from tests.transport.conftest import BusFactory

SIZES: list[int] = []


@function("batchy", batch=16, batch_wait_s=0.05, max_attempts=2, backoff_s=0.05)
async def batchy(payloads: list[Any], ctxs: list[Context]) -> list[Any]:
    SIZES.append(len(payloads))
    if any(p == "break-all" for p in payloads):
        raise RuntimeError(f"broken at attempt {ctxs[0].attempt}")
    return [ValueError(f"no {p}") if p < 0 else {"n": p, "a": c.attempt}
            for p, c in zip(payloads, ctxs, strict=True)]  # fmt: skip


@pytest.fixture
async def caller(bus: BusFactory) -> AsyncIterator[tuple[Client, Transport]]:
    SIZES.clear()
    runtime = Runtime(batchy, transport=await bus())
    task = asyncio.create_task(runtime.run())
    async with asyncio.timeout(10):
        await runtime.serving.wait()
    transport = await bus()
    client = Client(transport=transport)
    try:
        yield client, transport
    finally:
        runtime.stop()
        await task
        await client.close()


async def test_replies_and_errors_per_message(caller: tuple[Client, Transport]) -> None:
    client, _ = caller
    payloads = [3, -1, 5, 7, -2, 11]
    replies = await asyncio.gather(
        *(client.call("batchy", p, timeout_s=10) for p in payloads), return_exceptions=True
    )
    assert replies[0] == {"n": 3, "a": 1} and replies[5] == {"n": 11, "a": 1}
    assert isinstance(replies[1], RemoteError) and replies[1].message == "no -1"
    assert isinstance(replies[4], RemoteError) and replies[4].message == "no -2"
    assert max(SIZES) <= 16 and sum(SIZES) == len(payloads)


async def test_a_raising_batch_is_retried_then_dead_lettered(
    caller: tuple[Client, Transport],
) -> None:
    client, transport = caller
    await client.publish("batchy", "break-all")
    async with asyncio.timeout(10):
        while not (dead := await transport.dead_letters("batchy", "batchy")):
            await asyncio.sleep(0.05)
    assert [(d.reason, d.attempt) for d in dead] == [("RuntimeError: broken at attempt 2", 2)]
