"""Valkey-specific guarantees, on real Valkey 8 and Redis 7: bounded streams, expiring
reply inboxes, the key layout other languages rely on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable
from typing import TypeVar

import pytest
from kubefuncs.errors import TransportError
from kubefuncs.transport._valkey_cluster import ValkeyClusterTransport
from kubefuncs.transport.valkey import ValkeyTransport

from tests.servers import ServerProcess
from tests.transport.conftest import OPTIONS

pytestmark = pytest.mark.real
T = TypeVar("T")


@pytest.fixture(params=["valkey", "redis", "cluster"])
async def t(request: pytest.FixtureRequest) -> ValkeyTransport:
    prefix = "trim" + str(abs(hash(request.node.nodeid)) % 10**8)
    if request.param == "cluster":  # the session's Valkey Cluster (3 masters, 3 replicas)
        url = request.getfixturevalue("valkey_cluster").url
        transport: ValkeyTransport = ValkeyClusterTransport(f"{url}/?prefix={prefix}&{OPTIONS}")
    else:
        server: ServerProcess = request.getfixturevalue(f"{request.param}_server")
        transport = ValkeyTransport(f"redis://127.0.0.1:{server.port}/0?prefix={prefix}&{OPTIONS}")
    await transport.connect()
    yield transport
    await transport.close()


async def first(items: AsyncIterable[T], n: int) -> list[T]:
    """The first ``n`` items of a subscription or an inbox, within 5 s."""
    got: list[T] = []
    async with asyncio.timeout(5):
        async for item in items:
            got.append(item)
            if len(got) == n:
                break
    return got


async def consume(t: ValkeyTransport, channel: str, n: int, *, ack: bool = True) -> list[bytes]:
    sub = await t.subscribe("big", channel, max_in_flight=n)
    got = await first(sub, n)
    if ack:
        for d in got:
            await d.ack()
    await sub.close()
    return got


async def test_streams_are_trimmed_once_every_channel_acked(t: ValkeyTransport) -> None:
    stream = t.keys.topic("big")
    await t.ensure_channel("big", "a")
    await t.ensure_channel("big", "b")
    for i in range(50):
        await t.publish("big", b"%d" % i)
    await consume(t, "a", 50)
    # b has not read anything: nothing may go
    assert await t.trim() == 0
    assert await t.redis.xlen(stream) == 50
    held = await consume(t, "b", 20, ack=False)  # b read 20, acked none
    await held[5].ack()
    assert await t.trim() == 0  # the oldest unacked entry of b is the first one
    for d in held:
        await d.ack()
    await consume(t, "b", 30)
    await t.trim()
    assert await t.redis.xlen(stream) <= 1  # the last delivered entry may stay


async def test_trim_never_drops_what_a_channel_still_holds(t: ValkeyTransport) -> None:
    stream = t.keys.topic("big")
    await t.ensure_channel("big", "a")
    for i in range(10):
        await t.publish("big", b"%d" % i)
    got = await consume(t, "a", 10, ack=False)
    for d in got[:4]:
        await d.ack()
    await t.maintain()
    entries = await t.redis.xrange(stream)
    assert [e[1][b"m"] for e in entries] == [b"%d" % i for i in range(4, 10)]


async def test_reply_inbox_expires_when_its_owner_is_gone(t: ValkeyTransport) -> None:
    inbox = await t.open_inbox(ttl_s=60)
    await inbox.close()  # the owner is gone; a late reply still arrives
    await t.send_reply(inbox.address, b"late")
    ttl_ms = await t.redis.pttl(inbox.address)
    assert 0 < ttl_ms <= 60_000  # nobody reads it: it disappears by itself


async def test_send_reply_refuses_an_address_that_is_not_an_inbox(t: ValkeyTransport) -> None:
    from kubefuncs.errors import TransportError

    with pytest.raises(TransportError, match="not a reply inbox"):
        await t.send_reply(t.keys.topic("big"), b"x")


async def test_concurrent_publishes_land_once_each_in_order(t: ValkeyTransport) -> None:
    # Given more concurrent publishes than one batch command holds
    bodies = [b"%04d" % i for i in range(1100)]
    await t.publish("batch", b"first")  # registers the stream
    # When they are published concurrently (as tasks, then as publish_soon futures)
    await asyncio.gather(*(t.publish("batch", b) for b in bodies[:600]))
    await asyncio.gather(*(t.publish_soon("batch", b) for b in bodies[600:]))
    # Then each is in the stream exactly once, in the order they were published
    entries = await t.redis.xrange(t.keys.topic("batch"))
    assert [fields[b"m"] for _, fields in entries] == [b"first", *bodies]


async def test_replies_to_one_inbox_arrive_in_order_and_keep_a_ttl(t: ValkeyTransport) -> None:
    inbox = await t.open_inbox(60)
    await asyncio.gather(*(t.send_reply(inbox.address, b"%d" % i) for i in range(700)))
    assert 0 < await t.redis.pttl(inbox.address) <= 60_000
    got = await first(inbox, 700)
    assert got == [b"%d" % i for i in range(700)]
    await inbox.close()


async def test_reply_and_ack_settle_a_batch_together(t: ValkeyTransport) -> None:
    # Given three deliveries being handled at once, each with a reply to send
    inbox = await t.open_inbox(60)
    await t.ensure_channel("work", "c")
    for i in range(3):
        await t.publish("work", b"%d" % i)
    sub = await t.subscribe("work", "c", max_in_flight=3)
    got = await first(sub, 3)
    # When their replies and acks go out concurrently
    await asyncio.gather(*(t.reply_and_ack(d, inbox.address, b"re:" + d.body) for d in got))
    # Then every reply is in the inbox and nothing is pending on the channel
    replies = await t.redis.lrange(inbox.address, 0, -1)
    assert sorted(replies) == [b"re:0", b"re:1", b"re:2"]
    assert (await t.redis.xpending(t.keys.topic("work"), "c"))["pending"] == 0
    assert 0 < await t.redis.pttl(inbox.address) <= 60_000
    await sub.close()
    await inbox.close()


async def test_reply_and_ack_refuses_a_foreign_address_and_acks_nothing(
    t: ValkeyTransport,
) -> None:
    await t.ensure_channel("work2", "c")
    await t.publish("work2", b"x")
    sub = await t.subscribe("work2", "c", max_in_flight=1)
    async with asyncio.timeout(5):
        delivery = await anext(aiter(sub))
    with pytest.raises(TransportError, match="not a reply inbox"):
        await t.reply_and_ack(delivery, "elsewhere:inbox", b"r")
    assert (await t.redis.xpending(t.keys.topic("work2"), "c"))["pending"] == 1
    await sub.close()


async def test_consumers_that_left_are_forgotten_unless_they_hold_entries(
    t: ValkeyTransport,
) -> None:
    # Given a channel with three consumers: one gone with nothing pending, one gone holding
    # an entry, one alive
    stream = t.keys.topic("crowd")
    await t.ensure_channel("crowd", "c")
    await t.publish("crowd", b"held")
    await t.redis.xreadgroup("c", "left-holding", {stream: ">"}, count=1)
    await t.redis.xgroup_createconsumer(stream, "c", "left-empty")
    await asyncio.sleep(0.05)
    await t.redis.xgroup_createconsumer(stream, "c", "alive")
    # When consumers idle for 30 ms or more are pruned
    assert await t.prune_consumers(0.03) == 1
    # Then only the one that left with nothing pending is gone
    names = {c["name"] for c in await t.redis.xinfo_consumers(stream, "c")}
    assert names == {b"left-holding", b"alive"}
    assert (await t.redis.xpending(stream, "c"))["pending"] == 1


async def test_a_consumer_reads_at_most_read_count_entries_at_a_time(t: ValkeyTransport) -> None:
    # Given 40 waiting entries and a consumer with room for 100 at once, reading 16 at most
    assert t.read_count == 16
    await t.ensure_channel("wide", "c")
    for i in range(40):
        await t.publish("wide", b"%d" % i)
    sub = await t.subscribe("wide", "c", max_in_flight=100)
    stream = t.keys.topic("wide")
    pending_seen = []
    got = []
    # When it takes all of them
    async with asyncio.timeout(5):
        async for d in sub:
            got.append(d)
            pending_seen.append((await t.redis.xpending(stream, "c"))["pending"])
            if len(got) == 40:
                break
    # Then they came in reads of 16, 16 and 8, all unsettled, none lost
    assert pending_seen[0] == 16 and pending_seen[16] == 32 and pending_seen[-1] == 40
    assert sorted(int(d.body) for d in got) == list(range(40))
    await sub.close()
