"""A Valkey restarted without persistence (a cache-style server) loses the streams and the
consumer groups: every language's function gets NOGROUP, creates its groups again (at 0,
so what was published since the restart is read) and answers within seconds."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kubefuncs import Client

from tests.conformance.functions import LANGUAGES, serve
from tests.conformance.report import Report
from tests.servers import ServerProcess

pytestmark = [pytest.mark.real, pytest.mark.slow]

NOT_ON_NSQ = (
    "a Valkey behaviour (consumer groups live in the server); nsqd restarted empty is "
    "tests/nsq's, for the Python runtime"
)


@pytest.fixture(scope="module")
def cache_valkey() -> Iterator[ServerProcess]:
    server = ServerProcess("valkey-server", persistent=False)
    server.start()
    yield server
    server.close()


@pytest.mark.parametrize("language", LANGUAGES)
async def test_an_empty_restart_is_survived(
    language: str, cache_valkey: ServerProcess, conformance_report: Report
) -> None:
    conformance_report.record(language, "nsq", "valkey-empty-restart", None, NOT_ON_NSQ)
    url = f"valkey://127.0.0.1:{cache_valkey.port}/0?prefix=r{language}"
    with (
        conformance_report.checking(language, "valkey", "valkey-empty-restart"),
        serve(language, url) as function,
    ):
        payload = {"conformance": "echo", "value": "before"}
        async with Client(function.bus_url) as client:
            # Given a function that answers
            assert await client.call(function.topic, payload, timeout_s=10) == {
                "value": "before",
                "attempt": 1,
            }
        # When the server restarts empty (no AOF: streams and groups are gone)
        cache_valkey.restart(down_s=0.3)
        # Then a call made after the restart is answered, and the function still runs
        async with Client(function.bus_url) as client:
            payload["value"] = "after"
            reply = await client.call(function.topic, payload, timeout_s=20)
        assert reply == {"value": "after", "attempt": 1}, function.log()
        assert function.proc.poll() is None, function.log()
