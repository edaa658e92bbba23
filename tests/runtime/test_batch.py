"""Batch handlers on the memory bus: a list of payloads and a context per message in, a
result (or an exception instance) per message out; replies, retries, dead letters and
deadlines keep their per-message meaning."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from kubefuncs import Context, RemoteError, function, wire
from kubefuncs._batch import Batcher
from kubefuncs.errors import ConfigError
from kubefuncs.middleware import Next
from kubefuncs.runtime import Runtime
from kubefuncs.testing import run
from kubefuncs.transport.memory import MemoryTransport


async def calls(f: Any, payloads: list[Any]) -> list[Any]:
    return await asyncio.gather(*(f.call(p) for p in payloads), return_exceptions=True)


async def test_a_batch_handler_gets_lists_and_each_caller_gets_its_own_reply() -> None:
    sizes: list[int] = []

    @function("batch-double", batch=8, batch_wait_s=0.05)
    async def double(payloads: list[int], ctxs: list[Context]) -> list[Any]:
        sizes.append(len(payloads))
        assert [c.attempt for c in ctxs] == [1] * len(payloads)
        return [{"n": n * 2, "id": c.id} for n, c in zip(payloads, ctxs, strict=True)]

    async with run(double) as f:
        replies = await calls(f, list(range(20)))
    assert [r["n"] for r in replies] == [n * 2 for n in range(20)]
    assert len({r["id"] for r in replies}) == 20
    assert max(sizes) <= 8 and sum(sizes) == 20
    assert len(sizes) < 20  # they did come together


async def test_an_exception_instance_fails_that_message_alone() -> None:
    @function("batch-some", batch=10, batch_wait_s=0.05)
    def some(payloads: list[int]) -> list[Any]:  # sync, without ctxs
        return [ValueError(f"odd {n}") if n % 2 else n for n in payloads]

    async with run(some) as f:
        replies = await calls(f, [0, 1, 2, 3])
    assert replies[0] == 0 and replies[2] == 2
    for odd, reply in ((1, replies[1]), (3, replies[3])):
        assert isinstance(reply, RemoteError)
        assert (reply.type, reply.message) == ("ValueError", f"odd {odd}")


async def test_a_raising_batch_fails_each_message_by_its_own_attempts() -> None:
    attempts: list[int] = []

    @function("batch-raise", batch=10, batch_wait_s=0.05, max_attempts=2, backoff_s=0)
    async def fails(payloads: list[str], ctxs: list[Context]) -> list[Any]:
        attempts.extend(c.attempt for c in ctxs)
        raise RuntimeError("the batch broke")

    async with run(fails) as f:
        for p in ("a", "b", "c"):
            await f.publish(p)
        await f.settle()
        dead = await f.dead_letters()
    assert sorted(attempts) == [1, 1, 1, 2, 2, 2]
    assert [d.reason for d in dead] == ["RuntimeError: the batch broke"] * 3
    assert [d.attempt for d in dead] == [2, 2, 2]


async def test_a_result_of_the_wrong_length_fails_the_batch_with_a_reason() -> None:
    @function("batch-short", batch=10, batch_wait_s=0.05, max_attempts=1)
    async def short(payloads: list[str]) -> list[Any]:
        return payloads[:-1]

    async with run(short) as f:
        await f.publish("a")
        await f.publish("b")
        await f.settle()
        dead = await f.dead_letters()
    assert len(dead) == 2
    assert dead[0].reason.startswith("TypeError: batch handler short must return a list of 2")


async def test_expired_and_malformed_messages_are_settled_before_the_batch_forms() -> None:
    seen: list[Any] = []

    @function("batch-admit", batch=10, batch_wait_s=0.05)
    async def admit(payloads: list[str]) -> list[None]:
        seen.extend(payloads)
        return [None] * len(payloads)

    async with run(admit) as f:
        late = wire.make("batch-admit", "late", deadline_ms=wire.now_ms() - 1)
        await f.publish_raw(wire.encode(late))
        await f.publish_raw(b"\xc1 not msgpack")
        await f.publish("fresh")
        await f.settle()
        dead = await f.dead_letters()
    assert seen == ["fresh"]
    assert [d.reason[:10] for d in dead] == ["malformed:"]


async def test_the_time_limit_covers_the_batch_call() -> None:
    @function("batch-slow", batch=4, batch_wait_s=0.05, timeout_s=0.1)
    async def slow(payloads: list[str]) -> list[None]:
        await asyncio.sleep(10)
        return [None] * len(payloads)

    async with run(slow) as f:
        replies = await calls(f, ["a", "b"])
    assert [type(r).__name__ + " " + r.type for r in replies] == ["RemoteError TimeoutError"] * 2


async def test_middleware_wraps_each_batch_call() -> None:
    seen: list[Any] = []

    async def count(call_next: Next, payloads: Any, ctxs: Any) -> Any:
        seen.append(len(ctxs))
        return [f"mw {r}" for r in await call_next(payloads, ctxs)]

    @function("batch-mw", batch=5, batch_wait_s=0.05, middleware=[count])
    async def echo(payloads: list[str]) -> list[str]:
        return payloads

    async with run(echo) as f:
        replies = await calls(f, ["a", "b", "c"])
    assert replies == ["mw a", "mw b", "mw c"]
    assert sum(seen) == 3


def test_kf_batch_on_a_per_message_handler_is_a_config_error() -> None:
    @function("not-batch")
    async def one(payload: Any) -> Any:
        return payload

    fn = one.with_settings(one.settings.__class__(function_name="one", topic="t", batch=10))
    with pytest.raises(ConfigError, match="KF_BATCH is set, but one is not a batch handler"):
        Runtime(fn, transport=MemoryTransport("memory://batch-config"))


def test_batch_below_one_is_refused_at_declaration() -> None:
    with pytest.raises(ValueError, match="batch must be at least 1"):
        function("t", batch=0)


async def test_a_batch_is_dispatched_when_full_or_when_its_wait_is_over() -> None:
    dispatched: list[list[Any]] = []
    batcher = Batcher(3, 0.05, dispatched.append)
    for n in range(4):
        batcher.add(n)  # type: ignore[arg-type]
    assert dispatched == [[0, 1, 2]]  # full: at once
    async with asyncio.timeout(2):
        while len(dispatched) < 2:
            await asyncio.sleep(0.01)
    assert dispatched == [[0, 1, 2], [3]]
