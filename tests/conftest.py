"""Shared fixtures: real bus servers (session-wide) and per-test bus URLs."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.servers import ServerProcess


@pytest.fixture(scope="session")
def valkey_server() -> Iterator[ServerProcess]:
    server = ServerProcess("valkey-server")
    server.start()
    yield server
    server.close()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[ServerProcess]:
    server = ServerProcess("redis-server")
    server.start()
    yield server
    server.close()


@pytest.fixture
def cache_valkey() -> Iterator[ServerProcess]:
    """A valkey-server of the test's own without persistence: a restart comes back empty,
    like a cache-style Valkey or a pod that lost its volume."""
    server = ServerProcess("valkey-server", persistent=False)
    server.start()
    yield server
    server.close()


@pytest.fixture
def valkey_url(valkey_server: ServerProcess, request: pytest.FixtureRequest) -> str:
    """A Valkey URL with a prefix of its own, so tests never see each other's keys."""
    return f"valkey://127.0.0.1:{valkey_server.port}/0?prefix={_prefix(request)}"


def _prefix(request: pytest.FixtureRequest) -> str:
    import hashlib

    return "t" + hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:12]
