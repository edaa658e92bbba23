"""Cold start of source functions: process start to /readyz, with the code mounted as a
ConfigMap volume lays it out (``..data`` symlinks), and the install step for one small
pure-Python dependency from a local wheel folder.

    .venv/bin/python bench/source.py [--runs 7]

Needs valkey-server (and node with example/node/node_modules for the Node row; a python
with pip for the install row). Prints a table and writes bench/results/source.json.
Byte-compiles site-packages and kubefuncs first, as the image is (bench/footprint.py says
why: otherwise every start compiles redis-py from source).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kubefuncs.functl import source

from bench._servers import bus_url, free_port, valkey
from tests.runtime.test_source import configmap_mount, tiny_wheel

ROOT = Path(__file__).resolve().parents[1]
PY_HANDLER = "def handle(payload):\n    return payload\n"
JS_HANDLER = "module.exports.handle = async (payload) => payload;\n"


def ready_s(argv: list[str], env: dict[str, str], port: int, timeout_s: float = 20.0) -> float:
    """Seconds from exec to the first 200 of /readyz."""
    started = time.monotonic()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while time.monotonic() - started < timeout_s:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                    if r.status == 200:
                        return time.monotonic() - started
            except OSError:
                time.sleep(0.005)
        raise RuntimeError(f"{argv} not ready in {timeout_s} s")
    finally:
        proc.terminate()
        proc.wait(10)


def python_run(url: str, mount: Path, *, mounted: bool = True) -> float:
    """``mounted=False``: the same module from PYTHONPATH, as an image function runs."""
    port = free_port()
    env = {
        **os.environ,
        "KF_BUS_URL": url,
        "KF_TOPIC": "bench-src",
        "KF_HEALTH_ADDR": f"127.0.0.1:{port}",
        **({"KF_SOURCE_DIR": str(mount)} if mounted else {"PYTHONPATH": str(mount)}),
    }
    return ready_s([sys.executable, "-m", "kubefuncs", "bench_src:handle"], env, port)


def node_run(url: str, mount: Path) -> float:
    port = free_port()
    env = {
        **os.environ,
        "KF_BUS_URL": url,
        "KF_TOPIC": "bench-src-node",
        "KF_HEALTH_ADDR": f"127.0.0.1:{port}",
        "KF_SOURCE_DIR": str(mount),
        "KF_HANDLER": "handler:handle",
    }
    node = shutil.which("node") or "node"
    return ready_s([node, str(ROOT / "example" / "node" / "function.js")], env, port)


def install_run(tmp: Path, python: str, n: int) -> float:
    wheels = tmp / "wheels"
    if not wheels.exists():
        tiny_wheel(wheels, "bench_dep", "1.0", "VALUE = 1\n")
    mount = tmp / f"install-src-{n}"
    mount.mkdir()
    configmap_mount(mount, {source.REQUIREMENTS_FILE: "bench_dep==1.0\n"})
    deps = tmp / f"deps-{n}"
    deps.mkdir()
    env = {
        **os.environ,
        "KF_SOURCE_DIR": str(mount),
        "KF_DEPS_DIR": str(deps),
        "KF_PIP_INDEX_URL": wheels.as_uri(),
    }
    subprocess.run([python, "-c", source.PIP_INSTALL], env=env, check=True, capture_output=True)
    return float((deps / source.INSTALL_TIME_FILE).read_text())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    compiled = [sysconfig.get_paths()["purelib"], str(ROOT / "client")]
    subprocess.run([sys.executable, "-m", "compileall", "-q", *compiled], check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    rows: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as folder, valkey() as server:
        tmp = Path(folder)
        url = bus_url(server.url)
        py = configmap_mount(tmp / "py", {"bench_src.py": PY_HANDLER})
        js = configmap_mount(tmp / "js", {"handler.js": JS_HANDLER})
        for _ in range(args.runs):  # interleaved: the machine's load hits both alike
            rows.setdefault("python, no dependencies", []).append(python_run(url, py))
            rows.setdefault("python, same module from the image", []).append(
                python_run(url, py, mounted=False)
            )
        if (ROOT / "example" / "node" / "node_modules").is_dir() and shutil.which("node"):
            rows["node, no dependencies"] = [node_run(url, js) for _ in range(args.runs)]
        python = shutil.which("python3.11") or shutil.which("python3")
        if python:
            rows["install: 1 wheel, local folder"] = [
                install_run(tmp, python, n) for n in range(args.runs)
            ]
    print(f"{'what':34} {'median s':>9} {'min s':>7} {'max s':>7}")
    for what, values in rows.items():
        print(f"{what:34} {statistics.median(values):9.3f} {min(values):7.3f} {max(values):7.3f}")
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / "source.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
