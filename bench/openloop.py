"""An open-loop HTTP load generator (not a test): requests go out on a clock.

    .venv/bin/python bench/openloop.py URL RATE DURATION_S     # prints one JSON line

Request ``i`` is due at ``start + i / RATE``, evenly spaced (hey's ``-q`` ticks every
worker at once, so its requests came in clumps of ``-c``). A due request goes out on an
idle keep-alive connection, or on a new one when none is idle (up to ``MAX_CONNECTIONS``;
past that it waits for one). Latency counts from when a request was *due*, so time spent
waiting for a connection is counted, not omitted. Reports p50/p99/p99.9 (ms), the achieved
rate and how many replies were not ``200``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from urllib.parse import urlsplit

MAX_CONNECTIONS = 256


class Counter:
    """Replies so far; ``all`` is set once ``total`` came."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.count = 0
        self.all = asyncio.Event()

    def add(self) -> None:
        self.count += 1
        if self.count >= self.total:
            self.all.set()


class Connection(asyncio.Protocol):
    """One keep-alive connection; one request in flight at a time."""

    def __init__(self, idle: asyncio.Queue[Connection], answered: Counter) -> None:
        self.idle = idle
        self.answered = answered
        self.buffer = b""
        self.due = 0.0
        self.transport: asyncio.Transport | None = None
        self.results: list[tuple[float, bool]] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def send(self, request: bytes, due: float) -> None:
        self.due = due
        assert self.transport is not None
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        head, sep, rest = self.buffer.partition(b"\r\n\r\n")
        if not sep:
            return
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if len(rest) < length:
            return
        self.buffer = rest[length:]
        self.results.append((time.perf_counter() - self.due, head.split(b" ", 2)[1] == b"200"))
        self.idle.put_nowait(self)
        self.answered.add()


async def run(url: str, rate: float, duration_s: float) -> dict[str, float]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    loop = asyncio.get_running_loop()
    idle: asyncio.Queue[Connection] = asyncio.Queue()
    conns: list[Connection] = []
    total = int(rate * duration_s)
    answered = Counter(total)
    start = time.perf_counter() + 0.05
    for i in range(total):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if idle.empty() and len(conns) < MAX_CONNECTIONS:
            _, conn = await loop.create_connection(lambda: Connection(idle, answered), host, port)
            conns.append(conn)
        else:
            conn = await idle.get()
        conn.send(request, due)
    with contextlib.suppress(TimeoutError):  # what has not come by then counts as failed
        await asyncio.wait_for(answered.all.wait(), 10)
    elapsed = time.perf_counter() - start
    results = [r for c in conns for r in c.results]
    times = sorted(t * 1000 for t, _ in results)
    for c in conns:
        if c.transport is not None:
            c.transport.close()

    def q(p: float) -> float:
        return times[min(len(times) - 1, int(p * len(times)))] if times else float("nan")

    return {
        "offered": rate,
        "achieved": len(results) / elapsed,
        "errors": total - sum(ok for _, ok in results),
        "connections": len(conns),
        "p50_ms": q(0.5),
        "p99_ms": q(0.99),
        "p999_ms": q(0.999),
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run(sys.argv[1], float(sys.argv[2]), float(sys.argv[3])))))
