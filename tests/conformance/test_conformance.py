"""The Python runtime and the Node example both pass the conformance suite on real Valkey.

One test body per behaviour, run against each language: the suite (kubefuncs.conformance)
and a graceful SIGTERM. The CLI tests check only parsing, output lines and exit codes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from click.testing import CliRunner
from kubefuncs import Client, conformance
from kubefuncs.functl.cli import main as functl

from tests.conformance.functions import Served, serve

pytestmark = [pytest.mark.real, pytest.mark.slow]


@pytest.fixture(params=["python", "node"])
def function(request: pytest.FixtureRequest, valkey_url: str) -> Iterator[Served]:
    with serve(request.param, valkey_url) as served:
        yield served


async def test_function_passes_every_conformance_check(function: Served) -> None:
    # Given a function serving a topic on Valkey
    opts = conformance.Options(function.bus_url, function.topic, dead_letter_timeout_s=20)
    # When the suite drives it through the contract
    results = await conformance.run(opts)
    # Then every check passes
    report = "\n".join(r.line() for r in results)
    assert [r.name for r in results] == [name for name, _ in conformance.CHECKS], report
    assert all(r.ok for r in results), f"{report}\n--- {function.language} log:\n{function.log()}"


async def test_sigterm_finishes_in_flight_work_and_exits_0(function: Served) -> None:
    # Given a function in the middle of a call
    async with Client(function.bus_url) as client:
        payload = {"conformance": "echo", "value": "slow", "sleep_ms": 700}
        call = asyncio.create_task(client.call(function.topic, payload, timeout_s=10))
        await asyncio.sleep(0.3)
        # When it gets SIGTERM
        code = await asyncio.to_thread(function.terminate)
        # Then the call is still answered and the process exits 0
        assert await call == {"value": "slow", "attempt": 1}
    assert code == 0, function.log()


def test_cli_prints_a_line_per_check_and_exits_0(valkey_url: str) -> None:
    with serve("python", valkey_url) as served:
        result = CliRunner().invoke(
            functl,
            ["conformance", "--bus", served.bus_url, "--topic", served.topic,
             "--check", "request-reply", "--check", "error-reply"],
        )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0].startswith("PASS request-reply ")
    assert result.output.splitlines()[1].startswith("PASS error-reply ")


def test_cli_exits_1_when_nobody_answers(valkey_url: str) -> None:
    result = CliRunner().invoke(
        functl,
        ["conformance", "--bus", valkey_url, "--topic", "nobody", "--timeout-s", "0.3",
         "--check", "request-reply"],
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert result.output.startswith("FAIL request-reply ")
    assert "no correlated reply" in result.output


def test_cli_exits_3_when_the_bus_is_unreachable() -> None:
    from tests.servers import free_port

    url = f"valkey://127.0.0.1:{free_port()}/0"
    result = CliRunner().invoke(functl, ["conformance", "--bus", url, "--topic", "t"])
    assert result.exit_code == 3, result.output
    assert "FAIL bus" in result.output
