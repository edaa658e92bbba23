"""Request -> StreamIsActive push through the gateway's KEDA scaler (not a test).

    .venv/bin/python bench/push.py [--requests 300] [--gap-ms 5]

Starts a valkey-server, ``python -m kubefuncs.gateway`` with the scaler on (every request
pushes: ``KF_GATEWAY_SCALER_PUSH_INTERVAL_S=0``) and ``python -m kubefuncs example.ping:pong``
for the baseline route. A gRPC client plays KEDA: it holds a StreamIsActive stream open for
the function ``cold`` (no consumer). Then, interleaved, ``--requests`` times each:

(push)      an HTTP request to ``/cold/`` (an async route: 202 at once) is sent, and the
            time until the stream yields ``true`` is taken, on the client's clock (so it
            includes the request's way in: an upper bound of arrival -> push);
(baseline)  a plain sync HTTP round trip to ``/test/`` (a route whose function runs).

Reports p50/p99/max of both (target: push p99 < 50 ms) and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import aiohttp
from _servers import bus_url, free_port, valkey  # bench/ is the script directory
from grpclib.client import Channel
from kubefuncs.gateway.externalscaler import externalscaler_pb2 as pb
from kubefuncs.gateway.externalscaler.externalscaler_grpc import ExternalScalerStub

ROOT = Path(__file__).resolve().parents[1]
ROUTES = """
routes:
  /cold/: {topic: cold, async: true}
  /test/: test
"""


def start(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    import os

    return subprocess.Popen(
        [sys.executable, "-m", *args], cwd=ROOT, env={**os.environ, **env},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def wait_ready(url: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"{url} did not become ready")


def percentiles(samples_s: list[float]) -> tuple[float, float, float]:
    ordered = sorted(samples_s)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered) * 1000, p99 * 1000, ordered[-1] * 1000


async def measure(http_url: str, grpc_port: int, requests: int, gap_s: float) -> None:
    channel = Channel("127.0.0.1", grpc_port)
    keda = ExternalScalerStub(channel)
    ref = pb.ScaledObjectRef(name="cold", scalerMetadata={"topic": "cold", "channel": "fn"})
    pushes: list[float] = []
    trips: list[float] = []
    async with keda.StreamIsActive.open() as stream, aiohttp.ClientSession() as http:
        await stream.send_message(ref, end=True)
        await asyncio.sleep(0.5)
        for _ in range(requests):
            sent = time.perf_counter()
            answer = asyncio.ensure_future(http.post(f"{http_url}/cold/x", data=b"{}"))
            pushed = await asyncio.wait_for(stream.recv_message(), 10)
            assert pushed is not None and pushed.result
            pushes.append(time.perf_counter() - sent)
            (await answer).release()
            await asyncio.sleep(gap_s)
            started = time.perf_counter()
            async with http.get(f"{http_url}/test/x") as r:
                await r.read()
                assert r.status == 200, r.status
            trips.append(time.perf_counter() - started)
            await asyncio.sleep(gap_s)
        await stream.cancel()
    channel.close()
    report(pushes, trips)


def report(pushes: list[float], trips: list[float]) -> None:
    push, trip = percentiles(pushes), percentiles(trips)
    print(f"{'what':<42} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for name, figures in (
        ("request sent -> StreamIsActive push", push),
        ("baseline: sync HTTP round trip (warm)", trip),
    ):
        print(f"{name:<42} " + " ".join(f"{x:8.2f}" for x in figures))
    print(f"push / round trip (p50): {push[0] / trip[0]:.2f}x; push p99 < 50 ms: {push[1] < 50}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--gap-ms", type=float, default=5.0)
    opts = parser.parse_args()
    with valkey() as server, tempfile.TemporaryDirectory() as tmp:
        routes = Path(tmp) / "routes.yaml"
        routes.write_text(ROUTES)
        bus = bus_url(server.url)
        http_port, grpc_port = free_port(), free_port()
        gateway = start(
            ["kubefuncs.gateway", str(routes)],
            {
                "KF_BUS_URL": bus,
                "KF_GATEWAY_ADDR": f"127.0.0.1:{http_port}",
                "KF_GATEWAY_SCALER_ADDR": f"127.0.0.1:{grpc_port}",
                "KF_GATEWAY_SCALER_PUSH_INTERVAL_S": "0",
                "KF_LOG_LEVEL": "WARNING",
            },
        )
        env = {"KF_BUS_URL": bus, "KF_HEALTH_ADDR": "", "KF_LOG_LEVEL": "WARNING"}
        function = start(["kubefuncs", "example.ping:pong"], env)
        try:
            wait_ready(f"http://127.0.0.1:{http_port}/readyz")
            asyncio.run(
                measure(
                    f"http://127.0.0.1:{http_port}", grpc_port, opts.requests, opts.gap_ms / 1000
                )
            )
        finally:
            for proc in (function, gateway):
                proc.terminate()
                proc.wait(10)


if __name__ == "__main__":
    main()
