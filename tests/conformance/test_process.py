"""What an operator sees of a function process, in every language and on both buses:
/healthz and /readyz on KF_HEALTH_ADDR, readiness dropped as soon as SIGTERM comes (while
in-flight work drains), and a wrong setting refused at start with exit code 2 and the
variable's name."""

from __future__ import annotations

import asyncio
import os
import subprocess
import urllib.error
import urllib.request

import pytest
from kubefuncs import Client

from tests.conformance.functions import LANGUAGES, ROOT, Served, command, serve
from tests.conformance.report import Report
from tests.conformance.test_conformance import kind
from tests.servers import free_port

pytestmark = [pytest.mark.real, pytest.mark.slow]


def status(port: int, path: str) -> int | None:
    """The HTTP status of GET path, None when nothing listens."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except (urllib.error.URLError, OSError):
        return None


@pytest.mark.parametrize("language", LANGUAGES)
async def test_health_endpoints_and_readiness_on_sigterm(
    language: str, bus: str, conformance_report: Report
) -> None:
    port = free_port()
    with (
        conformance_report.checking(language, kind(bus), "health-and-readiness"),
        serve(language, bus, KF_HEALTH_ADDR=f"127.0.0.1:{port}") as function,
    ):
        await _health(function, port)


async def _health(function: Served, port: int) -> None:
    # Given a function that consumes: alive and ready
    assert await _until(lambda: status(port, "/readyz") == 200), function.log()
    assert status(port, "/healthz") == 200
    async with Client(function.bus_url) as client:
        payload = {"conformance": "echo", "value": "slow", "sleep_ms": 1500}
        call = asyncio.create_task(client.call(function.topic, payload, timeout_s=10))
        await asyncio.sleep(0.3)
        # When SIGTERM comes while a call is in flight
        function.proc.send_signal(15)
        # Then it is not ready at once, and still answers the call before it exits 0
        assert await _until(lambda: status(port, "/readyz") == 503), function.log()
        assert await call == {"value": "slow", "attempt": 1}
    assert await asyncio.to_thread(function.proc.wait, 15) == 0, function.log()


async def _until(check: object, timeout_s: float = 10.0) -> bool:
    assert callable(check)
    async with asyncio.timeout(timeout_s):
        while not await asyncio.to_thread(check):
            await asyncio.sleep(0.02)
    return True


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_wrong_setting_exits_2_naming_the_variable(
    language: str, bus: str, conformance_report: Report
) -> None:
    with conformance_report.checking(language, kind(bus), "bad-setting-exits-2"):
        env = {**os.environ, "KF_BUS_URL": bus, "KF_TOPIC": "conf", "KF_CONCURRENCY": "eight"}
        env["KF_HEALTH_ADDR"] = ""
        run = subprocess.run(
            command(language), cwd=ROOT, env=env, capture_output=True, text=True, timeout=30
        )
        assert run.returncode == 2, run.stdout + run.stderr
        assert "KF_CONCURRENCY must be an integer, got 'eight'" in run.stdout + run.stderr
