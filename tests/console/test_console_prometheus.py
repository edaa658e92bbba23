"""Metrics series from a Prometheus server (FUNCTL_SERVE_PROMETHEUS_URL): the queries
name the function, the answers become points; a failing Prometheus is a 503 that says so."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from kubefuncs.functl.console.catalog import FileCatalog
from kubefuncs.functl.console.settings import ServeSettings

from tests.console.console_fixtures import SETTINGS, functions_file, running

pytestmark = pytest.mark.real
FN = "/api/v1/functions/{name}/metrics"


def fake_prometheus(seen: list[str], fail: bool) -> web.Application:
    async def query_range(request: web.Request) -> web.Response:
        query = request.query["query"]
        seen.append(query)
        if fail:
            return web.json_response({"status": "error", "error": "bad query"}, status=400)
        start = float(request.query["start"])
        value = "0.5" if "histogram_quantile" not in query else "NaN"
        result = [{"metric": {}, "values": [[start, value], [start + 15, "2"]]}]
        return web.json_response(
            {"status": "success", "data": {"resultType": "matrix", "result": result}}
        )

    app = web.Application()
    app.router.add_get("/api/v1/query_range", query_range)
    return app


async def served(app: web.Application) -> TestServer:
    server = TestServer(app)
    await server.start_server()
    return server


@pytest.mark.parametrize("fail", [False, True])
async def test_metrics_come_from_prometheus_when_its_url_is_set(
    valkey_url: str, tmp_path: Path, fail: bool
) -> None:
    seen: list[str] = []
    prom = await served(fake_prometheus(seen, fail))
    settings: ServeSettings = replace(SETTINGS, prometheus_url=str(prom.make_url("/")))
    path = functions_file(tmp_path, valkey_url)
    try:
        async with running(FileCatalog(str(path)), valkey_url, path, settings) as (api, _):
            status, body = await api.call("GET", FN, name="ping", params={"window": "2h"})
    finally:
        await prom.close()
    if fail:
        assert (status, body["error"]) == (503, "prometheus_unavailable")
        assert "bad query" in body["message"]
        return
    assert status == 200 and body["source"] == "prometheus"
    assert all('function="ping"' in q for q in seen) and len(seen) == 6
    points: list[dict[str, Any]] = body["points"]
    assert [p["invocations_per_s"] for p in points] == [0.5, 2.0]
    assert points[0]["p99_ms"] is None and points[1]["p99_ms"] == 2.0
