"""Slow clients against a real gateway process: partial requests are closed by the header
and body time-outs while normal traffic is answered (issue 12: 200 of 200 partial requests
used to stay open for as long as anyone watched)."""

from __future__ import annotations

import socket
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.procs import Proc
from tests.servers import ServerProcess, free_port

pytestmark = pytest.mark.real

PARTIAL = 30  # of each kind


@pytest.fixture
def gateway(valkey_server: ServerProcess, tmp_path: Path) -> Iterator[str]:
    routes = tmp_path / "routes.yaml"
    routes.write_text("routes:\n  /e/: {topic: slowclients, timeout_s: 2}\n")
    port = free_port()
    proc = Proc(
        ["kubefuncs.gateway", str(routes)],
        {
            "KF_BUS_URL": f"valkey://127.0.0.1:{valkey_server.port}/0?prefix=slow",
            "KF_GATEWAY_ADDR": f"127.0.0.1:{port}",
            "KF_GATEWAY_HEADER_TIMEOUT_S": "1",
            "KF_GATEWAY_BODY_TIMEOUT_S": "1",
            "KF_LOG_LEVEL": "WARNING",
        },
    )
    try:
        proc.wait_http(f"http://127.0.0.1:{port}/healthz")
        yield f"127.0.0.1:{port}"
    finally:
        assert proc.stop() == 0, proc.output()


def _open(addr: str, data: bytes) -> socket.socket:
    host, port = addr.split(":")
    s = socket.create_connection((host, int(port)), timeout=10)
    s.sendall(data)
    return s


def _closed_within(s: socket.socket, timeout_s: float) -> tuple[bool, bytes]:
    """True when the server answered and/or closed the connection in time."""
    s.settimeout(timeout_s)
    got = b""
    try:
        while chunk := s.recv(4096):
            got += chunk
    except TimeoutError:
        return False, got
    return True, got


def test_partial_requests_are_closed_while_others_are_answered(gateway: str) -> None:
    # Given connections that never finish their headers, and ones that stall mid-body
    heads = [
        _open(gateway, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: 1") for _ in range(PARTIAL)
    ]
    bodies = [
        _open(gateway, b"POST /e/x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\npartial")
        for _ in range(PARTIAL)
    ]
    # When normal requests come meanwhile, Then they are answered
    started = time.monotonic()
    with urllib.request.urlopen(f"http://{gateway}/healthz", timeout=5) as r:
        assert r.status == 200
    # And every partial connection is closed within its time-out (1 s, plus slack)
    for s in heads:
        closed, _ = _closed_within(s, 5)
        assert closed
    for s in bodies:
        closed, got = _closed_within(s, 5)
        assert closed and got.startswith(b"HTTP/1.1 408"), got[:200]
        assert b"body_timeout" in got
    assert time.monotonic() - started < 8
    for s in heads + bodies:
        s.close()
