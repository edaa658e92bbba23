"""functl's bus commands on a real Valkey Cluster (3 masters, 3 replicas): groups created
on the shard of the topic's slot under hash-tagged names, figures, dead letters."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from kubefuncs.functl import busops
from kubefuncs.functl.cli import main
from kubefuncs.functl.errors import BusUnreachable, UsageError
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot


def prefix_of(url: str) -> str:
    return url.rpartition("prefix=")[2]


def redis_of(cluster: Any) -> RedisCluster:
    return RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", p) for p in cluster.ports[:2]])


async def test_prepare_creates_both_groups_of_a_channel_in_the_topics_slot(
    valkey_cluster: Any, valkey_cluster_url: str
) -> None:
    # Given two topics, two channels on one of them
    pairs = [("orders", "billing"), ("orders", "audit"), ("mail", "send")]
    said: list[str] = []
    # When functl prepares the cluster bus
    await busops.prepare(valkey_cluster_url, None, pairs, said.append)
    # Then every stream is hash-tagged by its topic, and the group exists on the master
    # serving that slot (the topic and its retry streams share it)
    p = prefix_of(valkey_cluster_url)
    r = redis_of(valkey_cluster)
    try:
        for topic, channel in pairs:
            streams = [f"{p}:topic:{{{topic}}}", f"{p}:retry:{{{topic}}}:{channel}"]
            assert {key_slot(s.encode()) for s in streams} == {key_slot(topic.encode())}
            for stream in streams:
                port = valkey_cluster.master_of(stream)
                out = valkey_cluster.cli_out(port, "xinfo", "groups", stream)
                assert channel in out.split(), (stream, port, out)
    finally:
        await r.aclose()
    assert said[0] == "bus topic orders channel billing ready"


async def test_messages_published_before_a_consumer_are_kept_and_counted(
    valkey_cluster_url: str,
) -> None:
    # Given a prepared channel
    pairs = [("early", "worker")]
    await busops.prepare(valkey_cluster_url, None, pairs, lambda _: None)
    # When two events are published before any consumer exists
    for n in range(2):
        await busops.publish(valkey_cluster_url, None, "early", {"n": n}, headers={}, delay_s=0)
    # Then the channel's figures count them as waiting
    [figures] = await busops.stats(valkey_cluster_url, None, pairs)
    assert (figures.depth, figures.in_flight, figures.dead) == (2, 0, 0)


async def test_dead_letters_are_listed_replayed_and_purged_on_their_shard(
    valkey_cluster: Any, valkey_cluster_url: str
) -> None:
    # Given two dead letters of a channel (written as the runtime writes them)
    p = prefix_of(valkey_cluster_url)
    await busops.prepare(valkey_cluster_url, None, [("jobs", "run")], lambda _: None)
    r = redis_of(valkey_cluster)
    dead, retry = f"{p}:dead:{{jobs}}:run", f"{p}:retry:{{jobs}}:run"
    try:
        for n in range(2):
            await r.xadd(dead, {"m": b"body-%d" % n, "reason": "boom", "attempt": "3"})
        # When they are listed, one replayed and the other purged
        letters = await busops.dead_letters(valkey_cluster_url, None, "jobs", "run", 10)
        assert [(d.body, d.reason) for d in letters] == [(b"body-0", "boom"), (b"body-1", "boom")]
        assert await busops.replay(valkey_cluster_url, None, "jobs", "run", [letters[0].id]) == 1
        assert await busops.purge(valkey_cluster_url, None, "jobs", "run", None) == 1
        # Then the replayed one waits in the channel's retry stream, none is left dead
        assert [f[b"m"] for _, f in await r.xrange(retry)] == [b"body-0"]
        assert await r.xlen(dead) == 0
    finally:
        await r.aclose()
    [figures] = await busops.stats(valkey_cluster_url, None, [("jobs", "run")])
    assert (figures.depth, figures.dead) == (1, 0)


async def test_a_delayed_publish_on_a_cluster_waits_in_the_topics_delay_set(
    valkey_cluster: Any, valkey_cluster_url: str
) -> None:
    # (through the client library's cluster transport, which takes valkey+cluster://)
    await busops.publish(valkey_cluster_url, None, "later", {}, headers={}, delay_s=60)
    p = prefix_of(valkey_cluster_url)
    r = redis_of(valkey_cluster)
    try:
        assert await r.zcard(f"{p}:delayed:{p}:topic:{{later}}") == 1
        assert await r.sismember(f"{p}:delayed", f"{p}:delayed:{p}:topic:{{later}}")
    finally:
        await r.aclose()


async def test_an_unreachable_cluster_names_the_fix() -> None:
    with pytest.raises(BusUnreachable, match="fix: pass --bus"):
        await busops.stats("valkey+cluster://127.0.0.1:1,127.0.0.1:2", None, [("t", "c")])


async def test_a_bad_cluster_url_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="no database index"):
        await busops.stats("valkey+cluster://127.0.0.1:7000/1", None, [("t", "c")])


def test_the_prepare_bus_job_command_works_on_a_cluster(valkey_cluster_url: str) -> None:
    # Given the command the in-cluster prepare-bus Job runs (bus URL in KF_BUS_URL)
    result = CliRunner().invoke(
        main, ["prepare-bus", "cli-topic/cli-channel"], env={"KF_BUS_URL": valkey_cluster_url}
    )
    # Then it prepares the channel on the cluster
    assert result.exit_code == 0, result.output
    assert "channel cli-channel ready" in result.output


def test_status_and_dlq_commands_read_a_cluster_bus_from_functions_yaml(
    valkey_cluster: Any, valkey_cluster_url: str, tmp_path: Path
) -> None:
    # Given a functions.yaml on the cluster, its channel prepared, one dead letter in it
    path = tmp_path / "functions.yaml"
    path.write_text(
        f"image: img\nbus: {{url: '{valkey_cluster_url}'}}\n"
        "functions: [{name: hello, handler: m:f, topic: greet}]\n"
    )
    # (no kubeconfig of the developer's: status shows the bus figures alone)
    runner = CliRunner(env={"KUBECONFIG": None, "HOME": str(tmp_path), "KF_BUS_URL": None})
    assert runner.invoke(main, ["prepare-bus", "-f", str(path)]).exit_code == 0
    dead = f"{prefix_of(valkey_cluster_url)}:dead:{{greet}}:hello"
    port = valkey_cluster.master_of(dead)
    valkey_cluster.cli_out(port, "xadd", dead, "*", "m", "x", "reason", "bad input", "attempt", "1")
    # When the status and dead-letter commands run on it
    listed = runner.invoke(main, ["dlq", "list", "-f", str(path), "-o", "json"])
    shown = runner.invoke(main, ["dlq", "show", "hello", "-f", str(path), "-o", "json"])
    status = runner.invoke(main, ["status", "-f", str(path), "-o", "json"])
    # Then they report the channel's figures and its dead letter
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.stdout)[0]["dead"] == 1
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)[0]["reason"] == "bad input"
    assert status.exit_code == 0, status.output
    assert json.loads(status.stdout)[0]["dead"] == 1
