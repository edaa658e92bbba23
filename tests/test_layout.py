"""The dependency direction of the three packages, and nothing done at import time."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"client": "kubefuncs", "gateway": "kubefuncs.gateway", "functl": "kubefuncs.functl"}


def imports(path: Path, package: str) -> set[str]:
    """Absolute module names a file imports (relative imports resolved against ``package``)."""
    tree = ast.parse(path.read_text())
    rel = path.relative_to(ROOT / next(k for k, v in PACKAGES.items() if v == package))
    here = [*package.split("."), *rel.parent.parts]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = here[: len(here) - node.level + 1] if node.level else []
            module = ".".join([*base, node.module] if node.module else base)
            out.add(module)
            out.update(f"{module}.{a.name}" for a in node.names)
    return out


def files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize(
    ("folder", "forbidden"),
    [
        ("client", ("kubefuncs.gateway", "kubefuncs.functl")),
        ("gateway", ("kubefuncs.functl",)),
    ],
)
def test_packages_depend_on_the_client_only(folder: str, forbidden: tuple[str, ...]) -> None:
    bad = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in files(folder)
        for name in imports(path, PACKAGES[folder])
        if name.startswith(forbidden)
    ]
    assert bad == []


def test_functl_reaches_the_gateway_only_from_dev_inside_a_function() -> None:
    for path in files("functl"):
        tree = ast.parse(path.read_text())
        top_level = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
        names = {ast.unparse(n) for n in top_level}
        assert not any("gateway" in n for n in names), path


def test_only_the_factory_imports_a_concrete_transport() -> None:
    concrete = (
        "kubefuncs.transport.valkey",
        "kubefuncs.transport.nsq",
        "kubefuncs.transport.memory",
    )
    allowed = {
        "transport/__init__.py",
        "testing.py",
        "transport/valkey.py",
        "transport/nsq.py",
        "transport/memory.py",
        "transport/_valkey_sub.py",
    }
    bad = []
    for path in files("client"):
        rel = str(path.relative_to(ROOT / "client"))
        if rel in allowed or rel.startswith(("transport/_nsq", "transport/_valkey")):
            continue
        bad += [f"{rel} imports {n}" for n in imports(path, "kubefuncs") if n.startswith(concrete)]
    assert bad == []


def test_importing_opens_nothing_and_registers_no_metrics() -> None:
    code = (
        "import socket, prometheus_client as p\n"
        "before = set(p.REGISTRY._names_to_collectors)\n"
        "def no(*a, **k): raise SystemExit('socket opened at import')\n"
        "socket.socket.connect = no\n"
        "import kubefuncs, kubefuncs.gateway.app, kubefuncs.functl.cli, kubefuncs.runtime\n"
        "import kubefuncs.transport.valkey, kubefuncs.transport.memory\n"
        "assert set(p.REGISTRY._names_to_collectors) == before, 'metrics registered'\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert result.returncode == 0, result.stderr
