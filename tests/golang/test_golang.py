"""The Go example checks the protocol's test vectors too, and its own units
(example/go/kf/*_test.go): ``go vet`` and ``go test`` there, offline as example/go/build
builds. Locally a missing go skips; under CI=true it fails (.ci/setup installs it)."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.conformance.functions import GO_DIR, ROOT
from tests.servers import require_binary

OFFLINE = {
    "GOPROXY": "off",
    "GOFLAGS": "-mod=mod",
    "GOTOOLCHAIN": "local",
    "CGO_ENABLED": "0",
    "GOCACHE": os.environ.get("GOCACHE") or str(ROOT / ".ci" / "tools" / "go" / "cache"),
}


@pytest.mark.real
@pytest.mark.parametrize("step", [["vet", "./..."], ["test", "-count=1", "./..."]])
def test_go_example_passes_vet_and_its_tests(step: list[str]) -> None:
    go = require_binary("go")
    run = subprocess.run(
        [go, *step],
        cwd=GO_DIR,
        env={**os.environ, **OFFLINE},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]


def test_go_sources_are_gofmt_clean() -> None:
    gofmt = require_binary("gofmt")
    run = subprocess.run(
        [gofmt, "-l", "."], cwd=GO_DIR, capture_output=True, text=True, check=False
    )
    assert (run.returncode, run.stdout) == (0, ""), run.stderr
