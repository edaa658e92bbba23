"""Functions the process tests run with ``python -m kubefuncs tests.runtime.fns:NAME``."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

from kubefuncs import Context, Service, function


def _note(event: str, payload: dict[str, Any], attempt: int) -> None:
    with open(os.environ["KF_TEST_RECORD"], "a") as f:
        f.write(f"{event} {os.getpid()} {payload['id']} {attempt}\n")


@function("rt-record")
async def record(payload: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """Notes start and end of every attempt in $KF_TEST_RECORD; sleeps ``sleep_s``."""
    _note("start", payload, ctx.attempt)
    await asyncio.sleep(payload.get("sleep_s", 0))
    _note("done", payload, ctx.attempt)
    return {"id": payload["id"], "attempt": ctx.attempt, "pid": os.getpid()}


async def _resources(service: Service) -> AsyncIterator[dict[str, Any]]:
    """A lifespan: waits for the file $KF_TEST_GATE to exist (a database coming up), notes
    its startup and its shutdown in $KF_TEST_RECORD."""
    gate = os.environ["KF_TEST_GATE"]
    while not await asyncio.to_thread(os.path.exists, gate):
        await asyncio.sleep(0.05)
    with open(os.environ["KF_TEST_RECORD"], "a") as f:
        f.write(f"startup {os.getpid()} - 0\n")
    yield {"pool": f"pool-{os.getpid()}"}
    with open(os.environ["KF_TEST_RECORD"], "a") as f:
        f.write(f"shutdown {os.getpid()} - 0\n")


@function("rt-lifespan", lifespan=_resources)
async def with_pool(payload: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """Answers with the resource its lifespan set up, after ``sleep_s``."""
    _note("start", payload, ctx.attempt)
    await asyncio.sleep(payload.get("sleep_s", 0))
    _note("done", payload, ctx.attempt)
    return {"id": payload["id"], "pool": ctx.state["pool"]}


async def _broken(service: Service) -> AsyncIterator[None]:
    raise ConnectionRefusedError("database at db:5432 refused the connection")
    yield  # an async generator: the raise above is its startup


@function("rt-lifespan", lifespan=_broken)
async def broken_startup(payload: Any) -> None:
    raise AssertionError("never runs: startup failed")


def _charge(payload: dict[str, Any]) -> Any:
    def effect(key: str) -> str:
        with open(os.environ["KF_TEST_EFFECTS"], "a") as f:
            f.write(f"{key} {os.getpid()}\n")
        return f"charge-{payload['id']}-{os.getpid()}"

    return effect


@function("rt-once")
async def charge_once(payload: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """Does its side effect (a line in $KF_TEST_EFFECTS) through ``ctx.once``; on the first
    attempt it then hangs (``hang``), to be SIGKILLed; notes start and done as ``record``."""
    _note("start", payload, ctx.attempt)
    charge = await ctx.once("charge", _charge(payload))
    if payload.get("hang") and ctx.attempt == 1:
        await asyncio.sleep(3600)
    _note("done", payload, ctx.attempt)
    return {"id": payload["id"], "attempt": ctx.attempt, "pid": os.getpid(), "charge": charge}


@function("rt-batch", batch=100, batch_wait_s=0.2)
async def batched(payloads: list[dict[str, Any]], ctxs: list[Context]) -> list[Any]:
    """A batch handler: answers each payload with its id, the batch size and the pid;
    ``sleep_s`` of the first payload delays the whole batch."""
    await asyncio.sleep(payloads[0].get("sleep_s", 0))
    return [{"id": p["id"], "size": len(payloads), "pid": os.getpid()} for p in payloads]
