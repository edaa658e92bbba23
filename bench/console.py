"""The console's costs with 200 functions: GET /api/v1/functions latency, and the CPU
one scrape of 200 function pods takes (Prometheus text served by another process).

    .venv/bin/python bench/console.py [--functions 200] [--requests 300] [--rounds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiohttp.test_utils import TestClient, TestServer
from kubefuncs.functl.console import ServeSettings, create_app
from kubefuncs.functl.console.app import CONSOLE, sample_all
from kubefuncs.functl.console.catalog import FunctionView
from kubefuncs.runtime import RuntimeMetrics
from prometheus_client import generate_latest

from tests.servers import free_port


class Many:
    """A catalog of ``n`` functions whose pods all serve the same metrics text."""

    writable, mode = False, "file"

    def __init__(self, n: int, url: str) -> None:
        self.rows = [
            FunctionView(f"fn{i}", f"t{i}", f"fn{i}", {"topic": f"t{i}"}, None, 1, 1, "cluster")
            for i in range(n)
        ]
        self.url = url

    def functions(self) -> list[FunctionView]:
        return list(self.rows)

    def deploy(self, body: object, *, update: bool) -> tuple[FunctionView, list[str]]:
        raise NotImplementedError("the benchmark does not deploy")

    def delete(self, name: str) -> list[str]:
        raise NotImplementedError("the benchmark does not delete")

    def scrape_urls(self, name: str) -> list[str]:
        return [self.url]


def metrics_text() -> str:
    m = RuntimeMetrics("fn0")
    for i in range(1000):
        m.handled("ok")
        m.took(0.001 * (i % 50))
    return generate_latest(m.registry).decode()


async def run(n: int, requests: int, rounds: int, port: int) -> dict[str, float]:
    await asyncio.sleep(1.0)  # the metrics server starts
    settings = ServeSettings(no_auth=True, scrape_s=3600)
    catalog = Many(n, f"http://127.0.0.1:{port}/metrics")
    app = create_app(settings, catalog, bus_url="memory://")
    client = TestClient(TestServer(app))
    await client.start_server()
    console = app[CONSOLE]
    try:
        cpu0 = time.process_time()
        for _ in range(rounds):
            await sample_all(console)
        scrape_cpu_s = (time.process_time() - cpu0) / rounds
        await sample_all(console)  # two samples: live figures in every row
        took = []
        for _ in range(requests):
            t0 = time.perf_counter()
            r = await client.get("/api/v1/functions")
            assert r.status == 200 and len((await r.json())["functions"]) == n
            took.append(time.perf_counter() - t0)
    finally:
        await client.close()
    q = statistics.quantiles(took, n=100)
    return {
        "functions": n,
        "list_p50_ms": round(q[49] * 1000, 2),
        "list_p99_ms": round(q[98] * 1000, 2),
        "scrape_cpu_ms_per_round": round(scrape_cpu_s * 1000, 1),
        "scrape_core_percent_at_10s": round(scrape_cpu_s / 10 * 100, 2),
        # 5 dashboards polling the table every 2 s: 2.5 lists/s; wall time (client included)
        # as CPU, so an upper bound
        "five_dashboards_core_percent_at_most": round(2.5 * statistics.mean(took) * 100, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--functions", type=int, default=200)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=10)
    a = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="kf-bench-console-"))
    (folder / "metrics").write_text(metrics_text())
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        figures = asyncio.run(run(a.functions, a.requests, a.rounds, port))
    finally:
        server.terminate()
        server.wait(5)
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
