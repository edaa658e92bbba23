"""The function runtime, the client and the gateway on NSQ (the double, or a real nsqd from
the environment): request/reply, retry with a delay, dead letters after max attempts, and an
HTTP request through the gateway; plus ``functl dev --bus nsq://...`` as a process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from kubefuncs import Client, Context, RemoteError, function
from kubefuncs.gateway import GatewaySettings, create_app, loads
from kubefuncs.runtime import Runtime
from kubefuncs.transport import Transport, from_url

from tests.conformance.functions import go_binary
from tests.nsq.support import eventually, nsq_url
from tests.nsq_double import NsqdProcess
from tests.procs import Proc
from tests.servers import free_port


@dataclass
class Seen:
    attempts: list[tuple[str, int, float]] = field(default_factory=list)


SEEN = Seen()


@function("calc", max_attempts=3, backoff_s=0.2, backoff_max_s=0.4)
async def calc(payload: dict[str, str], ctx: Context) -> str:
    SEEN.attempts.append((payload["op"], ctx.attempt, asyncio.get_running_loop().time()))
    if payload["op"] == "flaky" and ctx.attempt < 2:
        raise ConnectionError("try again")
    if payload["op"] == "poison":
        raise ValueError("cannot digest")
    return f"{payload['op']} done"


@dataclass
class Running:
    function: Transport  # the function's own connection, as in its own process
    caller: Client  # another process: a gateway or a script


@pytest.fixture
async def running() -> AsyncIterator[Running]:
    SEEN.attempts.clear()
    async with nsq_url() as url:
        function_bus, caller_bus = from_url(url), from_url(url)
        await function_bus.connect()
        await caller_bus.connect()
        runtime = Runtime(calc, transport=function_bus)
        task = asyncio.create_task(runtime.run())
        await eventually(lambda: runtime.ready)
        caller = Client(transport=caller_bus)
        try:
            yield Running(function_bus, caller)
        finally:
            runtime.stop()
            await task
            await caller.close()
            await caller_bus.close()
            await function_bus.close()


async def test_request_and_reply(running: Running) -> None:
    assert await running.caller.call("calc", {"op": "add"}, timeout_s=3) == "add done"


async def test_an_error_reply_reaches_a_waiting_caller_at_once(running: Running) -> None:
    with pytest.raises(RemoteError, match="cannot digest"):
        await running.caller.call("calc", {"op": "poison"}, timeout_s=3)


async def test_a_failed_event_is_retried_after_the_backoff(running: Running) -> None:
    await running.caller.publish("calc", {"op": "flaky"})
    await eventually(lambda: len(SEEN.attempts) == 2)
    (_, first, t1), (_, second, t2) = SEEN.attempts
    assert (first, second) == (1, 2)
    assert t2 - t1 >= 0.09  # backoff 0.2 s with up to half of it taken off as jitter


async def test_an_event_failing_every_attempt_becomes_a_dead_letter(running: Running) -> None:
    await running.caller.publish("calc", {"op": "poison"})
    transport = running.caller.transport
    letters = await eventually(lambda: transport.dead_letters("calc", "calc"), within_s=8)
    (letter,) = letters
    assert (letter.attempt, letter.reason) == (3, "ValueError: cannot digest")
    assert [a for _, a, _ in SEEN.attempts] == [1, 2, 3]
    stats = await transport.stats("calc", "calc")
    assert (stats.depth, stats.in_flight, stats.dead) == (0, 0, 1)


async def test_the_gateway_answers_http_through_nsq(running: Running) -> None:
    @function("web")
    async def web(request: object) -> str:
        return "hello over nsq"

    gateway_bus = running.caller.transport
    settings = replace(GatewaySettings(), bus_url="nsq://unused:4161", maintain_interval_s=0.5)
    app = create_app(settings, loads("/hi/: web"), transport=gateway_bus)
    runtime = Runtime(web, transport=running.function)
    task = asyncio.create_task(runtime.run())
    try:
        await eventually(lambda: runtime.ready)
        async with TestClient(TestServer(app)) as http:
            response = await http.get("/hi/there")
            assert (response.status, await response.text()) == (200, "hello over nsq")
    finally:
        runtime.stop()
        await task


@pytest.mark.slow
def test_functl_dev_serves_the_example_on_nsq() -> None:
    # Given nsqd + nsqlookupd (the double, as a process) and `functl dev --bus nsq://...`
    go_binary()  # the example's Go function (example/go/run), built before it starts
    with NsqdProcess(lookupd_http_port=0) as nsqd:
        port = free_port()
        bus = f"nsq://{nsqd.lookupd_http_address}"
        dev = Proc(
            [
                "kubefuncs.functl",
                "dev",
                "example/functions.yaml",
                "--port",
                str(port),
                "--bus",
                bus,
            ],
            {"KF_BUS_URL": ""},
        )
        try:
            # When the example is called / Then it answers through NSQ
            dev.wait_http(f"http://127.0.0.1:{port}/readyz", timeout_s=20)
            status, body = asyncio.run(_get(f"http://127.0.0.1:{port}/hello/?name=Ada"))
            assert status == 200 and "Hello, Ada!" in body, dev.output()
        finally:
            assert dev.stop() == 0, dev.output()


async def _get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(url) as r:
        return r.status, await r.text()


@pytest.mark.slow
def test_gateway_and_function_started_before_nsq_wait_for_it(tmp_path: Path) -> None:
    # Given a gateway and a function pointed at an nsqlookupd that is not running yet
    lookupd_port, port = free_port(), free_port()
    bus = f"nsq://127.0.0.1:{lookupd_port}?lookupd_poll_interval_s=0.2"
    routes = tmp_path / "routes.yaml"
    routes.write_text("/test/: test\n")
    common = {"KF_BUS_URL": bus, "KF_LOG_LEVEL": "WARNING"}
    gateway = Proc(
        ["kubefuncs.gateway", str(routes)], {**common, "KF_GATEWAY_ADDR": f"127.0.0.1:{port}"}
    )
    worker = Proc(["kubefuncs", "example.ping:pong"], {**common, "KF_HEALTH_ADDR": ""})
    base = f"http://127.0.0.1:{port}"
    try:
        # Then the gateway serves, not ready, and turns calls away with 503
        gateway.wait_http(f"{base}/healthz")
        assert asyncio.run(_get(f"{base}/readyz"))[0] == 503
        status, body = asyncio.run(_get(f"{base}/test/x"))
        assert status == 503 and "bus_unavailable" in body
        # When NSQ comes up, both connect and the call is answered
        with NsqdProcess(lookupd_http_port=lookupd_port):
            gateway.wait_http(f"{base}/test/x", expect=b"pong", timeout_s=20)
    finally:
        worker_code, gateway_code = worker.stop(), gateway.stop()
    assert (worker_code, gateway_code) == (0, 0), gateway.output() + worker.output()
    assert "Traceback" not in gateway.output() + worker.output()
    assert "Unclosed" not in gateway.output() + worker.output()
