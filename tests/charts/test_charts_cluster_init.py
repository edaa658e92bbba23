"""The valkey chart's cluster-init script (charts/valkey/files/cluster-init.sh), run against
six real valkey-server nodes in cluster mode: it creates the cluster once, a rerun changes
nothing, and a node that comes back with an empty volume joins as a replica."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.valkey_cluster import ValkeyCluster

SCRIPT = Path(__file__).resolve().parents[2] / "charts" / "valkey" / "files" / "cluster-init.sh"


@pytest.fixture
def nodes() -> Iterator[ValkeyCluster]:
    """Six cluster-enabled nodes, not yet joined."""
    cluster = ValkeyCluster(3, 1)
    try:
        for port in cluster.ports:
            cluster.start_node(port)
        yield cluster
    finally:
        cluster.close()


def run_init(cluster: ValkeyCluster) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PATH": f"{Path(cluster.cli).parent}:{os.environ['PATH']}",
        "NODES": " ".join(f"127.0.0.1:{p}" for p in cluster.ports),
        "REPLICAS": "1",
        "WAIT_S": "30",
    }
    return subprocess.run(
        ["sh", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def roles(cluster: ValkeyCluster) -> list[str]:
    return sorted(cluster.info(p, "replication").get("role", "") for p in cluster.live())


def test_the_script_creates_the_cluster_once_and_reruns_harmlessly(nodes: ValkeyCluster) -> None:
    # When the script runs on six fresh nodes
    first = run_init(nodes)
    # Then they form one cluster of three masters with a replica each, every slot served
    assert first.returncode == 0, first.stderr + first.stdout
    assert "creating the cluster" in first.stdout
    nodes.wait_ok()
    assert roles(nodes) == ["master"] * 3 + ["slave"] * 3
    # When it runs again (helm upgrade), nothing is created anew
    again = run_init(nodes)
    assert again.returncode == 0, again.stderr + again.stdout
    assert "creating the cluster" not in again.stdout
    # (a MEET of a known node is a handshake entry for a moment: the count settles at 6)
    assert known_nodes_settle(nodes) == {"6"}


def known_nodes_settle(cluster: ValkeyCluster, timeout_s: float = 15.0) -> set[str]:
    """The set of ``cluster_known_nodes`` over the live nodes once it is one value (or at
    the deadline)."""
    deadline = time.monotonic() + timeout_s
    while True:
        counts = {cluster.info(p)["cluster_known_nodes"] for p in cluster.live()}
        if counts == {"6"} or time.monotonic() > deadline:
            return counts
        time.sleep(0.2)


def test_a_node_back_with_an_empty_volume_joins_as_a_replica(nodes: ValkeyCluster) -> None:
    # Given a created cluster, one replica of which comes back with nothing on disk
    assert run_init(nodes).returncode == 0
    nodes.wait_ok()
    nodes.wait_synced()
    replica = next(p for p in nodes.live() if nodes.info(p, "replication")["role"] == "slave")
    nodes.kill(replica)
    shutil.rmtree(nodes.dir / str(replica))
    nodes.start_node(replica)
    # When the script runs
    result = run_init(nodes)
    # Then the new node joined, as a replica, and the cluster is whole again
    assert result.returncode == 0, result.stderr + result.stdout
    assert f"node 127.0.0.1:{replica} is new" in result.stdout
    nodes.wait_ok()
    assert nodes.info(replica, "replication")["role"] == "slave"
    assert roles(nodes) == ["master"] * 3 + ["slave"] * 3
