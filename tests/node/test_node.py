"""The Node example checks the protocol's test vectors too, and its own units
(example/node/test/*.test.js).

Runs ``node --test`` there. Locally a missing node or node_modules skips; under CI=true
it fails (CI runs ``npm ci --prefix example/node``).
"""

from __future__ import annotations

import subprocess

import pytest

from tests.conformance.functions import NODE_DIR, require_node_modules
from tests.servers import require_binary


@pytest.mark.real
def test_node_checks_the_wire_vectors() -> None:
    node = require_binary("node")
    require_node_modules()
    files = sorted(str(p.relative_to(NODE_DIR)) for p in (NODE_DIR / "test").glob("*.test.js"))
    run = subprocess.run(
        [node, "--test", *files],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "# fail 0" in run.stdout
