"""The runtime's own small HTTP server: the three probe/scrape routes, and a bad or odd
request answered with a 4xx and a reason, never a dropped connection."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from kubefuncs.health import health_app, serve
from prometheus_client import CollectorRegistry, Counter

from tests.servers import free_port

READY = {"now": False}


@pytest.fixture
async def port() -> AsyncIterator[int]:
    registry = CollectorRegistry()
    Counter("probe_things", "things", registry=registry).inc()
    port = free_port()
    async with serve(health_app(lambda: READY["now"], registry), f"127.0.0.1:{port}"):
        yield port


async def raw(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    async with asyncio.timeout(5):
        answer = await reader.read()
    writer.close()
    return answer


async def get(port: int, path: str, method: str = "GET") -> tuple[int, bytes]:
    answer = await raw(port, f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


async def test_the_routes_answer_health_readiness_and_metrics(port: int) -> None:
    READY["now"] = False
    assert await get(port, "/healthz") == (200, b"ok\n")
    assert await get(port, "/readyz") == (503, b"not ready\n")
    READY["now"] = True
    assert await get(port, "/readyz?verbose") == (200, b"ready\n")
    status, body = await get(port, "/metrics")
    assert status == 200 and b"probe_things_total 1.0" in body
    assert await get(port, "/readyz", "HEAD") == (200, b"")


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /nope HTTP/1.1\r\n\r\n", b"404"),
        (b"POST /healthz HTTP/1.1\r\nContent-Length: 0\r\n\r\n", b"405"),
        (b"not http at all\r\n\r\n", b"400"),
        (b"GET /healthz HTTP/1.1\r\n" + b"X: " + b"y" * 10_000 + b"\r\n\r\n", b"400"),
        (b"GET /healthz HTTP/1.1\r\n", b"400"),  # the client gave up half-way
    ],
)
async def test_a_bad_request_gets_a_4xx(port: int, request_bytes: bytes, status: bytes) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request_bytes)
    writer.write_eof()
    async with asyncio.timeout(5):
        answer = await reader.read()
    writer.close()
    assert answer.split(b" ")[1] == status
