"""functl against a bus that goes away and comes back empty (a cache-style Valkey, a pod
that lost its volume, nsqd's memory queues): while it is down every bus command fails with
exit 3 and the fix, never a traceback; once it is back, status and the dead-letter commands
answer with what the server now holds, and what is published then waits for the function."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from kubefuncs.functl.cli import main

from tests.nsq.support import OPTIONS as NSQ_OPTIONS
from tests.nsq_double import NsqdProcess
from tests.servers import ServerProcess

pytestmark = pytest.mark.real

FUNCTIONS = """\
bus: {url: "valkey://127.0.0.1:1/0"}
functions:
  - name: hello
    handler: example.hello:hello
    topic: hello
"""


def functl(path: Path, bus: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, [*args, "-f", str(path), "--bus", bus])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"functl {args} raised {result.exception!r}") from result.exception
    return result.exit_code, result.output


@dataclass
class Bus:
    url: str
    stop: Callable[[], None]
    start: Callable[[], None]


@pytest.fixture(params=["valkey", "nsq"])
def bus(request: pytest.FixtureRequest) -> Iterator[Bus]:
    if request.param == "valkey":
        valkey: ServerProcess = request.getfixturevalue("cache_valkey")
        yield Bus(f"valkey://127.0.0.1:{valkey.port}/0?prefix=fr", valkey.stop, valkey.start)
        return
    nsqd = NsqdProcess()  # memory queues only, like nsqd: a restart comes back empty
    nsqd.start()
    try:
        url = f"nsq://?nsqd={nsqd.tcp_address}&nsqd_http={nsqd.http_address}&{NSQ_OPTIONS}"
        yield Bus(url, nsqd.kill, nsqd.start)
    finally:
        nsqd.stop()


def test_functl_answers_while_the_bus_is_down_and_after_it_restarts_empty(
    bus: Bus, tmp_path: Path
) -> None:
    spec = tmp_path / "functions.yaml"
    spec.write_text(FUNCTIONS)
    assert functl(spec, bus.url, "publish", "hello", "--data", "1")[0] == 0

    # When the server goes away, each bus command fails (exit 3: unreachable) with a fix
    bus.stop()
    for args in (
        ("status", "--kubeconfig", str(tmp_path / "none")),
        ("dlq", "list"),
        ("dlq", "show", "hello"),
        ("dlq", "replay", "hello", "--all"),
        ("publish", "hello", "--data", "2"),
        ("call", "hello", "--data", "2", "--timeout-s", "1"),
    ):
        code, out = functl(spec, bus.url, *args)
        assert code == 3, (args, out)
        assert "functl: bus " in out and "fix: pass --bus" in out, (args, out)
        assert "--skip-bus" not in out and "Traceback" not in out, (args, out)

    # When it comes back empty (no streams, groups or dead letters)
    bus.start()
    code, out = functl(spec, bus.url, "status", "--kubeconfig", str(tmp_path / "none"))
    assert code == 0, out
    assert _row(out, "hello")[4:] == ["0", "0", "0", "0"], out  # depth in-flight delayed dead
    for args in (("dlq", "list"), ("dlq", "show", "hello")):
        assert functl(spec, bus.url, *args)[0] == 0
    assert "replayed 0" in functl(spec, bus.url, "dlq", "replay", "hello", "--all")[1]
    assert "purged 0" in functl(spec, bus.url, "dlq", "purge", "hello", "--all", "--yes")[1]

    # Then what is published now is counted as waiting for the function (whose group,
    # lost with the rest, comes back at the start of the stream)
    for n in range(3):
        assert functl(spec, bus.url, "publish", "hello", "--data", str(n))[0] == 0
    out = functl(spec, bus.url, "status", "--kubeconfig", str(tmp_path / "none"))[1]
    assert _row(out, "hello")[4] == "3", out


def _row(table: str, name: str) -> list[str]:
    return next(line.split() for line in table.splitlines() if line.split()[:1] == [name])
