"""``functl serve`` as a user starts it: a process over a real cluster API (the stand-in
over HTTP) and real Valkey, with API keys from the environment."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from click.testing import CliRunner
from kubefuncs.functl.cli import main

from tests.functl.functl_kubeapi import FakeKube, kubeconfig, serve
from tests.functl.functl_schemas import keda_crds_or_skip, server_validator
from tests.procs import Proc
from tests.servers import ServerProcess, free_port

KEY = "ops=write-key-0123456789:write"
BASE = """
version: 1
bus: {url: "valkey://valkey:6379/0"}
functions:
  - {name: hello, handler: example.hello:handle, topic: hello}
"""


async def _request(
    method: str, url: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as s,
        s.request(method, url, json=body, headers=headers) as r,
    ):
        return r.status, await r.text()


def call(*args: Any, **kwargs: Any) -> tuple[int, str]:
    return asyncio.run(_request(*args, **kwargs))


@pytest.fixture
def config(tmp_path: Path) -> Iterator[tuple[FakeKube, str]]:
    keda_crds_or_skip()
    kube = FakeKube(validator=server_validator)
    with serve(kube) as url:
        path = tmp_path / "kubeconfig"
        path.write_text(kubeconfig(url, "fns"))
        yield kube, str(path)


def test_serve_without_credentials_refuses_to_start(tmp_path: Path) -> None:
    (tmp_path / "f.yaml").write_text(BASE)
    result = CliRunner().invoke(main, ["serve", "-f", str(tmp_path / "f.yaml")], env={})
    assert result.exit_code == 2
    assert "FUNCTL_SERVE_API_KEYS" in result.stderr


@pytest.mark.real
def test_functl_serve_deploys_into_the_cluster_and_serves_the_dashboard(
    config: tuple[FakeKube, str], valkey_server: ServerProcess, tmp_path: Path
) -> None:
    kube, kubeconfig_path = config
    functions = tmp_path / "functions.yaml"
    functions.write_text(BASE)
    port = free_port()
    bus = f"valkey://127.0.0.1:{valkey_server.port}/0?prefix=serve{port}"
    args = ["serve", "--cluster", "--kubeconfig", kubeconfig_path, "-n", "fns", "-r", "demo"]
    args += ["-f", str(functions), "--bus", bus, "--image", "img:1", "--addr", f"127.0.0.1:{port}"]
    server = Proc(["kubefuncs.functl", *args], {"FUNCTL_SERVE_API_KEYS": KEY})
    base, key = f"http://127.0.0.1:{port}", {"X-Api-Key": "write-key-0123456789"}
    try:
        server.wait_http(f"{base}/api/v1/openapi.json")
        assert f"on {base}/" in server.output()
        # The dashboard and its libraries are served, the API wants a key
        status, page = call("GET", f"{base}/")
        assert status == 200 and "/static/app.js" in page
        assert call("GET", f"{base}/vendor/uplot/dist/uPlot.esm.js")[0] == 200
        assert call("GET", f"{base}/vendor/js-yaml/dist/js-yaml.mjs")[0] == 200
        assert call("GET", f"{base}/api/v1/functions")[0] == 401
        # When a function is deployed through the API
        fn = {"name": "orders", "handler": "shop.orders:handle", "topic": "orders"}
        status, body = call("POST", f"{base}/api/v1/functions", fn, key)
        # Then its Deployment is in the cluster and the list shows it
        assert status == 201, body
        assert ("deployments", "fns", "demo-orders") in kube.objects
        status, body = call("GET", f"{base}/api/v1/functions", headers=key)
        assert [f["name"] for f in json.loads(body)["functions"]] == ["orders"]
    finally:
        assert server.stop() == 0, server.output()
