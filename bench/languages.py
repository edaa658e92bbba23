"""Events/s and request/reply round trips of the Python, Node and Go functions on Valkey,
side by side in one run (not a test).

    .venv/bin/python bench/languages.py [--events 20000] [--calls 2000] [--repeats 3]
                                        [--only python,node,go]

Starts its own ``valkey-server`` (no persistence). For each language, ``--repeats`` times,
interleaved (the median is reported), one function process with ``KF_CONCURRENCY=
--concurrency``:

drain    N events already in the stream, drained from the function's first ack to its
         last (the producer and start-up left out), as ``drain_runtime`` of runtime.py
seq      ``--calls`` sequential ``Client.call()`` from this process: p50 / p99 latency
par      ``--calls`` calls from ``--callers`` concurrent tasks: calls/s

The handler does nothing: Python runs bench/runtime.py's ``runtime:noop``; Node and Go run
their examples, whose only no-op is the conformance echo, so every body is
``{"conformance": "echo", "value": nil, "data": 100 x "x"}`` (Python ignores it) and their
replies are ``{"value": nil, "attempt": 1}`` where Python's is nil. The callers are this
Python process for all three. Writes JSON to bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from _servers import bus_url, free_port, valkey
from runtime import BENCH, FUNCTION, PY, STREAM, TOPIC, drain_rate, fill, stop, sync_redis

ROOT = BENCH.parent
PAYLOAD = {"conformance": "echo", "value": None, "data": "x" * 100}
LANGUAGES = ("python", "node", "go")


def command(language: str) -> list[str]:
    if language == "python":
        return [PY, "-m", "kubefuncs", "runtime:noop"]
    if language == "node":
        return [shutil.which("node") or "node", str(ROOT / "example" / "node" / "function.js")]
    built = subprocess.run([str(ROOT / "example" / "go" / "build")], capture_output=True, text=True)
    if built.returncode != 0:
        sys.exit(f"example/go/build failed: {built.stderr}")
    return [built.stdout.strip()]


def start(language: str, url: str, concurrency: int, health_port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "KF_BUS_URL": bus_url(url),
        "KF_TOPIC": TOPIC,
        "KF_FUNCTION_NAME": FUNCTION,
        "KF_CHANNEL": FUNCTION,
        "KF_CONCURRENCY": str(concurrency),
        "KF_HEALTH_ADDR": f"127.0.0.1:{health_port}",
        "KF_LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen(
        command(language),
        cwd=BENCH,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_ready(proc: subprocess.Popen[bytes], health_port: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{proc.args} exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{health_port}/readyz", timeout=1):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.05)
    sys.exit(f"{proc.args} was not ready within {timeout_s:g}s")


def body() -> bytes:
    from kubefuncs import wire

    return wire.encode(wire.make(TOPIC, PAYLOAD))


async def round_trips(url: str, calls: int, callers: int) -> dict[str, float]:
    from kubefuncs import Client

    async with Client(bus_url(url)) as client:
        for _ in range(20):  # warm up the inbox and the connections
            await client.call(TOPIC, PAYLOAD, timeout_s=10)
        latencies = []
        for _ in range(calls):
            started = time.perf_counter()
            await client.call(TOPIC, PAYLOAD, timeout_s=10)
            latencies.append(time.perf_counter() - started)

        async def caller(n: int) -> None:
            for _ in range(n):
                await client.call(TOPIC, PAYLOAD, timeout_s=30)

        shares = [calls // callers + (1 if i < calls % callers else 0) for i in range(callers)]
        started = time.perf_counter()
        await asyncio.gather(*(caller(n) for n in shares))
        par_s = time.perf_counter() - started
    cuts = statistics.quantiles(latencies, n=100)
    return {"p50_ms": 1000 * cuts[49], "p99_ms": 1000 * cuts[98], "par_per_s": calls / par_s}


def measure(language: str, args: argparse.Namespace) -> dict[str, float]:
    sync_redis(args.url).flushall()
    fill(args.url, STREAM, args.events, body())
    health = free_port()
    proc = start(language, args.url, args.concurrency, health)
    try:
        wait_ready(proc, health)
        drain = drain_rate(args.url, STREAM, FUNCTION, args.events)
        trips = asyncio.run(round_trips(args.url, args.calls, args.callers))
    finally:
        stop(proc)
    return {"drain_per_s": drain, **trips}


def summarise(runs: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, float]]:
    keys = ("drain_per_s", "p50_ms", "p99_ms", "par_per_s")
    return {
        lang: {k: statistics.median(r[k] for r in rs) for k in keys} for lang, rs in runs.items()
    }


def print_table(summary: dict[str, dict[str, float]], runs: dict[str, list[Any]]) -> None:
    print(
        f"{'language':<9}{'drain/s':>10}{'call p50':>10}{'call p99':>10}{'calls/s':>10}  drain runs"
    )
    for lang, s in summary.items():
        drains = " ".join(f"{r['drain_per_s']:.0f}" for r in runs[lang])
        print(
            f"{lang:<9}{s['drain_per_s']:>10.0f}{s['p50_ms']:>8.2f}ms{s['p99_ms']:>8.2f}ms"
            f"{s['par_per_s']:>10.0f}  [{drains}]"
        )


def main(args: argparse.Namespace) -> int:
    languages = args.only.split(",") if args.only else list(LANGUAGES)
    runs: dict[str, list[dict[str, float]]] = {lang: [] for lang in languages}
    with valkey() as server:
        args.url = server.url
        for i in range(args.repeats):  # interleaved, so a noisy neighbour hits all alike
            for lang in languages:
                runs[lang].append(measure(lang, args))
            print(
                f"run {i + 1}: {json.dumps({k: v[-1] for k, v in runs.items()})}", file=sys.stderr
            )
    summary = summarise(runs)
    print_table(summary, runs)
    out = BENCH / "results" / time.strftime("languages-%Y%m%d-%H%M%S.json")
    out.parent.mkdir(exist_ok=True)
    settings = {k: v for k, v in vars(args).items() if k != "url"}
    out.write_text(json.dumps({"settings": settings, "summary": summary, "runs": runs}, indent=2))
    print(f"\nwrote {out.relative_to(ROOT)}")
    return 0


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--events", type=int, default=20_000, help="events drained per run")
    p.add_argument("--calls", type=int, default=2_000, help="calls per run (each way)")
    p.add_argument("--callers", type=int, default=16, help="concurrent callers")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--concurrency", type=int, default=100, help="KF_CONCURRENCY")
    p.add_argument("--only", help=f"comma-separated subset of {','.join(LANGUAGES)}")
    return p.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main(parse()))
