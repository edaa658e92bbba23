"""Gateway latency at a fixed offered rate, below capacity (not a test).

    .venv/bin/python bench/latency.py [--duration 6] [--repeats 3] [--only gateway,minimal]

Needs ``wrk``, ``hey`` (Debian: ``apt-get install -y wrk hey``) and ``valkey-server``. For
each scenario of ``bench/gateway.py`` (plain, minimal, gateway), in each repeat, alone on
the machine:

1. capacity: ``wrk -t1 -c50`` (closed loop, as gateway.py), req/s;
2. ``wrk -t1 -c8``: the latency of a light closed loop (p50);
3. open loop at 25 % and 50 % of that run's capacity, p50, p99 and p99.9: by default
   ``bench/openloop.py`` (evenly spaced requests, latency counted from when each was due);
   ``--generator hey``: ``hey -c 50 -q RATE/50 -z Ns -o csv`` (each of 50 workers held to
   its share of the rate; its workers tick together, so requests come in clumps of 50).

Scenarios and repeats are interleaved; medians over the repeats are reported.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _servers import free_port, valkey

import gateway as gw  # bench/ is the script directory

SETUPS = {"plain": gw._plain, "minimal": gw._minimal, "gateway": gw._gateway}
WORKERS = 50


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def open_loop(url: str, rate: float, duration_s: int) -> dict[str, Any]:
    """``hey`` at ``rate`` req/s in all: p50/p99/p999 in ms, the rate it achieved, errors."""
    args = ["hey", "-c", str(WORKERS), "-q", f"{rate / WORKERS:.3f}", "-z", f"{duration_s}s",
            "-o", "csv", url]  # fmt: skip
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    times = [float(r["response-time"]) * 1000 for r in rows if r["status-code"] == "200"]
    return {
        "offered": rate,
        "achieved": len(rows) / duration_s,
        "errors": len(rows) - len(times),
        "p50_ms": quantile(times, 0.50),
        "p99_ms": quantile(times, 0.99),
        "p999_ms": quantile(times, 0.999),
    }


def open_loop_python(url: str, rate: float, duration_s: int) -> dict[str, Any]:
    """``bench/openloop.py`` in a process of its own: evenly spaced requests."""
    args = [gw.PY, str(Path(__file__).with_name("openloop.py")), url, str(rate), str(duration_s)]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return json.loads(out)  # type: ignore[no-any-return]


GENERATORS = {"python": open_loop_python, "hey": open_loop}


def one(
    name: str, url: str, duration_s: int, roles: dict[str, int], generator: str
) -> dict[str, Any]:
    capacity = gw.measure(name, url, 50, duration_s, roles)
    light = gw.measure(name, url, 8, duration_s, roles)
    run: dict[str, Any] = {"capacity": capacity.rps, "c8_p50_ms": light.p50_ms}
    for share in (0.25, 0.5):
        load = GENERATORS[generator]
        r = run[f"at{int(share * 100)}"] = load(url, share * capacity.rps, duration_s)
        print(f"  {name:<9} at {share:.0%} ({r['offered']:.0f}/s, got {r['achieved']:.0f}/s): "
              f"p50 {r['p50_ms']:.2f} p99 {r['p99_ms']:.2f} p999 {r['p999_ms']:.2f} ms, "
              f"{r['errors']} errors", flush=True)  # fmt: skip
    return run


def run_all(
    names: list[str], duration_s: int, repeats: int, generator: str
) -> dict[str, list[dict[str, Any]]]:
    results: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    with valkey() as server, tempfile.TemporaryDirectory(prefix="kf-lat-") as tmp:
        for i in range(repeats):
            print(f"run {i + 1} of {repeats}", flush=True)
            for name in names:
                stack, port = gw.Stack(), free_port()
                try:
                    SETUPS[name](stack, port, server.url, Path(tmp))
                    stack.roles["valkey"] = server.pid
                    url = f"http://127.0.0.1:{port}/test/hello"
                    gw.wait_http(url, b"pong")
                    results[name].append(one(name, url, duration_s, stack.roles, generator))
                finally:
                    stack.stop()
    return results


def median(runs: list[dict[str, Any]], *keys: str) -> float:
    def get(r: dict[str, Any]) -> float:
        for k in keys:
            r = r[k]
        return float(r)  # type: ignore[arg-type]

    return float(statistics.median(get(r) for r in runs))


def report(results: dict[str, list[dict[str, Any]]]) -> None:
    print(f"\n{'scenario':<9}{'capacity':>10}{'c8 p50':>9}   "
          f"{'25%: p50 / p99 / p999 ms':>26}   {'50%: p50 / p99 / p999 ms':>26}")  # fmt: skip
    for name, runs in results.items():
        cells = [
            " / ".join(f"{median(runs, at, k):.2f}" for k in ("p50_ms", "p99_ms", "p999_ms"))
            for at in ("at25", "at50")
        ]
        print(f"{name:<9}{median(runs, 'capacity'):>10.0f}{median(runs, 'c8_p50_ms'):>7.2f}ms"
              f"   {cells[0]:>26}   {cells[1]:>26}")  # fmt: skip
    print("medians over the repeats; capacity: wrk -c50 req/s; c8: wrk -c8")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--duration", type=int, default=6, help="seconds per measurement")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--only", default=",".join(SETUPS), help="comma-separated scenarios")
    p.add_argument(
        "--generator", choices=GENERATORS, default="python", help="the open-loop generator"
    )
    args = p.parse_args()
    for tool in ("wrk", "hey") if args.generator == "hey" else ("wrk",):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed (apt-get install -y {tool})")
    report(run_all(args.only.split(","), args.duration, args.repeats, args.generator))
    return 0


if __name__ == "__main__":
    sys.exit(main())
