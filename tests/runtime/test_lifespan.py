"""A function's lifespan: startup before the first message (ready only after it), the
state it sets up in every handler's ``ctx.state``, shutdown after the drain; a startup or
shutdown that fails or runs out of time ends the process non-zero with the cause."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from kubefuncs import Context, LifespanFailed, Service, function
from kubefuncs.runtime import Runtime
from kubefuncs.testing import run
from kubefuncs.transport.memory import MemoryTransport

from tests.procs import Proc
from tests.servers import ServerProcess, free_port


async def test_handlers_see_what_the_lifespan_set_up_and_shutdown_follows_the_drain() -> None:
    events: list[str] = []

    @contextlib.asynccontextmanager
    async def pool(service: Service) -> AsyncIterator[dict[str, Any]]:
        events.append(f"startup {service.name} on {service.settings.topic}")
        service.state["opened"] = True
        yield {"pool": "the-pool"}
        events.append("shutdown")

    @function("lifespan-in-process", lifespan=pool)
    async def handler(payload: Any, ctx: Context) -> Any:
        await asyncio.sleep(payload)
        events.append(f"handled {payload}")
        return [ctx.state["pool"], ctx.state["opened"]]

    async with run(handler) as fn:
        assert events == ["startup handler on lifespan-in-process"]
        assert await fn.call(0) == ["the-pool", True]
        slow = asyncio.create_task(fn.call(0.3))
        while not fn.runtime._tasks:  # the slow one is in flight when the block ends
            await asyncio.sleep(0.01)
    # Then the message in flight at the stop finished before the shutdown ran
    assert events[-2:] == ["handled 0.3", "shutdown"]
    assert await slow == ["the-pool", True]


async def test_a_bare_async_generator_is_a_lifespan_too() -> None:
    async def counter(service: Service) -> AsyncIterator[dict[str, int]]:
        yield {"n": 41}

    @function("lifespan-generator", lifespan=counter)
    def handler(payload: Any, ctx: Context) -> int:
        return ctx.state["n"] + payload  # type: ignore[no-any-return]

    async with run(handler) as fn:
        assert await fn.call(1) == 42


def _runtime(lifespan: Any, **settings: Any) -> Runtime:
    from dataclasses import replace

    @function("lifespan-failing", lifespan=lifespan)
    def handler(payload: Any) -> Any:
        return payload

    fn = handler.with_settings(replace(handler.settings, **settings))
    return Runtime(fn, transport=MemoryTransport(f"memory://lifespan-{id(fn)}"))


async def test_a_startup_that_raises_is_lifespan_failed_and_never_ready() -> None:
    async def broken(service: Service) -> AsyncIterator[None]:
        raise ConnectionRefusedError("db:5432")
        yield

    runtime = _runtime(broken)
    with pytest.raises(LifespanFailed, match="startup failed: ConnectionRefusedError"):
        await runtime.run()
    assert not runtime.ready and not runtime.consuming


async def test_a_startup_that_hangs_fails_after_its_timeout() -> None:
    async def hangs(service: Service) -> AsyncIterator[None]:
        await asyncio.Event().wait()
        yield

    runtime = _runtime(hangs, startup_timeout_s=0.2)
    with pytest.raises(LifespanFailed, match=r"startup took longer than 0.2 s"):
        await asyncio.wait_for(runtime.run(), 5)


async def test_a_lifespan_of_the_wrong_kind_says_what_it_must_be() -> None:
    runtime = _runtime(lambda service: None)
    with pytest.raises(LifespanFailed, match="must be an async generator function"):
        await runtime.run()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("raise", "shutdown failed: RuntimeError"),
        ("hang", "shutdown took longer than 0.2 s"),
    ],
)
async def test_a_shutdown_that_fails_is_lifespan_failed_after_the_work(
    body: str, message: str
) -> None:
    async def closing(service: Service) -> AsyncIterator[None]:
        yield
        if body == "raise":
            raise RuntimeError("pool already closed")
        await asyncio.Event().wait()

    runtime = _runtime(closing, shutdown_timeout_s=0.2)
    task = asyncio.create_task(runtime.run())
    async with asyncio.timeout(5):
        while not runtime.ready:
            await asyncio.sleep(0.01)
    runtime.stop()
    with pytest.raises(LifespanFailed, match=message):
        await asyncio.wait_for(task, 5)


# -- a real process --------------------------------------------------------------------------


@pytest.mark.real
def test_a_process_is_ready_only_after_startup_and_shuts_down_after_sigterm(
    valkey_server: ServerProcess, tmp_path: Path, procs: list[Proc]
) -> None:
    gate, record, port = tmp_path / "gate", tmp_path / "record", free_port()
    env = {
        "KF_BUS_URL": f"valkey://127.0.0.1:{valkey_server.port}/0?prefix=lifespan",
        "KF_HEALTH_ADDR": f"127.0.0.1:{port}",
        "KF_TEST_GATE": str(gate),
        "KF_TEST_RECORD": str(record),
        "KF_LOG_FORMAT": "text",
    }
    fn = Proc(["kubefuncs", "tests.runtime.fns:with_pool"], env)
    procs.append(fn)
    # Given a startup that waits for its database: alive, but not ready
    fn.wait_http(f"http://127.0.0.1:{port}/healthz")
    assert _status(f"http://127.0.0.1:{port}/readyz") == 503
    # When the database comes up, Then the process becomes ready and serves
    gate.touch()
    fn.wait_http(f"http://127.0.0.1:{port}/readyz")
    assert record.read_text().split()[0] == "startup"
    # When it is stopped, Then the shutdown runs and it exits 0
    fn.proc.send_signal(signal.SIGTERM)
    assert fn.proc.wait(10) == 0, fn.output()
    assert record.read_text().splitlines()[-1].startswith("shutdown")


@pytest.mark.real
def test_a_process_whose_startup_fails_exits_1_with_the_cause(
    valkey_server: ServerProcess, tmp_path: Path, procs: list[Proc]
) -> None:
    env = {
        "KF_BUS_URL": f"valkey://127.0.0.1:{valkey_server.port}/0?prefix=lifespan",
        "KF_HEALTH_ADDR": "",
        "KF_LOG_FORMAT": "text",
    }
    fn = Proc(["kubefuncs", "tests.runtime.fns:broken_startup"], env)
    procs.append(fn)
    assert fn.proc.wait(15) == 1
    out = fn.output()
    assert "startup failed" in out and "db:5432 refused the connection" in out, out
    assert "ConnectionRefusedError" in out  # the traceback of the user's code is logged


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def test_the_lifespan_survives_with_settings() -> None:
    async def nothing(service: Service) -> AsyncIterator[None]:
        yield

    @function("lifespan-settings", lifespan=nothing)
    def handler(payload: Any) -> Any:
        return payload

    from kubefuncs.settings import Settings

    env = {"KF_TOPIC": "other", "KF_STARTUP_TIMEOUT_S": "5", "KF_SHUTDOWN_TIMEOUT_S": "0"}
    moved = handler.with_settings(Settings.from_env(env, handler.settings))
    assert moved.lifespan is nothing
    assert (moved.settings.startup_timeout_s, moved.settings.shutdown_timeout_s) == (5.0, 0.0)
