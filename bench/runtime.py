"""Events/s through the function runtime on Valkey, next to a raw redis-py loop (not a test).

    .venv/bin/python bench/runtime.py [--events 20000] [--repeats 3] [--only runtime,raw]
                                      [--profile [PY_SPY]]

Starts its own ``valkey-server`` (no persistence) on a free loopback port and measures, in
one run, each scenario ``--repeats`` times, interleaved (the median is reported):

runtime        one publisher process (``Client.publish`` from ``--publish-concurrency``
               tasks) and one function process (``python -m kubefuncs runtime:noop``, an
               async no-op handler, ``KF_CONCURRENCY=--concurrency``): first publish until
               the channel has read all N and has nothing pending (``XINFO GROUPS``).
raw            one process doing XADD from the same number of tasks with a body of the same
               size, and one doing XREADGROUP (COUNT 100, BLOCK 2000) + one XACK per batch.
drain_runtime  the function process alone, draining N events already in the stream, from
drain_raw      its first ack to its last; and the same for the raw consumer loop. These
               leave the producers out (see bench/README.md for why that matters).
drain_cpu      the CPU time (user + system) per message of a function process draining N
               events, its start-up subtracted (not in the default set: ``--only``).
seq            sequential ``await client.publish()`` against one awaited raw ``XADD`` per
               message (same body size), in one process.

Both sides use redis-py with hiredis. Prints a table with the ratios against the targets
(runtime/raw >= 0.35, seq publish >= 0.8) and writes JSON to bench/results/.
``--profile`` samples the function process with py-spy (pass its path, e.g. from a scratch
venv) while it drains N events, and prints the top frames by self and inclusive time.

This module is also the function the runtime runs (``runtime:noop``, imported from bench/)
and the child processes (``--role``); importing it has no side effects.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _servers import bus_url, free_port, valkey  # bench/ is the script directory, so on sys.path

BENCH = Path(__file__).resolve().parent
PY = sys.executable
TOPIC = "bench"
FUNCTION = "noop"
STREAM = f"kf:topic:{TOPIC}"
RAW_STREAM = "raw:bench"
RAW_GROUP = "raw"
PAYLOAD = {"n": 1, "data": "x" * 100}
TARGET_RUNTIME = 0.35
TARGET_SEQ = 0.8


async def noop(payload: Any) -> None:
    """The benchmarked function: does nothing."""


# -- child processes: print "ready", wait for "go" on stdin, run, print one JSON line ------


def body_size() -> int:
    from kubefuncs import wire

    return len(wire.encode(wire.make(TOPIC, PAYLOAD)))


def redis_client(url: str) -> Any:
    from redis.asyncio import Redis

    return Redis.from_url(url)


def handshake() -> None:
    print("ready", flush=True)
    sys.stdin.readline()


def done(result: dict[str, Any]) -> None:
    print(json.dumps(result), flush=True)


async def spread(n: int, tasks: int, one: Callable[[], Any]) -> float:
    """Run ``one()`` n times from ``tasks`` concurrent loops; seconds taken."""

    async def loop(count: int) -> None:
        for _ in range(count):
            await one()

    shares = [n // tasks + (1 if i < n % tasks else 0) for i in range(tasks)]
    started = time.perf_counter()
    await asyncio.gather(*(loop(k) for k in shares))
    return time.perf_counter() - started


async def role_publish(url: str, n: int, tasks: int) -> None:
    from kubefuncs import Client

    async with Client(url) as client:
        handshake()
        seconds = await spread(n, tasks, lambda: client.publish(TOPIC, PAYLOAD))
    done({"publish_s": seconds})


async def role_raw_produce(url: str, n: int, tasks: int) -> None:
    redis = redis_client(url)
    await asyncio.gather(*(redis.ping() for _ in range(tasks)))  # open the pool up front
    fields = {"m": b"x" * body_size()}
    handshake()
    seconds = await spread(n, tasks, lambda: redis.xadd(RAW_STREAM, fields))
    await redis.aclose()
    done({"publish_s": seconds})


async def role_raw_consume(url: str, n: int) -> None:
    redis = redis_client(url)
    await redis.ping()
    handshake()
    count = 0
    while count < n:
        response = await redis.xreadgroup(RAW_GROUP, "c1", {RAW_STREAM: ">"}, count=100, block=2000)
        for _, entries in response or []:
            await redis.xack(RAW_STREAM, RAW_GROUP, *[entry_id for entry_id, _ in entries])
            count += len(entries)
    await redis.aclose()
    done({"acked": count})


async def role_seq(url: str, n: int) -> None:
    from kubefuncs import Client

    redis = redis_client(url)
    fields = {"m": b"x" * body_size()}
    async with Client(url) as client:
        for _ in range(min(n, 500)):  # warm both paths up
            await redis.xadd("seq:raw", fields)
            await client.publish("seq", PAYLOAD)
        handshake()
        raw = await timed(n, lambda: redis.xadd("seq:raw", fields))
        kf = await timed(n, lambda: client.publish("seq", PAYLOAD))
    await redis.aclose()
    done({"raw_per_s": n / raw, "publish_per_s": n / kf})


async def timed(n: int, one: Callable[[], Any]) -> float:
    started = time.perf_counter()
    for _ in range(n):
        await one()
    return time.perf_counter() - started


def run_role(args: argparse.Namespace) -> None:
    roles = {
        "publish": lambda: role_publish(args.url, args.events, args.publish_concurrency),
        "raw-produce": lambda: role_raw_produce(args.url, args.events, args.publish_concurrency),
        "raw-consume": lambda: role_raw_consume(args.url, args.events),
        "seq": lambda: role_seq(args.url, args.events),
    }
    asyncio.run(roles[args.role]())


# -- the orchestrating process ------------------------------------------------------------


def sync_redis(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url)


def wait_for(check: Callable[[], Any], what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:  # not up yet
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not come up within {timeout_s:g}s")


class Child:
    """A ``--role`` child of this script, driven over its stdin/stdout."""

    def __init__(self, url: str, role: str, events: int, tasks: int) -> None:
        self.proc = subprocess.Popen(
            [
                PY,
                __file__,
                "--role",
                role,
                "--url",
                url,
                "--events",
                str(events),
                "--publish-concurrency",
                str(tasks),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def ready(self) -> None:
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"child {self.proc.args} failed to start")

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def result(self) -> dict[str, Any]:
        out, _ = self.proc.communicate(timeout=300)
        return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def settled(r: Any, stream: str, group: str, n: int) -> bool:
    """True once ``group`` has read all ``n`` entries of ``stream`` and acked them."""
    for g in r.xinfo_groups(stream):
        if g["name"].decode() == group:
            return bool(g["entries-read"] == n and g["pending"] == 0)
    return False


def wait_settled(url: str, stream: str, group: str, n: int, timeout_s: float = 300) -> None:
    r = sync_redis(url)
    deadline = time.monotonic() + timeout_s
    while not settled(r, stream, group, n):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{group} did not settle {n} entries of {stream}")
        time.sleep(0.002)


def acked(r: Any, stream: str, group: str) -> int:
    for g in r.xinfo_groups(stream):
        if g["name"].decode() == group:
            return int(g["entries-read"] or 0) - int(g["pending"])
    return 0


def drain_rate(url: str, stream: str, group: str, n: int) -> float:
    """Events/s of a consumer draining a full stream, from its first ack to its last (so
    the consumer's start-up is left out)."""
    r = sync_redis(url)
    while (first := acked(r, stream, group)) <= 0:
        time.sleep(0.001)
    started = time.perf_counter()
    wait_settled(url, stream, group, n)
    return (n - first) / (time.perf_counter() - started)


def fill(url: str, stream: str, n: int, body: bytes) -> None:
    pipe = sync_redis(url).pipeline(transaction=False)
    for i in range(n):
        pipe.xadd(stream, {"m": body})
        if i % 1000 == 999:
            pipe.execute()
    pipe.execute()


def start_function(
    url: str, concurrency: int, health_port: int, target: str = "runtime:noop", **more: str
) -> subprocess.Popen[bytes]:
    options = {"read_count": more.pop("read_count")} if "read_count" in more else {}
    env = {
        **os.environ,
        **more,
        "KF_BUS_URL": bus_url(url, **options),
        "KF_TOPIC": TOPIC,
        "KF_FUNCTION_NAME": FUNCTION,
        "KF_CONCURRENCY": str(concurrency),
        "KF_HEALTH_ADDR": f"127.0.0.1:{health_port}",
        "KF_LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen(
        [PY, "-m", "kubefuncs", target], cwd=BENCH, env=env, stderr=subprocess.DEVNULL
    )


def http_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode()  # type: ignore[no-any-return]


def ok_count(metrics: str) -> float:
    for line in metrics.splitlines():
        if line.startswith("kubefuncs_invocations_total{") and 'outcome="ok"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def stop(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()


def wait_ready(health_port: int) -> None:
    url = f"http://127.0.0.1:{health_port}/readyz"
    wait_for(lambda: "ready" in http_get(url), "the function")


def measure_runtime(args: argparse.Namespace) -> dict[str, Any]:
    sync_redis(args.url).flushall()
    health = free_port()
    fn = start_function(args.url, args.concurrency, health)
    try:
        wait_ready(health)
        pub = Child(args.url, "publish", args.events, args.publish_concurrency)
        pub.ready()
        started = time.perf_counter()
        pub.go()
        wait_settled(args.url, STREAM, FUNCTION, args.events)
        seconds = time.perf_counter() - started
        published = pub.result()
        handled = ok_count(http_get(f"http://127.0.0.1:{health}/metrics"))
    finally:
        stop(fn)
    if handled != args.events:
        raise RuntimeError(f"the function handled {handled:g} of {args.events} events")
    return {"per_s": args.events / seconds, "s": seconds, **published}


def measure_raw(args: argparse.Namespace) -> dict[str, Any]:
    r = sync_redis(args.url)
    r.flushall()
    r.xgroup_create(RAW_STREAM, RAW_GROUP, id="0", mkstream=True)
    consumer = Child(args.url, "raw-consume", args.events, 1)
    producer = Child(args.url, "raw-produce", args.events, args.publish_concurrency)
    consumer.ready()
    producer.ready()
    started = time.perf_counter()
    consumer.go()
    producer.go()
    wait_settled(args.url, RAW_STREAM, RAW_GROUP, args.events)
    seconds = time.perf_counter() - started
    consumer.result()
    return {"per_s": args.events / seconds, "s": seconds, **producer.result()}


def measure_drain_runtime(args: argparse.Namespace) -> dict[str, Any]:
    from kubefuncs import wire

    sync_redis(args.url).flushall()
    fill(args.url, STREAM, args.events, wire.encode(wire.make(TOPIC, PAYLOAD)))
    fn = start_function(args.url, args.concurrency, free_port())
    try:
        return {"per_s": drain_rate(args.url, STREAM, FUNCTION, args.events)}
    finally:
        stop(fn)


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_drain_cpu(args: argparse.Namespace) -> dict[str, Any]:
    """CPU microseconds per message of the function process draining N events: steadier
    than events/s on a shared machine, where the wall time is partly waiting for a core.
    A first process up to /readyz measures the start-up's share (it also creates the
    group), then the stream is filled and a second process drains it."""
    from kubefuncs import wire

    sync_redis(args.url).flushall()
    health = free_port()
    fn = start_function(args.url, args.concurrency, health)
    try:
        wait_ready(health)
        start_up = cpu_s(fn.pid)
    finally:
        stop(fn)
    fill(args.url, STREAM, args.events, wire.encode(wire.make(TOPIC, PAYLOAD)))
    fn = start_function(args.url, args.concurrency, free_port())
    try:
        wait_settled(args.url, STREAM, FUNCTION, args.events)
        total = cpu_s(fn.pid)
    finally:
        stop(fn)
    return {"us_per_msg": (total - start_up) / args.events * 1e6}


def measure_drain_batch(args: argparse.Namespace) -> dict[str, Any]:
    """The batch handler draining a full stream: ``--batch`` per call, as many per read."""
    from kubefuncs import wire

    sync_redis(args.url).flushall()
    fill(args.url, STREAM, args.events, wire.encode(wire.make(TOPIC, PAYLOAD)))
    fn = start_function(
        args.url,
        args.batch_concurrency,
        free_port(),
        "batchfn:noop_batch",
        KF_BATCH=str(args.batch),
        read_count=str(args.batch),
    )
    try:
        return {"per_s": drain_rate(args.url, STREAM, FUNCTION, args.events)}
    finally:
        stop(fn)


PEERS = BENCH / "results" / "peers-venv"  # FastStream and py-spy, never the project's lock
PEER_PACKAGES = ("faststream[redis]==0.7.8", "hiredis", "py-spy==0.4.3")


def peers_python() -> Path:
    """The bench-only environment's python, created on first use (``uv`` or venv + pip)."""
    python = PEERS / "bin" / "python"
    if not python.exists():
        if shutil.which("uv"):
            subprocess.run(["uv", "venv", "-q", "--python", PY, str(PEERS)], check=True)
            install = ["uv", "pip", "install", "-q", "--python", str(python)]
        else:
            subprocess.run([PY, "-m", "venv", str(PEERS)], check=True)
            install = [str(python), "-m", "pip", "install", "-q"]
        subprocess.run([*install, *PEER_PACKAGES], check=True)
    return python


def measure_drain_faststream(args: argparse.Namespace, batch: int = 0) -> dict[str, Any]:
    """FastStream's stream subscriber draining N entries in its own message format."""
    python = peers_python()
    peer = str(BENCH / "peer_faststream.py")
    body = bytes.fromhex(subprocess.check_output([str(python), peer, "encode"], text=True))
    r = sync_redis(args.url)
    r.flushall()
    pipe = r.pipeline(transaction=False)
    for i in range(args.events):
        pipe.xadd(RAW_STREAM, {"__data__": body})
        if i % 1000 == 999:
            pipe.execute()
    pipe.execute()
    command = [str(python), peer, "consume", args.url, RAW_STREAM, RAW_GROUP]
    extra = [str(batch)] if batch else []
    proc = subprocess.Popen(
        [*command, *extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        return {"per_s": drain_rate(args.url, RAW_STREAM, RAW_GROUP, args.events)}
    finally:
        stop(proc)


def profile_drain(args: argparse.Namespace, out: Path) -> None:
    """Sample the function process with py-spy while it drains a full stream."""
    from kubefuncs import wire

    sync_redis(args.url).flushall()
    health = free_port()
    fn = start_function(args.url, args.concurrency, health)
    try:
        wait_ready(health)
        spy = start_py_spy(args.profile, fn.pid, out)
        fill(args.url, STREAM, args.events, wire.encode(wire.make(TOPIC, PAYLOAD)))
        wait_settled(args.url, STREAM, FUNCTION, args.events)
        spy.send_signal(signal.SIGINT)
        spy.wait(30)
    finally:
        stop(fn)


def measure_drain_raw(args: argparse.Namespace) -> dict[str, Any]:
    r = sync_redis(args.url)
    r.flushall()
    fill(args.url, RAW_STREAM, args.events, b"x" * body_size())
    r.xgroup_create(RAW_STREAM, RAW_GROUP, id="0")
    consumer = Child(args.url, "raw-consume", args.events, 1)
    consumer.ready()
    consumer.go()
    rate = drain_rate(args.url, RAW_STREAM, RAW_GROUP, args.events)
    consumer.result()
    return {"per_s": rate}


def measure_seq(args: argparse.Namespace) -> dict[str, Any]:
    sync_redis(args.url).flushall()
    child = Child(args.url, "seq", args.seq_events, 1)
    child.ready()
    child.go()
    result = child.result()
    return result


# -- profile -------------------------------------------------------------------------------


def start_py_spy(binary: str, pid: int, out: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [
            binary,
            "record",
            "--pid",
            str(pid),
            "--format",
            "raw",
            "--rate",
            "250",
            "--nonblocking",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)  # let it attach before the measured window starts
    return proc


def profile_summary(collapsed: Path, top: int = 25) -> dict[str, Any]:
    """Self and inclusive shares of the frames in a py-spy ``raw`` (collapsed) profile."""
    self_n: Counter[str] = Counter()
    incl_n: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        frames = [short(f) for f in stack.split(";")]
        total += n
        self_n[frames[-1]] += n
        for f in set(frames):
            incl_n[f] += n

    def share(c: Counter[str]) -> list[tuple[str, float]]:
        return [(f, round(100 * k / total, 1)) for f, k in c.most_common(top)]

    # frames on (nearly) every sample are the event loop's own call chain: leave them out
    root = max(incl_n.values(), default=0)
    incl_n = Counter({f: k for f, k in incl_n.items() if k < 0.95 * root})
    return {"samples": total, "self": share(self_n), "inclusive": share(incl_n)}


def short(frame: str) -> str:
    """``fn (path/to/file.py:12)`` -> ``fn (file.py)``: lines split one function's samples."""
    name, _, where = frame.partition(" (")
    return f"{name} ({Path(where.rstrip(')').rsplit(':', 1)[0]).name})"


# -- report --------------------------------------------------------------------------------


# (scenario, value key, label) rows and (label, numerator, denominator, target) ratios
ROWS = [
    ("runtime", "per_s", "runtime: publisher + function"),
    ("raw", "per_s", "raw: XADD + XREADGROUP/XACK"),
    ("drain_runtime", "per_s", "drain, function alone"),
    ("drain_raw", "per_s", "drain, raw XREADGROUP/XACK"),
    ("drain_cpu", "us_per_msg", "drain, function CPU us/message"),
    ("drain_batch", "per_s", "drain, batch handler"),
    ("drain_faststream", "per_s", "drain, FastStream per message"),
    ("drain_faststream_batch", "per_s", "drain, FastStream batch"),
    ("seq", "publish_per_s", "sequential client.publish()"),
    ("seq", "raw_per_s", "sequential raw XADD"),
]
RATIOS = [
    ("runtime / raw", ("runtime", "per_s"), ("raw", "per_s"), TARGET_RUNTIME),
    ("drain runtime / raw", ("drain_runtime", "per_s"), ("drain_raw", "per_s"), None),
    ("drain batch / raw", ("drain_batch", "per_s"), ("drain_raw", "per_s"), None),
    ("runtime / FastStream", ("drain_runtime", "per_s"), ("drain_faststream", "per_s"), None),
    ("batch / FS batch", ("drain_batch", "per_s"), ("drain_faststream_batch", "per_s"), None),
    ("publish / raw XADD", ("seq", "publish_per_s"), ("seq", "raw_per_s"), TARGET_SEQ),
]
MEASURES: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "raw": lambda a: measure_raw(a),
    "runtime": lambda a: measure_runtime(a),
    "drain_raw": lambda a: measure_drain_raw(a),
    "drain_runtime": lambda a: measure_drain_runtime(a),
    "drain_cpu": lambda a: measure_drain_cpu(a),
    "seq": lambda a: measure_seq(a),
    "drain_batch": lambda a: measure_drain_batch(a),
    "drain_faststream": lambda a: measure_drain_faststream(a),
    "drain_faststream_batch": lambda a: measure_drain_faststream(a, a.batch),
}
DEFAULT_SET = ("raw", "runtime", "drain_raw", "drain_runtime", "drain_batch", "seq")


def median_of(runs: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in runs))


def noise_pct(runs: list[dict[str, Any]], key: str) -> float:
    """(max - min) / median of the repeats, in percent."""
    values = [r[key] for r in runs]
    return 100 * (max(values) - min(values)) / statistics.median(values)


def paired_ratio(
    results: dict[str, list[dict[str, Any]]], num: tuple[str, str], den: tuple[str, str]
) -> float:
    """Median of the per-repeat ratios: repeat i of both ran next to each other."""
    pairs = zip(results[num[0]], results[den[0]], strict=True)
    return float(statistics.median(a[num[1]] / b[den[1]] for a, b in pairs))


def summarise(results: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    rows = {
        f"{name}.{key}": {
            "median": median_of(results[name], key),
            "runs": [r[key] for r in results[name]],
            "noise_pct": noise_pct(results[name], key),
        }
        for name, key, _ in ROWS
        if results.get(name)
    }
    ratios = {
        label: {"ratio": paired_ratio(results, n, d), "target": target}
        for label, n, d, target in RATIOS
        if results.get(n[0]) and results.get(d[0])
    }
    return {"rows": rows, "ratios": ratios}


def print_table(args: argparse.Namespace, s: dict[str, Any]) -> bool:
    print(
        f"\n{args.events} events ({args.seq_events} sequential), "
        f"{args.publish_concurrency} publishing tasks, KF_CONCURRENCY={args.concurrency}, "
        f"median of {args.repeats}"
    )
    print(f"{'scenario':<32}{'median/s':>10}  {'noise':>6}  runs")
    for name, key, label in ROWS:
        row = s["rows"].get(f"{name}.{key}")
        if row:
            runs = " ".join(f"{v:.0f}" for v in row["runs"])
            print(f"{label:<32}{row['median']:>10.0f}  {row['noise_pct']:>5.0f}%  [{runs}]")
    ok = True
    for label, r in s["ratios"].items():
        verdict = ""
        if r["target"] is not None:
            met = r["ratio"] >= r["target"]
            ok = ok and met
            verdict = f"(target >= {r['target']})  {'ok' if met else 'MISSED'}"
        print(f"{label:<22}{r['ratio']:>6.2f}x  {verdict}")
    print("noise = (max - min) / median of the repeats")
    return ok


def print_profile(p: dict[str, Any]) -> None:
    print(f"\nfunction process profile ({p['samples']} samples, py-spy, busy time only)")
    for title in ("self", "inclusive"):
        print(f"  top frames by {title} time:")
        for frame, pct in p[title]:
            print(f"    {pct:5.1f}%  {frame}")


def run_all(args: argparse.Namespace) -> dict[str, list[dict[str, Any]]]:
    names = args.only.split(",") if args.only else list(DEFAULT_SET)
    if args.peers and not args.only:
        names += ["drain_faststream", "drain_faststream_batch"]
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for i in range(args.repeats):  # interleaved, so a noisy neighbour hits all alike
        for name in names:
            results[name].append(MEASURES[name](args))
        line = ", ".join(f"{k} {json.dumps(v[-1])}" for k, v in results.items())
        print(f"run {i + 1}: {line}", file=sys.stderr)
    return results


def write_json(report: dict[str, Any]) -> Path:
    out_dir = BENCH / "results"
    out_dir.mkdir(exist_ok=True)
    path = out_dir / time.strftime("runtime-%Y%m%d-%H%M%S.json")
    path.write_text(json.dumps(report, indent=2))
    return path


def main(args: argparse.Namespace) -> int:
    with valkey() as server:
        url = server.url
        args.url = url
        results = run_all(args)
        profile = None
        if args.profile:
            out = Path(tempfile.mkdtemp(prefix="kf-spy-")) / "function.txt"
            profile_drain(args, out)
            profile = profile_summary(out)
    summary = summarise(results)
    ok = print_table(args, summary)
    if profile:
        print_profile(profile)
    settings = {k: v for k, v in vars(args).items() if k not in ("url", "role")}
    path = write_json(
        {"settings": settings, "summary": summary, "runs": results, "profile": profile}
    )
    print(f"\nwrote {path.relative_to(BENCH.parent)}")
    return 0 if ok else 1


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--events", type=int, default=20_000, help="events per run")
    p.add_argument("--seq-events", type=int, default=5_000, help="events per sequential run")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--publish-concurrency", type=int, default=50, help="publishing tasks")
    p.add_argument("--concurrency", type=int, default=100, help="KF_CONCURRENCY")
    p.add_argument("--batch", type=int, default=100, help="KF_BATCH of the batch handler")
    p.add_argument(
        "--batch-concurrency", type=int, default=4, help="KF_CONCURRENCY of the batch handler"
    )
    p.add_argument(
        "--peers",
        action="store_true",
        help="also FastStream's subscriber, from a bench-only venv in bench/results/",
    )
    p.add_argument(
        "--profile",
        nargs="?",
        const=shutil.which("py-spy") or "py-spy",
        metavar="PY_SPY",
        help="sample the function process with py-spy",
    )
    p.add_argument("--only", help=f"comma-separated subset of {','.join(MEASURES)}")
    p.add_argument("--role", help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    return p.parse_args(argv)


if __name__ == "__main__":
    ARGS = parse()
    if ARGS.role:
        run_role(ARGS)
        sys.exit(0)
    sys.exit(main(ARGS))
