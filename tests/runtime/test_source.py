"""Source functions as deployed: ``python -m kubefuncs`` loading its handler from a
directory laid out as kubelet lays out a ConfigMap volume (``..data`` symlinks), with a
dependency installed by functl's init container script from a folder of wheels."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import shutil
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest
from kubefuncs import Client
from kubefuncs.functl import source

from tests.procs import Proc
from tests.servers import free_port

pytestmark = pytest.mark.real

FAST = "visibility_timeout_s=1&block_ms=100"
HANDLER = """\
from srcfn_pkg.words import shout
import srcfn_dep_marker  # noqa: F401  (only when a test installs it)

def handle(payload):
    return shout(payload)
"""


def configmap_mount(root: Path, files: dict[str, str]) -> Path:
    """``files`` under ``root`` as kubelet writes a ConfigMap volume: the content in a
    timestamped folder, ``..data`` pointing at it, each top-level entry a symlink into
    ``..data``."""
    stamped = root / "..2026_12_03_10_00_00.000000001"
    for rel, text in files.items():
        (stamped / rel).parent.mkdir(parents=True, exist_ok=True)
        (stamped / rel).write_text(text)
    (root / "..data").symlink_to(stamped.name)
    for top in {rel.split("/")[0] for rel in files}:
        (root / top).symlink_to(f"..data/{top}")
    return root


def tiny_wheel(folder: Path, name: str, version: str, module: str) -> Path:
    """A pure-Python wheel built by hand (no `wheel` package offline): ``module`` as
    ``name/__init__.py``, with METADATA, WHEEL and a RECORD pip checks."""
    folder.mkdir(parents=True, exist_ok=True)
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": module,
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: kubefuncs-tests\n"
        "Root-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
    record.append(f"{dist}/RECORD,,")
    files[f"{dist}/RECORD"] = "\n".join(record) + "\n"
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for path, text in files.items():
            z.writestr(path, text)
    return wheel


def python_with_pip() -> str:
    """An interpreter that has pip, as the install image has (the test venv may not)."""
    # the venv's python has no pip (uv makes it without); the interpreter it was made from,
    # and the system's, usually do
    base = getattr(sys, "_base_executable", None)
    for candidate in (sys.executable, base, shutil.which("python3"), "/usr/bin/python3"):
        if not candidate:
            continue
        probe = subprocess.run([candidate, "-m", "pip", "--version"], capture_output=True)
        if probe.returncode == 0:
            return candidate
    if os.environ.get("CI") == "true":
        pytest.fail("no python with pip found for the install step")
    pytest.skip("no python with pip found for the install step")


def start(url: str, mount: Path, **env: str) -> tuple[Proc, int]:
    port = free_port()
    proc = Proc(
        ["kubefuncs", "srcfn_handler:handle"],
        {
            "KF_BUS_URL": url,
            "KF_TOPIC": "srcfn",
            "KF_FUNCTION_NAME": "srcfn",
            "KF_HEALTH_ADDR": f"127.0.0.1:{port}",
            "KF_SOURCE_DIR": str(mount),
            "KF_LOG_FORMAT": "text",
            **env,
        },
    )
    return proc, port


def metrics(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith(("kubefuncs_cold_start_seconds{", "kubefuncs_install_seconds{")):
            out[line.split("{")[0]] = float(line.rsplit(" ", 1)[1])
    return out


def source_files(handler: str) -> dict[str, str]:
    return {
        "srcfn_handler.py": handler,
        "srcfn_pkg/__init__.py": "",
        "srcfn_pkg/words.py": "def shout(x):\n    return str(x).upper() + '!'\n",
    }


async def test_the_runtime_loads_a_handler_from_a_configmap_style_mount(
    valkey_url: str, tmp_path: Path, procs: list[Proc]
) -> None:
    # Given a source directory mounted as a ConfigMap volume (symlinks through ..data)
    handler = HANDLER.replace(
        "import srcfn_dep_marker  # noqa: F401  (only when a test installs it)\n", ""
    )
    mount = configmap_mount(tmp_path / "source", source_files(handler))
    assert (mount / "srcfn_pkg").is_symlink()
    url = f"{valkey_url}&{FAST}"
    # When the stock runtime starts with KF_SOURCE_DIR pointing at it
    proc, port = start(url, mount)
    procs.append(proc)
    proc.wait_http(f"http://127.0.0.1:{port}/readyz")
    # Then it serves the handler, imports inside the source included
    async with Client(url) as c:
        assert await c.call("srcfn", "hi", timeout_s=10) == "HI!"
    assert metrics(port)["kubefuncs_install_seconds"] == 0.0
    assert proc.stop() == 0


async def test_a_dependency_installed_from_a_wheel_folder_is_importable(
    valkey_url: str, tmp_path: Path, procs: list[Proc]
) -> None:
    # Given a wheel folder holding the one dependency, and a source requiring it
    wheels = tmp_path / "wheels"
    tiny_wheel(wheels, "srcfn_dep_marker", "1.0", "VALUE = 'installed'\n")
    files = source_files(
        HANDLER.replace("return shout(payload)", "return shout(payload) + srcfn_dep_marker.VALUE")
    )
    files[source.REQUIREMENTS_FILE] = "srcfn_dep_marker==1.0\n"
    mount = configmap_mount(tmp_path / "source", files)
    deps = tmp_path / "deps"
    deps.mkdir()
    # When the init container's script runs (the install image's python, file:// index)
    env = {
        **os.environ,
        "KF_SOURCE_DIR": str(mount),
        "KF_DEPS_DIR": str(deps),
        "KF_PIP_INDEX_URL": wheels.as_uri(),
    }
    done = subprocess.run(
        [python_with_pip(), "-c", source.PIP_INSTALL],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    installed_s = float((deps / source.INSTALL_TIME_FILE).read_text())
    assert (deps / "srcfn_dep_marker" / "__init__.py").is_file()
    # Then the function imports it, and reports the install time in its cold start
    url = f"{valkey_url}&{FAST}"
    proc, port = start(url, mount, KF_DEPS_DIR=str(deps))
    procs.append(proc)
    proc.wait_http(f"http://127.0.0.1:{port}/readyz")
    async with Client(url) as c:
        assert await c.call("srcfn", "hi", timeout_s=10) == "HI!installed"
    figures = metrics(port)
    assert figures["kubefuncs_install_seconds"] == pytest.approx(installed_s, abs=1e-3)
    assert figures["kubefuncs_cold_start_seconds"] >= installed_s
    assert proc.stop() == 0


def test_a_failing_install_exits_non_zero_and_writes_no_time(tmp_path: Path) -> None:
    # Given a requirement the wheel folder does not hold
    mount = configmap_mount(tmp_path / "source", {source.REQUIREMENTS_FILE: "absent-pkg==9\n"})
    (tmp_path / "wheels").mkdir()
    deps = tmp_path / "deps"
    deps.mkdir()
    env = {
        **os.environ,
        "KF_SOURCE_DIR": str(mount),
        "KF_DEPS_DIR": str(deps),
        "KF_PIP_INDEX_URL": (tmp_path / "wheels").as_uri(),
    }
    done = subprocess.run(
        [python_with_pip(), "-c", source.PIP_INSTALL], env=env, capture_output=True, timeout=120
    )
    # Then the init container fails (the pod does not start) and reports no install time
    assert done.returncode != 0
    assert not (deps / source.INSTALL_TIME_FILE).exists()


NODE_HANDLER = """\
'use strict';
const { encode } = require('@msgpack/msgpack');  // found through NODE_PATH (the deps dir)
const { suffix } = require('./lib/suffix');
module.exports.handle = async (payload) => `${payload}${suffix}:${encode(1).length}`;
"""


ESM_HANDLER = """\
import { encode } from '@msgpack/msgpack';
import { suffix } from './lib/suffix.mjs';
export const handle = async (payload) => `${payload}${suffix}:${encode(1).length}`;
"""

CJS_SUFFIX = "module.exports.suffix = '!';\n"
ESM_SUFFIX = "export const suffix = '!';\n"
NODE_SOURCES = {
    "commonjs": ({"handler.js": NODE_HANDLER, "lib/suffix.js": CJS_SUFFIX}, "handler"),
    "es module": ({"handler.mjs": ESM_HANDLER, "lib/suffix.mjs": ESM_SUFFIX}, "handler.mjs"),
    "type module": (
        {
            "package.json": '{"type": "module"}\n',
            "handler.js": ESM_HANDLER.replace("suffix.mjs", "suffix.js"),
            "lib/suffix.js": ESM_SUFFIX,
        },
        "handler.js",
    ),
}


@pytest.mark.parametrize("kind", list(NODE_SOURCES))
async def test_the_node_runtime_loads_a_source_handler_from_a_configmap_style_mount(
    valkey_url: str, tmp_path: Path, kind: str
) -> None:
    from tests.conformance.functions import NODE_DIR, require_node_modules
    from tests.servers import require_binary

    node = require_binary("node")
    require_node_modules()
    # Given a Node source mounted as a ConfigMap volume, its dependency in a deps folder
    files, module = NODE_SOURCES[kind]
    mount = configmap_mount(tmp_path / "source", files)
    port = free_port()
    url = f"{valkey_url}&{FAST}"
    env = {
        **os.environ,
        "KF_BUS_URL": url,
        "KF_TOPIC": "srcnode",
        "KF_HEALTH_ADDR": f"127.0.0.1:{port}",
        "KF_SOURCE_DIR": str(mount),
        "KF_HANDLER": f"{module}:handle",
        "NODE_PATH": str(NODE_DIR / "node_modules"),
    }
    # When the stock Node runtime starts as functl runs it
    proc, log = start_node(node, env, tmp_path)
    try:
        await asyncio.to_thread(wait_ready, port, proc, log)
        # Then it serves the mounted handler instead of its own
        async with Client(url) as c:
            assert await c.call("srcnode", "hi", timeout_s=10) == "hi!:1"
    finally:
        proc.terminate()
        await asyncio.to_thread(proc.wait, 10)


def start_node(
    node: str, env: dict[str, str], folder: Path
) -> tuple[subprocess.Popen[bytes], Path]:
    from tests.conformance.functions import NODE_DIR

    log = folder / "node.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [node, str(NODE_DIR / "function.js")], env=env, cwd=folder, stdout=out, stderr=out
        )
    return proc, log


def test_the_node_runtime_refuses_a_handler_it_cannot_load(tmp_path: Path) -> None:
    from tests.conformance.functions import NODE_DIR, require_node_modules
    from tests.servers import require_binary

    node = require_binary("node")
    require_node_modules()
    mount = configmap_mount(tmp_path / "source", {"handler.js": "module.exports.other = 1;\n"})
    env = {
        **os.environ,
        "KF_TOPIC": "x",
        "KF_SOURCE_DIR": str(mount),
        "KF_HANDLER": "handler:handle",
    }
    done = subprocess.run(
        [node, str(NODE_DIR / "function.js")], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2
    assert "exports no function handle" in done.stderr


def wait_ready(
    port: int, proc: subprocess.Popen[bytes], log: Path, timeout_s: float = 15.0
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"node exited {proc.returncode}: {log.read_text()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"node function not ready in time: {log.read_text()}")
