"""Events/s through the runtime on a 3-master Valkey Cluster next to one valkey-server, and
how topics spread over the cluster's shards (not a test).

    .venv/bin/python bench/cluster.py [--events 20000] [--repeats 3] [--topics 30,100,1000]

Starts, on loopback, one valkey-server and one Valkey Cluster of 3 masters with a replica
each (tests/valkey_cluster.py), no persistence on either, and measures in one run, each
scenario ``--repeats`` times with the two buses interleaved (medians reported):

runtime  one publisher process (``Client.publish`` from 50 concurrent tasks) and one
         function process (``python -m kubefuncs runtime:noop``, KF_CONCURRENCY=100):
         from the first publish until the channel has read all N and has nothing pending.
drain    the function process alone, draining N events already in its stream, from its
         first ack to its last.

Both on one topic: one function consumes one topic, whose keys all live on one shard (the
topic is their hash tag), so the cluster figure is the cost of the cluster client (slot
routing, one connection per node), not a spread of the work. The spread is the second
table: for N topic names ``t-0`` .. ``t-<N-1>``, how many streams each master serves.
Writes JSON to bench/results/.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import runtime as rt  # bench/ is the script directory, so on sys.path
from _servers import free_port, valkey

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests/valkey_cluster.py starts the cluster

from tests.valkey_cluster import ValkeyCluster  # noqa: E402

OPTIONS = "block_ms=2000"


def sync_client(url: str) -> Any:
    """A synchronous redis-py client of a bus URL (one server or a cluster)."""
    import redis
    from redis.cluster import ClusterNode, RedisCluster

    if "+cluster://" in url:
        hosts = url.split("://", 1)[1].split("/", 1)[0].split(",")
        nodes = [ClusterNode(h.rsplit(":", 1)[0], int(h.rsplit(":", 1)[1])) for h in hosts]
        return RedisCluster(startup_nodes=nodes)
    return redis.Redis.from_url(url.split("?")[0].replace("valkey://", "redis://"))


def stream_key(url: str, prefix: str) -> str:
    return (
        f"{prefix}:topic:{{{rt.TOPIC}}}" if "+cluster://" in url else f"{prefix}:topic:{rt.TOPIC}"
    )


def settled(r: Any, stream: str, n: int) -> bool:
    for g in r.xinfo_groups(stream):
        if g["name"].decode() == rt.FUNCTION:
            return bool(g["entries-read"] == n and g["pending"] == 0)
    return False


def acked(r: Any, stream: str) -> int:
    for g in r.xinfo_groups(stream):
        if g["name"].decode() == rt.FUNCTION:
            return int(g["entries-read"] or 0) - int(g["pending"])
    return 0


def wait_settled(r: Any, stream: str, n: int, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while not settled(r, stream, n):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{rt.FUNCTION} did not settle {n} entries of {stream}")
        time.sleep(0.002)


def run_url(base: str, run: str) -> tuple[str, str]:
    prefix = f"b{run}"
    sep = "/?" if "+cluster://" in base else "?"
    return f"{base}{sep}prefix={prefix}&{OPTIONS}", prefix


def measure_runtime(base: str, run: str, args: argparse.Namespace) -> dict[str, Any]:
    url, prefix = run_url(base, run)
    r = sync_client(url)
    health = free_port()
    fn = rt.start_function(url, 100, health)
    try:
        rt.wait_ready(health)
        pub = rt.Child(url, "publish", args.events, 50)
        pub.ready()
        started = time.perf_counter()
        pub.go()
        wait_settled(r, stream_key(url, prefix), args.events)
        seconds = time.perf_counter() - started
        pub.result()
    finally:
        rt.stop(fn)
        r.close()
    return {"per_s": args.events / seconds}


def measure_drain(base: str, run: str, args: argparse.Namespace) -> dict[str, Any]:
    from kubefuncs import wire

    url, prefix = run_url(base, run)
    r = sync_client(url)
    stream = stream_key(url, prefix)
    body = wire.encode(wire.make(rt.TOPIC, rt.PAYLOAD))
    pipe = r.pipeline(transaction=False)
    for i in range(args.events):
        pipe.xadd(stream, {"m": body})
        if i % 1000 == 999:
            pipe.execute()
    pipe.execute()
    fn = rt.start_function(url, 100, free_port())
    try:
        while (first := acked(r, stream)) <= 0:
            time.sleep(0.001)
        started = time.perf_counter()
        wait_settled(r, stream, args.events)
        return {"per_s": (args.events - first) / (time.perf_counter() - started)}
    finally:
        rt.stop(fn)
        r.close()


MEASURES: dict[str, Callable[[str, str, argparse.Namespace], dict[str, Any]]] = {
    "runtime": measure_runtime,
    "drain": measure_drain,
}


def spread(cluster: ValkeyCluster, counts: list[int]) -> dict[int, dict[int, int]]:
    """For each N: how many of N topics' streams each master serves (by port)."""
    from redis.cluster import RedisCluster

    r = RedisCluster(host="127.0.0.1", port=cluster.master_ports()[0])
    try:
        out = {}
        for n in counts:
            ports = Counter(int(r.get_node_from_key(f"kf:topic:{{t-{i}}}").port) for i in range(n))
            out[n] = {port: ports.get(port, 0) for port in sorted(cluster.master_ports())}
        return out
    finally:
        r.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--topics", default="30,100,1000")
    args = parser.parse_args()
    cluster = ValkeyCluster()
    cluster.start()
    results: dict[str, dict[str, list[float]]] = {
        m: {"standalone": [], "cluster": []} for m in MEASURES
    }
    try:
        with valkey() as server:
            buses = {
                "standalone": server.url.replace("redis://", "valkey://"),
                "cluster": cluster.url,
            }
            for i in range(args.repeats):
                for name, measure in MEASURES.items():
                    order = list(buses.items()) if i % 2 == 0 else list(buses.items())[::-1]
                    for bus, base in order:
                        got = measure(base, f"{name}{bus}{i}", args)
                        results[name][bus].append(got["per_s"])
                        print(
                            f"  {name:8s} {bus:10s} run {i + 1}: {got['per_s']:8.0f}/s", flush=True
                        )
        shares = spread(cluster, [int(n) for n in args.topics.split(",")])
    finally:
        cluster.close()
    report(results, shares, args)


def report(
    results: dict[str, dict[str, list[float]]],
    shares: dict[int, dict[int, int]],
    args: argparse.Namespace,
) -> None:
    print(f"\n{args.events} events per run, median of {args.repeats} (runs in brackets)\n")
    print(f"    {'scenario':10s} {'standalone':>11s} {'cluster':>9s}  cluster/standalone")
    for name, buses in results.items():
        one, many = statistics.median(buses["standalone"]), statistics.median(buses["cluster"])
        runs = " ".join(f"{v:.0f}" for v in buses["cluster"])
        alone = " ".join(f"{v:.0f}" for v in buses["standalone"])
        print(f"    {name:10s} {one:11.0f} {many:9.0f}  {many / one:.2f}x  (target >= 0.8)"
              f"  [{alone}] [{runs}]")  # fmt: skip
    print("\n    topics  streams per master (3 masters)")
    for n, per in shares.items():
        print(f"    {n:6d}  {' '.join(str(c) for c in per.values())}")
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    data = {"events": args.events, "results": results, "spread": shares}
    (out / f"cluster-{int(time.time())}.json").write_text(json.dumps(data, indent=2))


if __name__ == "__main__":
    main()
