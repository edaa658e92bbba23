"""functl against a Valkey that goes away and comes back empty (a cache-style Valkey, or a
pod that lost its volume): while it is down every bus command fails with exit 1 and a
reason, never a traceback; once it is back, status and the dead-letter commands answer
with what the server now holds, and what is published then waits for the function."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from kubefuncs.functl.cli import main

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


def test_functl_answers_while_the_bus_is_down_and_after_it_restarts_empty(
    cache_valkey: ServerProcess, tmp_path: Path
) -> None:
    spec = tmp_path / "functions.yaml"
    spec.write_text(FUNCTIONS)
    bus = f"valkey://127.0.0.1:{cache_valkey.port}/0?prefix=fr"
    assert functl(spec, bus, "publish", "hello", "--data", "1")[0] == 0

    # When the server goes away, each bus command fails (exit 3: unreachable) with a fix
    cache_valkey.stop()
    for args in (
        ("status", "--kubeconfig", str(tmp_path / "none")),
        ("dlq", "list"),
        ("dlq", "show", "hello"),
        ("dlq", "replay", "hello", "--all"),
        ("publish", "hello", "--data", "2"),
        ("call", "hello", "--data", "2", "--timeout-s", "1"),
    ):
        code, out = functl(spec, bus, *args)
        assert code == 3, (args, out)
        assert "cannot reach the bus" in out and "fix: pass --bus" in out, (args, out)
        assert "--skip-bus" not in out and "Traceback" not in out, (args, out)

    # When it comes back empty (no streams, groups or dead letters)
    cache_valkey.start()
    code, out = functl(spec, bus, "status", "--kubeconfig", str(tmp_path / "none"))
    assert code == 0, out
    assert _row(out, "hello")[4:] == ["0", "0", "0", "0"], out  # depth in-flight delayed dead
    for args in (("dlq", "list"), ("dlq", "show", "hello")):
        assert functl(spec, bus, *args)[0] == 0
    assert "replayed 0" in functl(spec, bus, "dlq", "replay", "hello", "--all")[1]
    assert "purged 0" in functl(spec, bus, "dlq", "purge", "hello", "--all", "--yes")[1]

    # Then what is published now is counted as waiting for the function (whose group,
    # lost with the rest, comes back at the start of the stream)
    for n in range(3):
        assert functl(spec, bus, "publish", "hello", "--data", str(n))[0] == 0
    out = functl(spec, bus, "status", "--kubeconfig", str(tmp_path / "none"))[1]
    assert _row(out, "hello")[4] == "3", out


def _row(table: str, name: str) -> list[str]:
    return next(line.split() for line in table.splitlines() if line.split()[:1] == [name])
