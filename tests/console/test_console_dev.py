"""``functl dev`` serves the dashboard too, over the local functions, and prints its URL."""

from __future__ import annotations

import asyncio
import json
import socket

import aiohttp

from tests.procs import Proc
from tests.servers import free_port


async def _request(method: str, url: str, body: object = None) -> tuple[int, object]:
    async with aiohttp.ClientSession() as s, s.request(method, url, json=body) as r:
        return r.status, json.loads(await r.text())


def test_functl_dev_prints_and_serves_the_dashboard() -> None:
    # Given `functl dev example/functions.yaml` with the dashboard on a port of its own
    port, console = free_port(), free_port()
    dev = Proc(
        [
            "kubefuncs.functl",
            "dev",
            "example/functions.yaml",
            "--port",
            str(port),
            "--console-port",
            str(console),
        ],
        {"KF_BUS_URL": ""},
    )
    base = f"http://127.0.0.1:{console}"
    try:
        dev.wait_http(f"{base}/api/v1/openapi.json")
        # Then it said where the dashboard is, which lists the example functions
        assert f"dashboard on {base}/" in dev.output()
        status, body = asyncio.run(_request("GET", f"{base}/api/v1/functions"))
        assert status == 200 and isinstance(body, dict)
        assert {"hello", "ping", "tick", "upper"} <= {f["name"] for f in body["functions"]}
        # and invokes the local functions through the dev bus
        call = {"http": {"method": "GET", "path": "/test/x"}}
        status, reply = asyncio.run(_request("POST", f"{base}/api/v1/functions/ping/invoke", call))
        assert status == 200 and isinstance(reply, dict) and reply["body"] == "pong"
        # and a function deployed through it runs in the dev process until it is deleted
        extra = {"name": "extra", "handler": "example.ping:pong", "topic": "extra"}
        assert asyncio.run(_request("POST", f"{base}/api/v1/functions", extra))[0] == 201
        status, reply = asyncio.run(
            _request("POST", f"{base}/api/v1/functions/extra/invoke", {"payload": 1})
        )
        assert status == 200 and isinstance(reply, dict) and reply["reply"] == "pong"
        assert asyncio.run(_request("POST", f"{base}/api/v1/functions", extra))[0] == 409
        status, _ = asyncio.run(_request("DELETE", f"{base}/api/v1/functions/extra"))
        assert status == 200
        assert asyncio.run(_request("GET", f"{base}/api/v1/functions/extra"))[0] == 404
        # the file's own functions are the file's
        status, refused = asyncio.run(_request("DELETE", f"{base}/api/v1/functions/ping"))
        assert status == 409 and isinstance(refused, dict) and refused["error"] == "read_only"
        command = {"name": "cmd", "command": ["node", "x.js"], "topic": "cmd"}
        assert asyncio.run(_request("POST", f"{base}/api/v1/functions", command))[0] == 422
    finally:
        assert dev.stop() == 0, dev.output()


def test_a_taken_dashboard_port_leaves_functl_dev_running() -> None:
    # Given the dashboard's port in use by someone else
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port, console = free_port(), taken.getsockname()[1]
        dev = Proc(
            [
                "kubefuncs.functl",
                "dev",
                "example/functions.yaml",
                "--port",
                str(port),
                "--console-port",
                str(console),
            ],
            {"KF_BUS_URL": ""},
        )
        try:
            # Then the gateway still serves, and the output says why there is no dashboard
            dev.wait_http(f"http://127.0.0.1:{port}/readyz")
            assert "no dashboard: cannot listen" in dev.output()
        finally:
            assert dev.stop() == 0, dev.output()
