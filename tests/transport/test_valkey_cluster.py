"""The Valkey transport on a real Valkey Cluster: URL, key layout (one slot per topic),
topics spread over the shards. (A master failover under load, with processes:
tests/faults/test_cluster_failover.py.)"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kubefuncs.errors import ConfigError, TransportError
from kubefuncs.transport import Transport, from_url
from kubefuncs.transport._valkey_cluster import ValkeyClusterTransport, seeds
from kubefuncs.wire import new_id

from tests.transport.conftest import maintained
from tests.valkey_cluster import ValkeyCluster

FAST = "visibility_timeout_s=0.5&block_ms=50&trim_interval_s=0"


@pytest.mark.parametrize("scheme", ["valkey", "valkeys", "redis", "rediss"])
def test_every_cluster_scheme_makes_a_cluster_transport(scheme: str) -> None:
    t = from_url(f"{scheme}+cluster://127.0.0.1:7000,127.0.0.1:7001/?prefix=p")
    assert isinstance(t, ValkeyClusterTransport)
    assert t.keys.topic("orders") == "p:topic:{orders}"


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("valkey+cluster://127.0.0.1:7000/3", "no database index"),
        ("valkey+cluster:///", "names no cluster node"),
        ("valkey+cluster://127.0.0.1:x,127.0.0.1:7001", "is not host, host:port"),
        ("valkey+cluster://127.0.0.1:70000", "is not host, host:port"),
        ("valkey+cluster://:7000", "is not host, host:port"),
        ("valkey+cluster://[::1]x", "is not host, host:port"),
        ("valkey+cluster://127.0.0.1:7000/?prefix=a{b}", "must not contain braces"),
    ],
)
def test_a_bad_cluster_url_is_refused_with_the_reason(url: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        from_url(url)


def test_seeds_are_every_listed_node_and_the_password_stays_out() -> None:
    url = "valkey+cluster://:secret@10.0.0.1:7000,vk-1,[fd00::1]:7002,[fd00::2]/0"
    assert seeds(url) == [
        ("10.0.0.1", 7000),
        ("vk-1", 6379),
        ("fd00::1", 7002),
        ("fd00::2", 6379),
    ]
    assert "secret" not in from_url(url).safe_url


async def test_an_unreachable_cluster_is_a_transport_error_not_a_crash() -> None:
    t = from_url("valkey+cluster://127.0.0.1:1,127.0.0.1:2")
    try:
        with pytest.raises(TransportError, match="cannot reach the bus"):
            await t.connect()
        with pytest.raises(TransportError, match="unreachable"):
            await t.publish("x", b"y")
        assert not t.connected
    finally:
        await t.close()


@contextlib.asynccontextmanager
async def connected(url: str) -> AsyncIterator[Transport]:
    t = from_url(url)
    await t.connect()
    try:
        yield t
    finally:
        await t.close()


@pytest.mark.real
async def test_topics_spread_over_every_master(valkey_cluster: ValkeyCluster) -> None:
    prefix = "spread" + new_id()[:6]
    async with connected(f"{valkey_cluster.url}/?prefix={prefix}") as t:
        topics = [f"topic-{i}" for i in range(30)]
        for topic in topics:
            await t.publish(topic, b"x")
        assert isinstance(t, ValkeyClusterTransport)
        nodes = [t.redis.get_node_from_key(t.keys.topic(topic)) for topic in topics]
        owners = {int(node.port) for node in nodes}
        for topic, node in list(zip(topics, nodes, strict=True))[:3]:  # written there
            assert valkey_cluster.cli_out(node.port, "xlen", t.keys.topic(topic)).strip() == "1"
    assert owners == set(valkey_cluster.master_ports())


@pytest.mark.real
async def test_every_key_of_a_topic_shares_its_slot(valkey_cluster: ValkeyCluster) -> None:
    prefix = "slot" + new_id()[:6]
    async with connected(f"{valkey_cluster.url}/?prefix={prefix}&{FAST}") as t:
        assert isinstance(t, ValkeyClusterTransport)
        sub = await t.subscribe("orders", "billing", max_in_flight=4)
        await t.publish("orders", b"a")
        await t.publish("orders", b"later", delay_s=30)
        await t.publish_once("orders", b"b", key="k", window_s=60, id=new_id(), delay_s=30)
        it = aiter(sub)
        first = await asyncio.wait_for(anext(it), 5)
        await first.retry(30)  # into the retry stream's delay set, acked with it
        await t.publish("orders", b"c")
        second = await asyncio.wait_for(anext(it), 5)
        await second.dead_letter("poison")
        keys = [k.decode() for k in await _all_keys(valkey_cluster, f"{prefix}:*")]
        slots = {_slot(valkey_cluster, k) for k in keys if "{orders}" in k}
        names = {k.split("{")[0] for k in keys if "{orders}" in k}
        await sub.close()
    assert len(slots) == 1, keys
    assert {f"{prefix}:topic:", f"{prefix}:retry:", f"{prefix}:dead:", f"{prefix}:dedupe:"} <= names
    assert f"{prefix}:delayed:{prefix}:topic:" in names
    assert f"{prefix}:delayed:{prefix}:retry:" in names


@pytest.mark.real
async def test_keys_of_two_slots_in_one_transaction_are_a_bug_not_an_outage(
    valkey_cluster: ValkeyCluster,
) -> None:
    async with connected(f"{valkey_cluster.url}/?prefix=xs") as t:
        assert isinstance(t, ValkeyClusterTransport)
        with pytest.raises(Exception, match="slot") as caught:
            await t.transaction(("SET", "xs:{a}", 1), ("SET", "xs:{b}", 2))
        assert not isinstance(caught.value, TransportError)
        assert t.connected


async def _all_keys(cluster: ValkeyCluster, pattern: str) -> list[bytes]:
    out: list[bytes] = []
    for port in cluster.master_ports():
        out += [k.encode() for k in cluster.cli_out(port, "keys", pattern).split()]
    return out


def _slot(cluster: ValkeyCluster, key: str) -> int:
    return int(cluster.cli_out(cluster.master_ports()[0], "cluster", "keyslot", key).strip())


@pytest.mark.real
async def test_delayed_entries_move_on_the_cluster_and_leave_the_index(
    valkey_cluster: ValkeyCluster,
) -> None:
    prefix = "due" + new_id()[:6]
    async with connected(f"{valkey_cluster.url}/?prefix={prefix}&{FAST}") as t:
        sub = await t.subscribe("a", "c", max_in_flight=8)
        for topic in ("a", "b", "c"):  # three delay sets, most likely on three shards
            await t.publish(topic, topic.encode(), delay_s=0.2)
        await t.publish_once("a", b"once", key="k", window_s=60, id=new_id(), delay_s=0.2)
        async with maintained(t):
            it = aiter(sub)
            got = sorted([(await asyncio.wait_for(anext(it), 5)).body for _ in range(2)])
            assert got == [b"a", b"once"]
            index = f"{prefix}:delayed"
            await _until(lambda: t.call("SCARD", index), 0)
        await sub.close()


async def _until(read: Any, want: Any, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while (got := await read()) != want:
        assert time.monotonic() < deadline, f"still {got!r}, want {want!r}"
        await asyncio.sleep(0.05)


@pytest.mark.real
async def test_a_topic_whose_slot_moves_to_another_master_keeps_flowing(
    valkey_cluster: ValkeyCluster,
) -> None:
    """Resharding the topic's slot while it is published and consumed: ASK while the slot
    is half moved (TRYAGAIN for the read over both streams), MOVED after; every message
    published before, during and after is delivered, and the stream is on the new master."""
    prefix = "mv" + new_id()[:6]
    async with (
        connected(f"{valkey_cluster.url}/?prefix={prefix}&{FAST}") as producer,
        connected(f"{valkey_cluster.url}/?prefix={prefix}&{FAST}") as consumer,
    ):
        assert isinstance(producer, ValkeyClusterTransport)
        stream = producer.keys.topic("moving")
        source = valkey_cluster.master_of(stream)
        target = next(p for p in valkey_cluster.master_ports() if p != source)
        sub = await consumer.subscribe("moving", "c", max_in_flight=16)
        seen: set[bytes] = set()

        async def consume() -> None:
            async for d in sub:
                seen.add(d.body)
                await d.ack()

        async def publish(bodies: range) -> None:
            for i in bodies:
                while True:
                    try:
                        await producer.publish("moving", b"%d" % i)
                        break
                    except TransportError:  # TRYAGAIN while the topic's keys are split
                        await asyncio.sleep(0.05)
                await asyncio.sleep(0.005)

        reader = asyncio.create_task(consume())
        await publish(range(50))
        writer = asyncio.create_task(publish(range(50, 250)))
        slot = _slot(valkey_cluster, stream)
        await asyncio.to_thread(valkey_cluster.migrate_slot, slot, source, target)
        await asyncio.wait_for(writer, 30)
        await publish(range(250, 300))
        await _until(lambda: _async(len(seen)), 300, 20)
        assert valkey_cluster.master_of(stream) == target
        await sub.close()
        reader.cancel()
        with contextlib.suppress(BaseException):
            await reader
    assert seen == {b"%d" % i for i in range(300)}


async def _async(value: Any) -> Any:
    return value


@pytest.mark.real
async def test_the_transport_finds_the_slot_redis_py_would(valkey_cluster: ValkeyCluster) -> None:
    """Its own slot look-up (no COMMAND GETKEYS round trip) agrees with redis-py's for every
    command form the transport sends (a wrong one would cost a MOVED per command)."""
    from redis.asyncio.cluster import RedisCluster

    async with connected(f"{valkey_cluster.url}/?prefix=sl") as t:
        assert isinstance(t, ValkeyClusterTransport)
        s, r = t.keys.topic("a"), t.keys.retry("a", "c")
        inbox = t.keys.reply()
        commands: list[tuple[Any, ...]] = [
            ("XREADGROUP", "GROUP", "c", "me", "COUNT", 5, "BLOCK", 10, "STREAMS", s, r, ">", ">"),
            ("BLMPOP", 1, 1, inbox, "LEFT", "COUNT", 5),
            ("EVAL", "return 1", 2, s, r, "x"),
            ("XACK", s, "c", "1-1", "2-1"),
            ("XADD", s, "*", "m", b"x"),
            ("SADD", t.keys.streams, s),
            ("XAUTOCLAIM", s, "c", "me", 10, "0-0", "COUNT", 5),
            ("ZADD", t.keys.delayed(r), 1, b"m"),
        ]
        for command in commands:
            ours = await t.redis._determine_slot(*command)
            theirs = await RedisCluster._determine_slot(t.redis, *command)
            assert ours == theirs, command
