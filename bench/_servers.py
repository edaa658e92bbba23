"""What both benchmark scripts start: a free port, a throwaway valkey-server."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


def bus_url(redis_url: str, **options: str) -> str:
    """The kubefuncs bus URL for a benchmark's valkey-server: ``options`` plus what
    BENCH_BUS_QUERY holds (``read_count=8&block_ms=100``, for A/B runs of bus options)."""
    query = "&".join(f"{k}={v}" for k, v in options.items())
    extra = os.environ.get("BENCH_BUS_QUERY", "").lstrip("?&")
    query = "&".join(q for q in (query, extra) if q)
    url = redis_url.replace("redis://", "valkey://")
    return f"{url}?{query}" if query else url


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Valkey:
    url: str  # redis://127.0.0.1:<port>/0
    pid: int  # for CPU accounting


@contextmanager
def valkey() -> Iterator[Valkey]:
    """valkey-server (or redis-server) on a free loopback port, no persistence."""
    binary = shutil.which("valkey-server") or shutil.which("redis-server")
    if binary is None:
        sys.exit("valkey-server (or redis-server) is not installed")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="kf-bench-") as tmp:
        args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", tmp]
        args += ["--save", "", "--appendonly", "no", "--protected-mode", "no"]
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_listening(port)
            yield Valkey(f"redis://127.0.0.1:{port}/0", proc.pid)
        finally:
            proc.terminate()
            proc.wait(10)


def _wait_listening(port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return
        except OSError:
            time.sleep(0.02)
    sys.exit("valkey-server did not start")
