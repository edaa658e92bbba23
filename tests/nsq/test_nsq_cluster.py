"""The NSQ transport against several nsqd doubles: discovery, direct addresses, ephemeral
channels, max_in_flight across nodes, replies across nodes, and reconnecting to an nsqd that
was killed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from kubefuncs.errors import TransportError
from kubefuncs.transport.nsq import NsqTransport

from tests.nsq.support import OPTIONS, Pump, cluster, eventually, start_node
from tests.nsq_double import LookupdDouble, NsqdDouble, NsqdProcess


@pytest.fixture
async def transports() -> AsyncIterator[list[NsqTransport]]:
    made: list[NsqTransport] = []
    yield made
    for t in made:
        await t.close()


async def connected(made: list[NsqTransport], url: str) -> NsqTransport:
    t = NsqTransport(url)
    made.append(t)
    await t.connect()
    return t


def direct_url(*nodes: NsqdDouble, extra: str = "") -> str:
    tcp = ",".join(n.tcp_address for n in nodes)
    http = ",".join(n.http_address for n in nodes)
    return f"nsq://?nsqd={tcp}&nsqd_http={http}&{OPTIONS}{extra}"


def lookupd_url(lookupd: LookupdDouble, extra: str = "") -> str:
    return f"nsq://{lookupd.http_address}?{OPTIONS}{extra}"


async def test_lookupd_discovery_finds_every_nsqd_and_new_ones(
    transports: list[NsqTransport],
) -> None:
    async with cluster(2) as (lookupd, (a, b)):
        # Given a consumer that knows only nsqlookupd
        t = await connected(transports, lookupd_url(lookupd))
        pump = Pump(await t.subscribe("d", "c", max_in_flight=10))
        # When messages land on both nsqd nodes
        a.publish("d", [b"from-a"])
        b.publish("d", [b"from-b"])
        # Then it consumes both
        got = await pump.take(2)
        assert sorted(d.body for d in got) == [b"from-a", b"from-b"]
        # And an nsqd that joins later is consumed after the next lookupd poll
        c = await start_node(lookupd)
        try:
            await eventually(lambda: any(n.tcp == c.tcp_address for n in t.nodes))
            await eventually(lambda: "c" in c.topics.get("d", _NoTopic).channels)
            c.publish("d", [b"from-c"])
            assert [d.body for d in await pump.take()] == [b"from-c"]
        finally:
            await pump.stop()
            await t.close()
            await c.stop()


class _NoTopic:
    channels: dict[str, object] = {}


async def test_direct_nsqd_addresses_without_lookupd(transports: list[NsqTransport]) -> None:
    a, b = await start_node(None), await start_node(None)
    try:
        t = await connected(transports, direct_url(a, b))
        # ensure_channel creates the channel on every nsqd
        await t.ensure_channel("jobs", "workers")
        assert all("workers" in n.topics["jobs"].channels for n in (a, b))
        pump = Pump(await t.subscribe("jobs", "workers", max_in_flight=4))
        a.publish("jobs", [b"1"])
        b.publish("jobs", [b"2"])
        await t.publish("jobs", b"3")
        got = await pump.take(3)
        assert sorted(d.body for d in got) == [b"1", b"2", b"3"]
        # stats add up the figures of every nsqd
        stats = await t.stats("jobs", "workers")
        assert (stats.depth, stats.in_flight) == (0, 3)
        for d in got:
            await d.ack()
        await pump.stop()
    finally:
        await a.stop()
        await b.stop()


async def test_an_ephemeral_channel_leaves_nothing_behind(transports: list[NsqTransport]) -> None:
    nsqd = await start_node(None)
    try:
        # Given a reader on an ephemeral channel
        t = await connected(transports, direct_url(nsqd))
        pump = Pump(await t.subscribe("news", "reader#ephemeral", max_in_flight=2))
        await t.publish("news", b"n1")
        (got,) = await pump.take()
        await got.ack()
        # Then it reads the topic alone: no replay topic is made for a channel that cannot
        # outlive its reader
        assert list(nsqd.topics) == ["news"]
        # And when it stops, its channel is gone from nsqd
        await pump.stop()
        await eventually(lambda: not nsqd.topics["news"].channels)
    finally:
        await nsqd.stop()


async def test_max_in_flight_holds_across_nodes(transports: list[NsqTransport]) -> None:
    async with cluster(2, msg_timeout_s=10) as (lookupd, (a, b)):
        t = await connected(transports, lookupd_url(lookupd))
        pump = Pump(await t.subscribe("one", "c", max_in_flight=1))
        a.publish("one", [b"a"])
        b.publish("one", [b"b"])
        # one at a time, although two nsqd nodes hold a message each
        (first,) = await pump.take()
        assert await pump.nothing(0.7)  # longer than the RDY rotation
        await first.ack()
        (second,) = await pump.take(timeout_s=3)
        assert {first.body, second.body} == {b"a", b"b"}
        await second.ack()
        await pump.stop()


async def test_dead_letters_of_every_nsqd_are_listed_replayed_and_purged(
    transports: list[NsqTransport],
) -> None:
    async with cluster(2) as (lookupd, (a, b)):
        t = await connected(transports, lookupd_url(lookupd))
        pump = Pump(await t.subscribe("dl", "c", max_in_flight=5))
        a.publish("dl", [b"x"])
        b.publish("dl", [b"y"])
        for d in await pump.take(2):
            await d.dead_letter(f"bad {d.body.decode()}")
        letters = await t.dead_letters("dl", "c")
        assert sorted((d.body, d.reason) for d in letters) == [(b"x", "bad x"), (b"y", "bad y")]
        assert (await t.stats("dl", "c")).dead == 2
        # replay one by id: it comes back to this channel with attempt 1
        x = next(d for d in letters if d.body == b"x")
        assert await t.replay_dead("dl", "c", [x.id]) == 1
        (back,) = await pump.take()
        assert (back.body, back.attempt) == (b"x", 1)
        await back.ack()
        assert [d.body for d in await t.dead_letters("dl", "c")] == [b"y"]
        assert await t.purge_dead("dl", "c") == 1
        assert await t.dead_letters("dl", "c") == []
        await pump.stop()


async def test_a_reply_reaches_an_inbox_on_an_nsqd_the_replier_has_not_polled_yet(
    transports: list[NsqTransport],
) -> None:
    async with cluster(1) as (lookupd, (a,)):
        # Given a function that polls lookupd rarely and so far knows nsqd A only
        function = await connected(transports, lookupd_url(lookupd, "&lookupd_poll_interval_s=60"))
        assert [n.tcp for n in function.nodes] == [a.tcp_address]
        # And a gateway on a new nsqd B whose inbox lives there
        b = await start_node(lookupd)
        try:
            gateway = await connected(transports, direct_url(b))
            inbox = await gateway.open_inbox(ttl_s=5)
            assert inbox.address.endswith("@" + b.tcp_address)
            # When the function replies / Then the reply arrives without waiting for a poll
            async with asyncio.timeout(1.5):
                await function.send_reply(inbox.address, b"r1")
                await function.send_reply(inbox.address, b"r2")
                got = []
                async for body in inbox:
                    got.append(body)
                    if len(got) == 2:
                        break
            assert got == [b"r1", b"r2"]
            assert any(n.tcp == b.tcp_address for n in function.nodes)
            await inbox.close()
        finally:
            await gateway.close()
            await b.stop()


async def test_replies_to_an_inbox_that_is_gone_are_dropped(
    transports: list[NsqTransport],
) -> None:
    async with cluster(1) as (lookupd, _):
        owner = await connected(transports, lookupd_url(lookupd))
        inbox = await owner.open_inbox(ttl_s=5)
        await inbox.close()
        replier = await connected(transports, lookupd_url(lookupd))
        await replier.send_reply(inbox.address, b"late")  # no error: nobody waits any more
        with pytest.raises(TransportError, match="not a reply inbox"):
            await replier.send_reply("orders@127.0.0.1:4150", b"x")


@pytest.mark.parametrize("form", ["lookupd", "direct"])
async def test_reconnects_after_the_nsqd_process_is_killed_and_restarted(
    form: str, transports: list[NsqTransport]
) -> None:
    proc = NsqdProcess(lookupd_http_port=0 if form == "lookupd" else None)
    await asyncio.to_thread(proc.start)
    try:
        if form == "lookupd":
            url = f"nsq://{proc.lookupd_http_address}?{OPTIONS}"
        else:
            url = f"nsq://?nsqd={proc.tcp_address}&nsqd_http={proc.http_address}&{OPTIONS}"
        t = await connected(transports, url)
        pump = Pump(await t.subscribe("r", "c", max_in_flight=5))
        await t.publish("r", b"before")
        await (await pump.take())[0].ack()
        # When nsqd dies (SIGKILL)
        await asyncio.to_thread(proc.kill)
        await eventually(lambda: not t.connected)
        with pytest.raises(TransportError):
            await t.publish("r", b"nobody takes this")
        # And comes back on the same ports
        await asyncio.to_thread(proc.start)
        # Then publisher and consumer reconnect by themselves
        await eventually(lambda: t.connected, within_s=10)
        await eventually(lambda: len(pump.sub.links) == 2, within_s=10)  # type: ignore[attr-defined]
        await t.publish("r", b"after")
        (d,) = await pump.take()
        assert d.body == b"after"
        await d.ack()
        await pump.stop()
    finally:
        await asyncio.to_thread(proc.stop)
