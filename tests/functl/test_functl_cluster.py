"""A Valkey Cluster bus on the rendering side: URL forms, redis-cluster-streams triggers
on hash-tagged streams, one egress destination per node."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from kubefuncs.functl import busurl, keda, netpol, render, spec
from kubefuncs.functl.cli import main

from tests.functl.functl_fixtures import TARGET, by_kind, load, named, rendered

CLUSTER_CASES = [
    ("valkey+cluster://a:7000,b:7001", ("a:7000", "b:7001"), False, "kf"),
    ("redis+cluster://a,b:7001/?prefix=app", ("a:6379", "b:7001"), False, "app"),
    ("valkeys+cluster://[fd00::1]:7000,10.0.0.1", ("[fd00::1]:7000", "10.0.0.1:6379"), True, "kf"),
    ("rediss+cluster://a:7000,a:7000,b:7000/", ("a:7000", "b:7000"), True, "kf"),
]


@pytest.mark.parametrize(("url", "nodes", "tls", "prefix"), CLUSTER_CASES)
def test_a_cluster_url_names_its_nodes(
    url: str, nodes: tuple[str, ...], tls: bool, prefix: str
) -> None:
    bus = busurl.parse(url)
    assert (bus.kind, bus.cluster, bus.nodes, bus.tls, bus.prefix) == (
        "valkey",
        True,
        nodes,
        tls,
        prefix,
    )
    assert bus.address == nodes[0] and bus.db == 0


def test_a_standalone_url_is_no_cluster() -> None:
    bus = busurl.parse("valkey://kf-valkey:6379/2")
    assert (bus.cluster, bus.nodes, bus.db) == (False, ("kf-valkey:6379",), 2)


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("valkey+cluster://", "names no cluster node"),
        ("valkey+cluster://,", "names no cluster node"),
        ("valkey+cluster://a:70000,b:7000", "bad port '70000'"),
        ("valkey+cluster://a:7000,b:x", "bad port 'x'"),
        ("valkey+cluster://:7000", "has no host"),
        ("valkey+cluster://a:7000/0", "no database index"),
        ("valkey+cluster://a:7000?db=1", "no database index"),
    ],
)
def test_a_bad_cluster_url_says_what_is_wrong(url: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        busurl.parse(url)


def test_a_bad_cluster_url_in_functions_yaml_names_file_field_and_fix(tmp_path: Path) -> None:
    # Given a functions.yaml whose cluster URL carries a database index
    path = tmp_path / "functions.yaml"
    path.write_text(
        "image: img\nbus: {url: 'valkey+cluster://a:7000,b:7000/3'}\n"
        "functions: [{name: hello, handler: m:f, topic: t}]\n"
    )
    # When it is rendered
    result = CliRunner().invoke(main, ["render", "-f", str(path)])
    # Then functl exits 2 with the file, the field and the cluster form to write
    assert result.exit_code == 2
    assert str(path) in result.stderr and "bus.url" in result.stderr
    assert "no database index" in result.stderr
    assert busurl.CLUSTER_FORM in result.stderr
    assert "Traceback" not in result.stderr


def test_a_password_in_a_cluster_url_is_refused() -> None:
    s = spec.loads(
        "image: img\nbus: {url: 'valkey+cluster://u:secret@a:7000'}\n"
        "functions: [{name: hello, handler: m:f, topic: t}]\n",
        "f.yaml",
    )
    with pytest.raises(spec.SpecError, match="password"):
        render.render(s, TARGET)


def test_the_schema_accepts_the_cluster_schemes() -> None:
    for scheme in busurl.CLUSTER_SCHEMES:
        s = spec.loads(
            f"image: img\nbus: {{url: '{scheme}://a:7000'}}\n"
            "functions: [{name: hello, handler: m:f, topic: t}]\n",
            "f.yaml",
        )
        assert s.bus is not None and s.bus.url.startswith(scheme)


def test_cluster_triggers_read_the_hash_tagged_streams_of_topic_and_retry() -> None:
    # Given the cluster example (TLS, a password Secret, prefix app)
    objects = rendered("cluster")
    scaler = named(objects, "ScaledObject", "demo-resize")
    triggers = scaler["spec"]["triggers"]
    # Then there are the four standalone modes, as redis-cluster-streams triggers
    assert [t["name"] for t in triggers] == ["lag", "pending", "retry-lag", "retry-pending"]
    assert {t["type"] for t in triggers} == {"redis-cluster-streams"}
    streams = [t["metadata"]["stream"] for t in triggers]
    assert streams == ["app:topic:{images}"] * 2 + ["app:retry:{images}:resizer"] * 2
    for t in triggers:
        meta = t["metadata"]
        # every node as a seed, no database index, TLS, the group of the channel
        assert meta["addresses"] == "bus-valkey.data:6379,10.0.0.7:6380,[fd00::7]:6380"
        assert "databaseIndex" not in meta and "address" not in meta
        assert meta["enableTLS"] == "true" and meta["consumerGroup"] == "resizer"
        assert t["authenticationRef"] == {"name": "demo-bus"}
    # lag scales from zero, pending keeps working replicas (as on a standalone bus)
    assert triggers[0]["metadata"]["lagCount"] == "10"
    assert triggers[0]["metadata"]["activationLagCount"] == "2"
    assert triggers[1]["metadata"]["pendingEntriesCount"] == "2"
    [auth] = by_kind(objects, "TriggerAuthentication")
    assert auth["spec"]["secretTargetRef"][0]["parameter"] == "password"


def test_cluster_streams_share_the_topics_hash_slot() -> None:
    from redis.crc import key_slot

    fn = next(f for f in load("cluster").functions if f.name == "resize")
    topic, retry = keda.cluster_streams(fn, "app")
    assert key_slot(topic.encode()) == key_slot(retry.encode()) == key_slot(b"images")


def test_a_function_may_reach_every_node_the_url_names_on_its_client_port_only() -> None:
    bus = busurl.parse("valkey+cluster://kf-valkey:6379,10.0.0.7:6380,10.0.0.8:6380,node.x:7000")
    assert netpol.destinations(bus) == {
        ("chart", "kf", "", "valkey"): [6379],
        ("ip", "10.0.0.7/32"): [6380],
        ("ip", "10.0.0.8/32"): [6380],
        ("any",): [7000],
    }
    # the cluster bus port (client port + 10000) is node-to-node only: never opened
    ports = {p for ports in netpol.destinations(bus).values() for p in ports}
    assert not ports & {16379, 16380, 17000}
