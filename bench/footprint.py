"""A function's start-up and footprint (not a test): exec -> /readyz, idle RSS, imports.

    .venv/bin/python bench/footprint.py [--repeats 7] [--target noopfn:noop] [TREE ...]

Starts its own ``valkey-server``, then ``python -m kubefuncs noopfn:noop`` (a module that
imports only kubefuncs; ``--target runtime:noop`` is the one of older runs) ``--repeats``
times; reports the medians of: the time from exec until ``/readyz``
answers 200, the CPU time the process had used by then (user + system: steadier than the
wall time on a shared machine, where other work stretches the wall time), its resident
set (``VmRSS``) one second after it became ready, the modules it loaded, and which of
aiohttp, tornado, the NSQ client, redis-py, OpenTelemetry and prometheus_client are among
them. Each TREE
(a directory holding a ``kubefuncs`` package, put first on ``PYTHONPATH``) is measured in
turn, interleaved, for A/B runs; none means the installed tree.

Everything is byte-compiled first (``compileall`` of site-packages, kubefuncs and each
TREE), as in the image (``UV_COMPILE_BYTECODE=1``, read-only root filesystem): without
it, with ``PYTHONDONTWRITEBYTECODE`` set as on the bench machine, every start compiles
redis-py and kubefuncs from source, ~2x the CPU time and ~15 MB more RSS (``--no-compile``
measures that).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import sysconfig
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from _servers import bus_url, free_port, valkey  # bench/ is the script directory

BENCH = Path(__file__).resolve().parent
HEAVY = {"aiohttp", "tornado", "nsq", "redis", "opentelemetry", "prometheus_client"}
PROBE = (
    "import sys, runpy, os; sys.argv = ['kubefuncs', os.environ['FOOTPRINT_TARGET']];"
    "import atexit, os, json;"
    "out = os.environ['FOOTPRINT_OUT'];"
    "atexit.register(lambda: open(out, 'w').write(json.dumps(sorted(sys.modules))));"
    "runpy.run_module('kubefuncs', run_name='__main__')"
)


def readyz(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` so far (clock ticks, 10 ms here)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def compile_all(trees: list[str | None]) -> None:
    """Byte-compile what the function imports, as the image build does."""
    dirs = [sysconfig.get_paths()["purelib"], str(BENCH.parent / "client"), str(BENCH)]
    dirs += [t for t in trees if t]
    subprocess.run([sys.executable, "-m", "compileall", "-q", *dirs], check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip


def one(url: str, tree: str | None, out: Path, target: str) -> dict[str, Any]:
    port = free_port()
    env = {**os.environ, "KF_BUS_URL": bus_url(url), "KF_TOPIC": "fp", "KF_LOG_LEVEL": "WARNING",
           "KF_HEALTH_ADDR": f"127.0.0.1:{port}", "FOOTPRINT_OUT": str(out),
           "FOOTPRINT_TARGET": target}  # fmt: skip
    if tree:
        env["PYTHONPATH"] = tree
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", PROBE], cwd=BENCH, env=env)
    try:
        while not readyz(port):
            if proc.poll() is not None or time.perf_counter() - started > 30:
                raise RuntimeError(f"the function did not become ready (exit {proc.poll()})")
            time.sleep(0.005)
        ready_s = time.perf_counter() - started
        ready_cpu_s = cpu_s(proc.pid)
        time.sleep(1.0)
        rss = rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)
    modules = json.loads(out.read_text())
    heavy = sorted({m.split(".")[0] for m in modules} & HEAVY)
    return {
        "ready_s": ready_s,
        "cpu_s": ready_cpu_s,
        "rss_mb": rss,
        "modules": len(modules),
        "loaded": heavy,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--target", default="noopfn:noop", help="MODULE:FUNCTION from bench/")
    p.add_argument("--no-compile", action="store_true", help="measure without compiling first")
    p.add_argument("trees", nargs="*")
    args = p.parse_args()
    trees: list[str | None] = list(args.trees) or [None]
    if not args.no_compile:
        compile_all(trees)
    runs: dict[str, list[dict[str, Any]]] = {str(t): [] for t in trees}
    out = Path(f"/tmp/kf-footprint-{os.getpid()}.json")
    with valkey() as server:
        for _ in range(args.repeats):
            for tree in trees:
                runs[str(tree)].append(one(server.url, tree, out, args.target))
    print(f"{'tree':<28}{'exec->/readyz':>14}{'CPU':>9}{'idle RSS':>10}{'modules':>9}  loaded")
    for tree, rs in runs.items():
        ready = statistics.median(r["ready_s"] for r in rs)
        cpu = statistics.median(r["cpu_s"] for r in rs)
        rss = statistics.median(r["rss_mb"] for r in rs)
        mods = statistics.median(r["modules"] for r in rs)
        loaded = ",".join(rs[0]["loaded"])
        print(f"{tree:<28}{ready:>12.3f} s{cpu:>7.2f} s{rss:>7.1f} MB{mods:>9.0f}  {loaded}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
