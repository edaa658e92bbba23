"""The Python runtime, the Node example and the Go example all pass the conformance suite
on real Valkey and on NSQ (the nsqd double as a process, or a real nsqd when configured).

One test body per behaviour, run against each language on each bus: the suite
(kubefuncs.conformance), a graceful SIGTERM, a dead letter replayed; on NSQ also the RDY
counts within the concurrency and TOUCH during long work, as nsqd's /stats shows them.
Every outcome goes into the report behind the table of docs/other-languages.md
(tests/conformance/report.py). The CLI tests check only parsing, output lines and exit
codes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner
from kubefuncs import Client, conformance, wire
from kubefuncs.functl.cli import main as functl
from kubefuncs.transport import DeadLetter, Transport
from kubefuncs.transport._nsq_config import NsqConfig, side_topic

from tests.conformance.functions import LANGUAGES, Served, nsq_channels, nsq_clients, serve
from tests.conformance.report import Report

pytestmark = [pytest.mark.real, pytest.mark.slow]


# the suite's crashed consumer and its poison entries are Valkey ones
# (client/conformance.py): skipped on NSQ
SKIPPED_ON = {"valkey": set(), "nsq": {"redelivery-after-crash", "poison-entry"}}
# the checks of this module beyond the suite's, as the table of docs/other-languages.md
# names them (the NSQ-only ones are SKIP on Valkey, with the reason)
EXTRA_CHECKS = (
    "graceful-sigterm",
    "dead-letter-replay",
    "valkey-empty-restart",  # test_bus_restart.py
    "health-and-readiness",  # test_process.py
    "bad-setting-exits-2",
    "nsq-rdy-budget",
    "nsq-touch",
)
NSQ_ONLY = "an NSQ behaviour (RDY counts, TOUCH against nsqd's msg_timeout): no Valkey equivalent"


def kind(bus_url: str) -> str:
    return "nsq" if bus_url.startswith("nsq://") else "valkey"


@pytest.fixture(params=LANGUAGES)
def function(request: pytest.FixtureRequest, bus: str) -> Iterator[Served]:
    with serve(request.param, bus) as served:
        yield served


async def test_function_passes_every_conformance_check(
    function: Served, conformance_report: Report
) -> None:
    # Given a function serving a topic on Valkey or NSQ
    opts = conformance.Options(function.bus_url, function.topic, dead_letter_timeout_s=20)
    # When the suite drives it through the contract
    results = await conformance.run(opts)
    # Then every check passes, but for those that do not apply to the bus
    for r in results:
        conformance_report.record(function.language, kind(function.bus_url), r.name, r.ok, r.detail)
    report = "\n".join(r.line() for r in results)
    assert [r.name for r in results] == [name for name, _ in conformance.CHECKS], report
    failed = [r.name for r in results if r.ok is False]
    skipped = {r.name for r in results if r.ok is None}
    log = f"{report}\n--- {function.language} log:\n{function.log()}"
    assert (failed, skipped) == ([], SKIPPED_ON[kind(function.bus_url)]), log


async def test_sigterm_finishes_in_flight_work_and_exits_0(
    function: Served, conformance_report: Report
) -> None:
    with conformance_report.checking(function.language, kind(function.bus_url), "graceful-sigterm"):
        await _sigterm(function)


async def _sigterm(function: Served) -> None:
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


@pytest.mark.parametrize("language", LANGUAGES)
async def test_a_replayed_dead_letter_is_consumed_again(
    language: str, bus: str, conformance_report: Report
) -> None:
    with (
        conformance_report.checking(language, kind(bus), "dead-letter-replay"),
        serve(language, bus, KF_MAX_ATTEMPTS="1") as function,
    ):
        await _replay_then_dead_again(function)


async def _replay_then_dead_again(function: Served) -> None:
    # Given an event that failed (its only attempt) and became a dead letter
    async with Client(function.bus_url) as client:
        bus = client.transport
        event = {"conformance": "fail", "token": wire.new_id()}
        body = wire.encode(wire.make(function.topic, event))
        await bus.publish(function.topic, body)
        first = await _dead_letter(bus, function, body, purge=False)
        # When it is replayed (functl dlq replay; on NSQ through the channel's replay topic)
        assert await bus.replay_dead(function.topic, function.channel, [first.id]) == 1
        # Then the function consumes it again, as attempt 1, and dead-letters it again
        again = await _dead_letter(bus, function, body)
    assert (first.attempt, again.attempt) == (1, 1), function.log()
    assert again.id != first.id


async def _dead_letter(
    bus: Transport, function: Served, body: bytes, *, purge: bool = True
) -> DeadLetter:
    async with asyncio.timeout(15):
        while True:
            for letter in await bus.dead_letters(function.topic, function.channel):
                if letter.body == body:
                    if purge:
                        await bus.purge_dead(function.topic, function.channel, [letter.id])
                    return letter
            await asyncio.sleep(0.1)


@pytest.mark.parametrize("language", LANGUAGES)
def test_nsq_only_checks_say_why_they_skip_on_valkey(
    language: str, conformance_report: Report
) -> None:
    for check in ("nsq-rdy-budget", "nsq-touch"):
        conformance_report.record(language, "valkey", check, None, NSQ_ONLY)
    assert set(EXTRA_CHECKS) >= {"nsq-rdy-budget", "nsq-touch"}


@pytest.mark.parametrize("language", LANGUAGES)
async def test_on_nsq_the_rdy_counts_add_up_to_the_concurrency(
    language: str, nsq_url: str, conformance_report: Report
) -> None:
    with conformance_report.checking(language, "nsq", "nsq-rdy-budget"):
        await _rdy_budget(language, nsq_url)


async def _rdy_budget(language: str, nsq_url: str) -> None:
    # Given a function with KF_CONCURRENCY=3, reading T and T.C.replay on NSQ
    with serve(language, nsq_url, KF_CONCURRENCY="3") as function:
        main_topic = NsqConfig.from_url(function.bus_url).wire(function.topic)
        topics = [main_topic, side_topic(main_topic, function.channel, "replay")]
        seen: list[tuple[int, int]] = []  # (sum of RDY, sum in flight) over its connections

        def look() -> None:
            clients = nsq_clients(function.bus_url, topics, function.channel)
            rdy, out = (sum(c[key] for c in clients) for key in ("ready_count", "in_flight_count"))
            seen.append((rdy, out))

        async def watch() -> None:
            while True:
                await asyncio.to_thread(look)
                await asyncio.sleep(0.01)

        # When 12 calls of 0.15 s each come at once
        async with Client(function.bus_url) as client:
            watcher = asyncio.create_task(watch())
            payload = {"conformance": "echo", "value": 1, "sleep_ms": 150}
            await asyncio.gather(*(client.call(function.topic, payload) for _ in range(12)))
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
    # Then nsqd never had more than 3 of them out, and was told so: the RDY counts add up to
    # 3. (Only for a moment can nsqd see 4: a free slot that moves from one connection to
    # the other is taken from one and given to the other on two connections, and nsqd may
    # apply the two in either order. The function still runs at most 3 at once.)
    busy = [s for s in seen if s != (0, 0)]
    rdy = Counter(r for r, _ in busy)
    assert max(out for _, out in seen) == 3, busy
    assert rdy.most_common(1)[0][0] == 3 and max(rdy) <= 4, busy


@pytest.mark.parametrize("language", LANGUAGES)
async def test_on_nsq_long_work_is_touched_not_redelivered(
    language: str, nsq_url: str, conformance_report: Report
) -> None:
    with conformance_report.checking(language, "nsq", "nsq-touch"):
        await _touched(language, nsq_url)


async def _touched(language: str, nsq_url: str) -> None:
    # Given a function on NSQ with nsqd's shortest msg_timeout (1 s)
    with serve(language, f"{nsq_url}&msg_timeout_s=1") as function:
        # When its handler works for 1.6 s
        async with Client(function.bus_url) as client:
            payload = {"conformance": "echo", "value": "slow", "sleep_ms": 1600}
            reply = await client.call(function.topic, payload, timeout_s=10)
        # Then it was answered once and FINished, and never timed out on nsqd: touched in time
        assert reply == {"value": "slow", "attempt": 1}
        channel = await _settled_channel(function)
        assert channel["timeout_count"] == 0, function.log()


async def _settled_channel(function: Served) -> dict[str, Any]:
    """nsqd's /stats of the function's channel once nothing is in flight (the FIN follows
    the reply, so it may still be on its way)."""
    wire_topic = NsqConfig.from_url(function.bus_url).wire(function.topic)
    async with asyncio.timeout(5):
        while True:
            (channel,) = await asyncio.to_thread(
                nsq_channels, function.bus_url, [wire_topic], function.channel
            )
            if channel["in_flight_count"] == 0:
                return channel
            await asyncio.sleep(0.05)


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
