"""Shared fixtures: real bus servers (session-wide) and per-test bus URLs."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
def kube() -> Any:
    """The Kubernetes API stand-in (tests/functl/functl_kubeapi.py), checking objects
    against the real schemas (skips without the KEDA CRDs outside CI)."""
    from tests.functl.functl_kubeapi import FakeKube
    from tests.functl.functl_schemas import keda_crds_or_skip, server_validator

    keda_crds_or_skip()
    return FakeKube(validator=server_validator)


@pytest.fixture
def cluster(kube: Any, tmp_path: Path) -> Any:
    """functl's Cluster client on the stand-in, namespace ``fns``."""
    from kubefuncs.functl.kube import Cluster

    from tests.functl.functl_kubeapi import kubeconfig

    config = tmp_path / "kubeconfig"
    config.write_text(kubeconfig("https://fake.invalid:6443", "fns"))
    return Cluster.connect("fns", kubeconfig=str(config), transport=kube.transport())


@pytest.fixture
def valkey_url(valkey_server: ServerProcess, request: pytest.FixtureRequest) -> str:
    """A Valkey URL with a prefix of its own, so tests never see each other's keys."""
    return f"valkey://127.0.0.1:{valkey_server.port}/0?prefix={_prefix(request)}"


def _prefix(request: pytest.FixtureRequest) -> str:
    import hashlib

    return "t" + hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:12]


@pytest.fixture(scope="session")
def valkey_cluster() -> Iterator[Any]:
    """A real 3-master, 3-replica Valkey Cluster on loopback, shared by the session (tests
    that kill nodes start their own ``ValkeyCluster``). ``KF_TEST_CLUSTER_SERVER=redis-server``
    makes it a Redis Cluster instead."""
    import os

    from tests.valkey_cluster import ValkeyCluster

    cluster = ValkeyCluster(server=os.environ.get("KF_TEST_CLUSTER_SERVER", "valkey-server"))
    cluster.start()
    yield cluster
    cluster.close()


@pytest.fixture
def valkey_cluster_url(valkey_cluster: Any, request: pytest.FixtureRequest) -> str:
    """The cluster's bus URL with a prefix of its own."""
    return f"{valkey_cluster.url}?prefix={_prefix(request)}"


@pytest.fixture(params=["valkey", "cluster"])
def shared_url(request: pytest.FixtureRequest) -> str:
    """A Valkey URL with a prefix of its own: one server, then the session's cluster (for
    the stores every gateway replica shares)."""
    name = "valkey_url" if request.param == "valkey" else "valkey_cluster_url"
    url: str = request.getfixturevalue(name)
    return url
