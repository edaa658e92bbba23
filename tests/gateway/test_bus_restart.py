"""The gateway and a function (separate processes) under load while the bus is SIGKILLed
and restarted (valkey-server from its AOF; the nsqd + nsqlookupd double, which keeps
nothing, as nsqd without its disk queue): callers get 503/504 while it is away, never a
hang or someone else's reply; both processes live on and serve again once it is back."""

from __future__ import annotations

import asyncio
import collections
import time
from pathlib import Path

import aiohttp
import pytest
from kubefuncs import wire

from tests.nsq.support import OPTIONS as NSQ_OPTIONS
from tests.nsq_double import NsqdProcess
from tests.procs import Proc
from tests.servers import ServerProcess, free_port

pytestmark = [pytest.mark.real, pytest.mark.slow]


class Bus:
    """A bus of the test's own that it can kill and restart."""

    def __init__(self, kind: str) -> None:
        prefix = f"r{wire.new_id()[:6]}"
        if kind == "valkey":
            self.valkey = ServerProcess("valkey-server")
            self.valkey.start()
            self.url = f"valkey://127.0.0.1:{self.valkey.port}/0?prefix={prefix}&block_ms=200"
        else:
            self.nsq = NsqdProcess(lookupd_http_port=0)
            self.nsq.start()
            self.url = f"nsq://{self.nsq.lookupd_http_address}?prefix={prefix}.&{NSQ_OPTIONS}"
        self.kind = kind

    def restart(self, down_s: float) -> None:
        if self.kind == "valkey":
            self.valkey.restart(down_s)
        else:
            self.nsq.kill()
            time.sleep(down_s)
            self.nsq.start()  # on the same ports

    def close(self) -> None:
        if self.kind == "valkey":
            self.valkey.close()
        else:
            self.nsq.stop()


@pytest.mark.parametrize("kind", ["valkey", "nsq"])
async def test_the_gateway_rides_out_a_bus_restart(kind: str, tmp_path: Path) -> None:
    # Given a gateway and a function on a bus of their own, answering
    server = Bus(kind)
    bus = server.url
    routes = tmp_path / "routes.yaml"
    routes.write_text("/echo/: {topic: e2e, timeout_s: 2}\n")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    common = {"KF_BUS_URL": bus, "KF_LOG_LEVEL": "WARNING"}
    gateway = Proc(
        ["kubefuncs.gateway", str(routes)],
        {**common, "KF_GATEWAY_ADDR": f"127.0.0.1:{port}", "KF_GATEWAY_MAINTAIN_INTERVAL_S": "0"},
    )
    worker = Proc(["kubefuncs", "tests.gateway.fns:behave"], {**common, "KF_HEALTH_ADDR": ""})
    statuses: collections.Counter[int] = collections.Counter()
    mixed_up: list[str] = []
    try:
        worker.wait_http(f"{base}/echo/warm-up", expect=b"warm-up")
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            stop = asyncio.Event()

            async def caller(n: int) -> None:
                i = 0
                while not stop.is_set():
                    path = f"/echo/{n}-{i}"
                    async with http.get(base + path) as r:
                        statuses[r.status] += 1
                        if r.status == 200 and (await r.json())["path"] != path:
                            mixed_up.append(path)
                    i += 1
                    await asyncio.sleep(0.01)

            callers = [asyncio.create_task(caller(n)) for n in range(10)]
            await asyncio.sleep(0.5)
            # When valkey-server is killed and comes back 1 s later
            await asyncio.to_thread(server.restart, 1.0)
            before_back = sum(statuses.values())
            answered_at_restart = statuses[200]
            # Then, within a few seconds, calls are answered again
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                async with http.get(f"{base}/readyz") as r:
                    ready = r.status == 200
                if ready and statuses[200] > answered_at_restart:
                    break
                await asyncio.sleep(0.2)
            answered_before = statuses[200]
            await asyncio.sleep(1.5)
            stop.set()
            await asyncio.gather(*callers)  # none hung past its 5 s client timeout
        assert statuses[200] > answered_before, (statuses, gateway.output(), worker.output())
        # while it was away, callers heard 503 (bus down) or 504 (no reply in time) only
        assert set(statuses) <= {200, 503, 504}, statuses
        assert statuses[503] + statuses[504] > 0, statuses  # the outage was really hit
        assert before_back > 0 and not mixed_up, mixed_up[:5]
        assert gateway.proc.poll() is None and worker.proc.poll() is None
    finally:
        codes = worker.stop(), gateway.stop()
        server.close()
    assert codes == (0, 0), gateway.output() + worker.output()
    output = gateway.output() + worker.output()
    assert not [line for line in output.splitlines() if "Traceback" in line]
