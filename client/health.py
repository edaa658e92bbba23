"""The runtime's HTTP side: /healthz (alive), /readyz (consuming, bus connected), /metrics.

Three fixed GET routes for probes and scrapes, served by a small asyncio server of its own
(one request per connection) rather than aiohttp: importing aiohttp was a third of a
function's start-up time and ~15 MB of its idle memory, for three constant routes.
prometheus_client is imported by the first scrape, not at start-up (kubefuncs.metrics).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client.registry import Collector

MAX_HEAD_BYTES = 8192  # request line and headers; a probe sends a few hundred
READ_TIMEOUT_S = 5.0
TEXT = "text/plain; charset=utf-8"
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           503: "Service Unavailable"}  # fmt: skip


@dataclass(frozen=True)
class HealthApp:
    """What the three routes answer: ``ready()`` for /readyz, ``registry`` (a registry,
    or any collector such as kubefuncs.metrics.RuntimeMetrics) for /metrics."""

    ready: Callable[[], bool]
    registry: Collector

    def respond(self, method: str, path: str) -> tuple[int, str, bytes]:
        """(status, content type, body) for one request."""
        path = path.split("?", 1)[0]
        if path not in ("/healthz", "/readyz", "/metrics"):
            return 404, TEXT, b"not found\n"
        if method not in ("GET", "HEAD"):
            return 405, TEXT, b"only GET\n"
        if path == "/healthz":
            return 200, TEXT, b"ok\n"
        if path == "/readyz":
            return (200, TEXT, b"ready\n") if self.ready() else (503, TEXT, b"not ready\n")
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return 200, CONTENT_TYPE_LATEST, generate_latest(self.registry)


def health_app(ready: Callable[[], bool], registry: Collector) -> HealthApp:
    return HealthApp(ready, registry)


def _request_line(head: bytes) -> tuple[str, str] | None:
    parts = head.split(b"\r\n", 1)[0].split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
        return None
    return parts[0].decode("latin-1"), parts[1].decode("latin-1")


async def _serve_one(app: HealthApp, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:  # fmt: skip
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT_S)
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, OSError):
        head = b""
    request = _request_line(head) if head else None
    if request is None:
        status, ctype, body = 400, TEXT, b"bad request\n"
        method = "GET"
    else:
        method = request[0]
        status, ctype, body = app.respond(*request)
    headers = (f"HTTP/1.1 {status} {REASONS[status]}\r\nContent-Type: {ctype}\r\n"
               f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")  # fmt: skip
    writer.write(headers.encode() + (b"" if method == "HEAD" else body))
    with contextlib.suppress(OSError):
        await writer.drain()


@asynccontextmanager
async def serve(app: HealthApp, addr: str) -> AsyncIterator[asyncio.Server | None]:
    """Serve ``app`` on ``HOST:PORT`` for the duration of the block (nothing when empty)."""
    if not addr:
        yield None
        return
    host, port = addr.rsplit(":", 1)

    async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await _serve_one(app, reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(connected, host or None, int(port), limit=MAX_HEAD_BYTES)
    try:
        yield server
    finally:
        server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 1.0)
