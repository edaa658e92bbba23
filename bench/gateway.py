"""Gateway sync round trip on Valkey, next to two baselines, in one run (not a test).

    .venv/bin/python bench/gateway.py [--duration 8] [--connections 50] [--repeats 3]

Needs ``wrk`` (Debian: ``apt-get install -y wrk``) and ``valkey-server`` (or redis-server).
Each scenario runs alone on the machine, driven by ``wrk -t1 -cN --latency``:

(a) plain     an aiohttp handler returning a constant: the HTTP ceiling.
(b) minimal   the fastest hand-written aiohttp -> Valkey -> worker -> Valkey -> aiohttp
              round trip: request ids coalesced into one RPUSH per loop turn, a worker
              that pops batches and answers each batch with one RPUSH, one reply list
              read in batches. No envelope, no streams, no acks, no deadlines.
(c) gateway   ``python -m kubefuncs.gateway`` + ``python -m kubefuncs example.ping:pong``.
(d) gw+lean   the same gateway with a lean wire-speaking worker (one pipeline per batch:
              replies + one XACK), to separate the gateway's cost from the runtime's.

The scenarios run ``--repeats`` times, interleaved (a noisy neighbour hits all alike);
the median run of each is reported, with req/s, p50/p99, and the CPU time each process
of the scenario used per request (from /proc; steadier than req/s on a shared machine).
Prints the ratios against the targets (c >= 0.3 a, c >= 0.7 b, p99 < 10 ms, no errors).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _servers import bus_url, free_port, valkey  # bench/ is the script directory, so on sys.path

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


# -- (a) and (b): the baselines, run as child processes of this script -------------------


def serve_plain(port: int) -> None:
    from aiohttp import web

    async def pong(_: web.Request) -> web.Response:
        return web.Response(text="pong")

    app = web.Application()
    app.router.add_get("/{tail:.*}", pong)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def serve_minimal(port: int, redis_url: str) -> None:  # noqa: C901 - one self-contained baseline
    from aiohttp import web
    from redis.asyncio import Redis

    reply_key = b"bench:reply"
    pending: dict[bytes, asyncio.Future[bytes]] = {}
    queue: list[bytes] = []
    state: dict[str, Any] = {"n": 0, "flushing": False}
    redis = Redis.from_url(redis_url)

    async def flush() -> None:
        while queue:
            batch = queue[:]
            queue.clear()
            await redis.rpush("bench:req", *batch)
        state["flushing"] = False

    async def handler(_: web.Request) -> web.Response:
        state["n"] += 1
        rid = b"%d" % state["n"]
        future = asyncio.get_running_loop().create_future()
        pending[rid] = future
        queue.append(rid)
        if not state["flushing"]:
            state["flushing"] = True
            state["task"] = asyncio.ensure_future(flush())
        return web.Response(body=await future)

    async def read_replies() -> None:
        reader = Redis.from_url(redis_url)
        while True:
            first = await reader.blpop([reply_key], timeout=1)
            if not first:
                continue
            items = [first[1], *(await reader.lpop(reply_key, 1000) or [])]
            for item in items:
                rid, _, body = item.partition(b":")
                future = pending.pop(rid, None)
                if future is not None and not future.done():
                    future.set_result(body)

    async def start(app: web.Application):  # type: ignore[no-untyped-def]
        task = asyncio.create_task(read_replies())
        yield
        task.cancel()

    app = web.Application()
    app.cleanup_ctx.append(start)
    app.router.add_get("/{tail:.*}", handler)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def minimal_worker(redis_url: str) -> None:
    from redis.asyncio import Redis

    async def work() -> None:
        redis = Redis.from_url(redis_url)
        while True:
            first = await redis.blpop(["bench:req"], timeout=1)
            if not first:
                continue
            batch = [first[1], *(await redis.lpop("bench:req", 1000) or [])]
            await redis.rpush("bench:reply", *[rid + b":pong" for rid in batch])

    asyncio.run(work())


def lean_worker(redis_url: str, prefix: str) -> None:
    """A kubefuncs function in ~20 lines: read a batch, answer every request, ack the batch."""
    from kubefuncs import wire
    from kubefuncs.function import to_reply
    from redis.asyncio import Redis

    stream = f"{prefix}:topic:test"

    async def work() -> None:
        redis = Redis.from_url(redis_url)
        with contextlib.suppress(Exception):  # the group exists already
            await redis.xgroup_create(stream, "lean", "0", mkstream=True)
        while True:
            got = await redis.xreadgroup("lean", "c1", {stream: ">"}, count=512, block=1000)
            if not got:
                continue
            entries = got[0][1]
            pipe = redis.pipeline(transaction=False)
            for _, fields in entries:
                request = wire.decode(fields[b"m"])
                pipe.rpush(request.reply_to, wire.encode(to_reply(request, "pong")))
                pipe.pexpire(request.reply_to, 60_000)
            pipe.xack(stream, "lean", *[entry_id for entry_id, _ in entries])
            await pipe.execute()

    asyncio.run(work())


# -- orchestration -------------------------------------------------------------------------


@dataclass
class Result:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int = 0
    cpu_us: dict[str, float] | None = None  # CPU time per request, by process role


class Stack:
    """Child processes of one scenario; stopped with SIGTERM (SIGKILL after 5 s)."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []
        self.roles: dict[str, int] = {}  # role -> pid, for CPU accounting

    def start(
        self, args: list[str], env: dict[str, str] | None = None, *, role: str = ""
    ) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            args,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.procs.append(proc)
        if role:
            self.roles[role] = proc.pid
        return proc

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
        self.procs.clear()


def wait_http(url: str, expect: bytes, timeout_s: float = 15.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if expect in r.read():
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer {expect!r}")


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def parse_wrk(name: str, out: str) -> Result:
    def latency(pct: str) -> float:
        m = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        return float(m[1]) * _UNITS[m[2]] if m else float("nan")

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = 0
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        errors += int(non2xx[1])
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if sock:
        errors += sum(int(x) for x in sock.groups())
    return Result(name, float(rps[1]) if rps else 0.0, latency("50"), latency("99"), errors)


def wrk(url: str, connections: int, duration_s: int) -> str:
    args = ["wrk", "-t1", f"-c{connections}", f"-d{duration_s}s", "--latency", url]
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(
    name: str, url: str, connections: int, duration_s: int, roles: dict[str, int]
) -> Result:
    wrk(url, connections, 2)  # warm-up: connections, JIT-free caches, consumer groups
    before = {role: cpu_s(pid) for role, pid in roles.items()}
    out = wrk(url, connections, duration_s)
    after = {role: cpu_s(pid) for role, pid in roles.items()}
    result = parse_wrk(name, out)
    done = re.search(r"(\d+) requests in", out)
    result.requests = int(done[1]) if done else 0
    if result.requests:
        result.cpu_us = {
            role: (after[role] - before[role]) * 1e6 / result.requests for role in roles
        }
    cpu = "  ".join(f"{role} {us:.0f}" for role, us in (result.cpu_us or {}).items())
    print(
        f"  {name:<9} {result.rps:>9.0f} req/s   p50 {result.p50_ms:6.2f} ms   "
        f"p99 {result.p99_ms:6.2f} ms   errors {result.errors}   CPU us/req: {cpu}",
        flush=True,
    )
    return result


SCENARIOS = ("plain", "minimal", "gateway", "gw+lean")


def run_all(
    connections: int, duration_s: int, repeats: int, only: tuple[str, ...] = SCENARIOS
) -> dict[str, list[Result]]:
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (apt-get install -y wrk)")
    setups = {"plain": _plain, "minimal": _minimal, "gateway": _gateway, "gw+lean": _gateway_lean}
    results: dict[str, list[Result]] = {name: [] for name in only}
    with valkey() as server, tempfile.TemporaryDirectory(prefix="kf-bench-") as tmp_dir:
        redis_url, tmp = server.url, Path(tmp_dir)
        for i in range(repeats):  # interleaved, so a noisy neighbour hits all alike
            print(f"run {i + 1} of {repeats}", flush=True)
            for name in only:
                stack, port = Stack(), free_port()
                try:
                    setups[name](stack, port, redis_url, tmp)
                    stack.roles["valkey"] = server.pid
                    url = f"http://127.0.0.1:{port}/test/hello"
                    wait_http(url, b"pong")
                    results[name].append(measure(name, url, connections, duration_s, stack.roles))
                finally:
                    stack.stop()
    return results


def median_run(runs: list[Result]) -> Result:
    """The run with the median req/s (its latencies and CPU figures come with it)."""
    ordered = sorted(runs, key=lambda r: r.rps)
    return ordered[(len(ordered) - 1) // 2]


def _plain(stack: Stack, port: int, redis_url: str, tmp: Path) -> None:
    stack.start([PY, __file__, "--serve-plain", str(port)], role="server")


def _minimal(stack: Stack, port: int, redis_url: str, tmp: Path) -> None:
    stack.start([PY, __file__, "--minimal-worker", redis_url], role="worker")
    stack.start([PY, __file__, "--serve-minimal", str(port), redis_url], role="server")


def _gateway(stack: Stack, port: int, redis_url: str, tmp: Path) -> None:
    routes = tmp / "routes.yaml"
    routes.write_text("/test/: test\n")
    bus = bus_url(redis_url, prefix="bench")
    common = {"KF_BUS_URL": bus, "KF_LOG_LEVEL": "WARNING"}
    stack.start(
        [PY, "-m", "kubefuncs", "example.ping:pong"],
        {**common, "KF_CONCURRENCY": "256", "KF_HEALTH_ADDR": ""},
        role="function",
    )
    stack.start(
        [PY, "-m", "kubefuncs.gateway", str(routes)],
        {**common, "KF_GATEWAY_ADDR": f"127.0.0.1:{port}"},
        role="gateway",
    )


def _gateway_lean(stack: Stack, port: int, redis_url: str, tmp: Path) -> None:
    routes = tmp / "routes.yaml"
    routes.write_text("/test/: test\n")
    stack.start([PY, __file__, "--lean-worker", redis_url, "benchlean"], role="worker")
    stack.start(
        [PY, "-m", "kubefuncs.gateway", str(routes)],
        {
            "KF_BUS_URL": bus_url(redis_url, prefix="benchlean"),
            "KF_LOG_LEVEL": "WARNING",
            "KF_GATEWAY_ADDR": f"127.0.0.1:{port}",
        },
        role="gateway",
    )


def report(results: dict[str, list[Result]], connections: int) -> bool:
    by = {name: median_run(runs) for name, runs in results.items()}
    print(f"\nmedian of {len(next(iter(results.values())))} runs (req/s of every run in brackets):")
    for name, runs in results.items():
        r = by[name]
        cpu = "  ".join(f"{role} {us:.0f}" for role, us in (r.cpu_us or {}).items())
        every = " ".join(f"{x.rps:.0f}" for x in runs)
        print(
            f"  {name:<9} {r.rps:>7.0f} req/s  [{every}]  p50 {r.p50_ms:.1f} ms  "
            f"p99 {r.p99_ms:.1f} ms  CPU us/req: {cpu}"
        )
    if set(by) != set(SCENARIOS):
        return True  # --only: no ratios
    plain, minimal, gw, lean = by["plain"], by["minimal"], by["gateway"], by["gw+lean"]
    checks = [
        (f"gateway / plain   = {gw.rps / plain.rps:.2f}x", gw.rps / plain.rps >= 0.3, ">= 0.3x"),
        (
            f"gateway / minimal = {gw.rps / minimal.rps:.2f}x",
            gw.rps / minimal.rps >= 0.7,
            ">= 0.7x",
        ),
        (f"gateway p99       = {gw.p99_ms:.2f} ms", gw.p99_ms < 10, "< 10 ms"),
        (f"gateway errors    = {gw.errors}", gw.errors == 0, "0"),
    ]
    print(
        f"\n(gateway with a lean worker: {lean.rps / plain.rps:.2f}x plain, "
        f"{lean.rps / minimal.rps:.2f}x minimal, p99 {lean.p99_ms:.2f} ms)"
    )
    print(f"ratios at {connections} connections (target in brackets):")
    for text, ok, target in checks:
        print(f"  {text:<32} [{target}] {'ok' if ok else 'MISSED'}")
    return all(ok for _, ok, _ in checks)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=8, help="seconds per scenario")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved runs per scenario")
    parser.add_argument(
        "--only",
        default=",".join(SCENARIOS),
        help="comma-separated scenarios to run (ratios need all four)",
    )
    parser.add_argument("--serve-plain", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--serve-minimal", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--minimal-worker", help=argparse.SUPPRESS)
    parser.add_argument("--lean-worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_plain:
        serve_plain(args.serve_plain)
        return 0
    if args.serve_minimal:
        serve_minimal(int(args.serve_minimal[0]), args.serve_minimal[1])
        return 0
    if args.lean_worker:
        lean_worker(*args.lean_worker)
        return 0
    if args.minimal_worker:
        minimal_worker(args.minimal_worker)
        return 0
    print(f"wrk -t1 -c{args.connections} -d{args.duration}s, {os.cpu_count()} CPUs", flush=True)
    only = tuple(args.only.split(","))
    if not set(only) <= set(SCENARIOS):
        parser.error(f"--only takes some of {', '.join(SCENARIOS)}")
    results = run_all(args.connections, args.duration, args.repeats, only)
    return 0 if report(results, args.connections) else 1


if __name__ == "__main__":
    sys.exit(main())
