"""nsqd killed under load and restarted empty (no --data-path): topics, channels, in-flight
and deferred messages, and its nsqlookupd registrations are gone. The function runtime and
the gateway reconnect with backoff, SUB again (which re-creates the channels and the reply
inboxes' topics, and registers them with nsqlookupd), and serve within seconds."""

from __future__ import annotations

import asyncio
import collections
import time
from pathlib import Path

import aiohttp
import pytest
from kubefuncs import Client, RemoteError, function, wire
from kubefuncs.errors import KubefuncsError
from kubefuncs.runtime import Runtime
from kubefuncs.transport import from_url

from tests.nsq.support import DOUBLE, OPTIONS, eventually
from tests.nsq_double import LookupdDouble, NsqdDouble, NsqdProcess
from tests.procs import Proc
from tests.servers import free_port

RECOVERY_S = 15.0  # a bound for a loaded two-core machine; it takes ~1-3 s


@function("restart-echo")
async def restart_echo(payload: dict[str, int]) -> dict[str, int]:
    return payload


async def test_runtime_and_caller_recover_when_nsqd_alone_restarts_empty() -> None:
    # Given a function and a caller on one nsqd, found through an nsqlookupd that stays up
    lookupd = LookupdDouble()
    await lookupd.start("127.0.0.1", 0)
    nsqd = NsqdDouble(lookupd=lookupd, **DOUBLE)
    await nsqd.start("127.0.0.1", 0, 0)
    ports = nsqd.tcp_port, nsqd.http_port
    url = f"nsq://{lookupd.http_address}?prefix=r{wire.new_id()[:6]}.&{OPTIONS}"
    function_bus, caller_bus = from_url(url), from_url(url)
    runtime = Runtime(restart_echo, transport=function_bus)
    task = asyncio.create_task(runtime.run())
    caller = Client(transport=caller_bus)
    outcomes: collections.Counter[str] = collections.Counter()
    try:
        await eventually(lambda: runtime.ready)
        assert await caller.call("restart-echo", {"n": 0}, timeout_s=3) == {"n": 0}
        # When nsqd dies and an empty one takes its ports
        await nsqd.stop()
        restarted = time.monotonic()
        nsqd = NsqdDouble(lookupd=lookupd, **DOUBLE)
        await nsqd.start("127.0.0.1", *ports)
        assert not nsqd.topics  # nothing survived
        # Then calls are answered again within seconds
        recovered = None
        n = 0
        while recovered is None and time.monotonic() - restarted < RECOVERY_S:
            n += 1
            try:
                assert await caller.call("restart-echo", {"n": n}, timeout_s=1) == {"n": n}
                outcomes["answered"] += 1
                recovered = time.monotonic() - restarted
            except (KubefuncsError, RemoteError, TimeoutError) as e:
                outcomes[type(e).__name__] += 1
        assert recovered is not None, outcomes
        print(f"nsqd alone restarted empty: {dict(outcomes)}, recovered in {recovered:.2f}s")
        # And the new nsqd holds the channel, the reply inbox and their lookupd entries
        wire_topic = caller_bus.config.wire("restart-echo")  # type: ignore[attr-defined]
        assert "restart-echo" in nsqd.topics[wire_topic].channels
        assert any(name.startswith("kf.r.") for name in nsqd.topics)
        assert lookupd.db.producers("channel", wire_topic, "restart-echo")
        assert runtime.ready and not task.done()
    finally:
        runtime.stop()
        await task
        await caller.close()
        await caller_bus.close()
        await function_bus.close()
        await nsqd.stop()
        await lookupd.stop()


@pytest.mark.real
@pytest.mark.slow
async def test_gateway_and_function_processes_ride_out_nsqd_restarted_empty(
    tmp_path: Path,
) -> None:
    # Given a gateway and a function (processes) on an nsqd + nsqlookupd (one process, so
    # both come back empty) under load from 10 HTTP callers
    bus = NsqdProcess(lookupd_http_port=0)
    await asyncio.to_thread(bus.start)
    url = f"nsq://{bus.lookupd_http_address}?prefix=r{wire.new_id()[:6]}.&{OPTIONS}"
    routes = tmp_path / "routes.yaml"
    routes.write_text("/echo/: {topic: e2e, timeout_s: 2}\n")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    common = {"KF_BUS_URL": url, "KF_LOG_LEVEL": "WARNING"}
    gateway = Proc(
        ["kubefuncs.gateway", str(routes)],
        {**common, "KF_GATEWAY_ADDR": f"127.0.0.1:{port}", "KF_GATEWAY_MAINTAIN_INTERVAL_S": "0"},
    )
    worker = Proc(["kubefuncs", "tests.gateway.fns:behave"], {**common, "KF_HEALTH_ADDR": ""})
    statuses: collections.Counter[int] = collections.Counter()
    first_ok_after: list[float] = []
    restarted_at: list[float] = []
    try:
        await asyncio.to_thread(worker.wait_http, f"{base}/echo/warm-up", expect=b"warm-up")
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            stop = asyncio.Event()

            async def caller(n: int) -> None:
                i = 0
                while not stop.is_set():
                    async with http.get(f"{base}/echo/{n}-{i}") as r:
                        statuses[r.status] += 1
                        if r.status == 200 and restarted_at and not first_ok_after:
                            first_ok_after.append(time.monotonic() - restarted_at[0])
                    i += 1
                    await asyncio.sleep(0.01)

            callers = [asyncio.create_task(caller(n)) for n in range(10)]
            await asyncio.sleep(1.0)
            answered_before = statuses[200]
            # When nsqd (and its lookupd) are SIGKILLed and come back empty 1 s later
            await asyncio.to_thread(bus.kill)
            await asyncio.sleep(1.0)
            await asyncio.to_thread(bus.start)
            restarted_at.append(time.monotonic())
            status, doc = await _stats(http, bus.http_address)
            # (the first SUBs may already be back; the messages of before are not)
            assert status == 200 and _messages(doc) < answered_before
            # Then calls are answered again within seconds, and for a while after
            await eventually(lambda: first_ok_after, within_s=RECOVERY_S)
            answered_back = statuses[200]
            await asyncio.sleep(1.5)
            stop.set()
            await asyncio.gather(*callers)  # none hung past its 5 s client timeout
        sent = sum(statuses.values())
        errored = sent - statuses[200]
        print(
            f"nsqd + lookupd restarted empty under load: sent {sent}, answered "
            f"{statuses[200]}, errored {errored} {dict(statuses)}, "
            f"recovered {first_ok_after[0]:.2f}s after the restart"
        )
        assert statuses[200] > answered_back, (statuses, gateway.output(), worker.output())
        assert set(statuses) <= {200, 503, 504}, statuses
        assert gateway.proc.poll() is None and worker.proc.poll() is None
    finally:
        codes = worker.stop(), gateway.stop()
        await asyncio.to_thread(bus.stop)
    assert codes == (0, 0), gateway.output() + worker.output()
    output = gateway.output() + worker.output()
    assert "Traceback" not in output, output


async def _stats(http: aiohttp.ClientSession, address: str) -> tuple[int, dict[str, object]]:
    async with http.get(f"http://{address}/stats", params={"format": "json"}) as r:
        return r.status, await r.json()


def _messages(doc: dict[str, object]) -> int:
    topics = doc.get("topics") or []
    assert isinstance(topics, list)
    return sum(int(t["message_count"]) for t in topics)
