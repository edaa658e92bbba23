"""The transport contract, one body for every bus (see tests/transport/conftest.py)."""

from __future__ import annotations

import asyncio

from kubefuncs.transport import Delivery, Subscription, Transport

from tests.transport.conftest import BusFactory, Reader, maintained, reader


async def take(r: Reader | Subscription, n: int = 1, timeout_s: float = 5.0) -> list[Delivery]:
    if isinstance(r, Subscription):
        r = reader(r)
    async with asyncio.timeout(timeout_s):
        return [await r.queue.get() for _ in range(n)]


async def nothing_more(r: Reader, wait_s: float = 0.3) -> bool:
    await asyncio.sleep(wait_s)
    return r.queue.empty()


async def test_fan_out_every_channel_gets_every_message(bus: BusFactory) -> None:
    # Given two channels on one topic
    t = await bus()
    audit = await t.subscribe("orders", "audit", max_in_flight=10)
    email = await t.subscribe("orders", "email", max_in_flight=10)
    # When three messages are published
    for i in range(3):
        await t.publish("orders", b"m%d" % i)
    # Then each channel gets all three
    for sub in (audit, email):
        got = await take(sub, 3)
        assert sorted(d.body for d in got) == [b"m0", b"m1", b"m2"]
        assert all(d.attempt == 1 for d in got)
        for d in got:
            await d.ack()


async def test_consumers_of_one_channel_share_the_messages(bus: BusFactory) -> None:
    # Given two consumers (separate connections) in one channel
    t1, t2 = await bus(), await bus()
    a = reader(await t1.subscribe("jobs", "workers", max_in_flight=1))
    b = reader(await t2.subscribe("jobs", "workers", max_in_flight=1))
    # When two messages are published
    await t1.publish("jobs", b"one")
    await t1.publish("jobs", b"two")
    # Then each consumer holds one (max_in_flight=1), and no message is seen twice
    first, second = (await take(a))[0], (await take(b))[0]
    assert {first.body, second.body} == {b"one", b"two"}
    await first.ack()
    await second.ack()
    assert await nothing_more(a) and await nothing_more(b)


async def test_max_in_flight_holds_back_deliveries_until_one_is_settled(bus: BusFactory) -> None:
    t = await bus()
    sub = reader(await t.subscribe("t", "c", max_in_flight=2))
    for i in range(3):
        await t.publish("t", b"%d" % i)
    got = await take(sub, 2)
    assert await nothing_more(sub)  # the third waits for a free slot
    await got[0].ack()
    assert len(await take(sub, 1)) == 1


async def test_unsettled_message_is_redelivered_after_visibility_timeout(bus: BusFactory) -> None:
    # Given a consumer that takes a message and dies without settling it
    crashed, survivor = await bus(), await bus()
    dead_sub = await crashed.subscribe("work", "c", max_in_flight=5)
    live_sub = await survivor.subscribe("work", "c", max_in_flight=5)
    await crashed.publish("work", b"job")
    (lost,) = await take(dead_sub)
    assert lost.attempt == 1
    await dead_sub.close()
    # When the visibility timeout passes
    (again,) = await take(live_sub, timeout_s=5)
    # Then another consumer gets it with the attempt count increased
    assert again.body == b"job"
    assert again.attempt == 2
    await again.ack()


async def test_touch_keeps_a_long_running_message(bus: BusFactory) -> None:
    t1, t2 = await bus(), await bus()
    busy = reader(await t1.subscribe("slow", "c", max_in_flight=1))
    await t1.publish("slow", b"long")
    (d,) = await take(busy)
    other = reader(await t2.subscribe("slow", "c", max_in_flight=1))
    for _ in range(6):  # 0.6 s of work, visibility timeout 0.4 s
        await asyncio.sleep(0.1)
        await d.touch()
    assert await nothing_more(other, 0.2)
    await d.ack()


async def test_retry_redelivers_to_the_same_channel_only_after_the_delay(bus: BusFactory) -> None:
    t = await bus()
    a = reader(await t.subscribe("r", "a", max_in_flight=5))
    b = reader(await t.subscribe("r", "b", max_in_flight=5))
    await t.publish("r", b"x")
    (da,) = await take(a)
    (db,) = await take(b)
    await db.ack()
    async with maintained(t):
        loop = asyncio.get_running_loop()
        started = loop.time()
        await da.retry(0.3)
        (again,) = await take(a)
        assert loop.time() - started >= 0.25
        assert (again.body, again.attempt) == (b"x", 2)
        await again.ack()
        assert await nothing_more(b)  # channel b is not bothered by a's retry


async def test_immediate_retry_counts_the_attempt(bus: BusFactory) -> None:
    t = await bus()
    sub = reader(await t.subscribe("r0", "c", max_in_flight=5))
    await t.publish("r0", b"x")
    for attempt in (1, 2, 3):
        (d,) = await take(sub)
        assert d.attempt == attempt
        await (d.retry(0) if attempt < 3 else d.ack())


async def test_delayed_publish(bus: BusFactory) -> None:
    t = await bus()
    sub = reader(await t.subscribe("later", "c", max_in_flight=5))
    async with maintained(t):
        started = asyncio.get_running_loop().time()
        await t.publish("later", b"soon", delay_s=0.3)
        assert (await t.stats("later", "c")).delayed == 1
        (d,) = await take(sub)
        assert asyncio.get_running_loop().time() - started >= 0.25
        assert (d.body, d.attempt) == (b"soon", 1)
        await d.ack()


async def test_dead_letter_keeps_the_body_and_reason(bus: BusFactory) -> None:
    t = await bus()
    sub = reader(await t.subscribe("d", "c", max_in_flight=5))
    await t.publish("d", b"poison")
    (d,) = await take(sub)
    await d.retry(0)
    (d,) = await take(sub)
    await d.dead_letter("ValueError: bad input")
    (dead,) = await t.dead_letters("d", "c")
    assert (dead.body, dead.reason, dead.attempt) == (b"poison", "ValueError: bad input", 2)
    stats = await t.stats("d", "c")
    assert (stats.depth, stats.in_flight, stats.dead) == (0, 0, 1)
    # replay puts it back with the attempt count reset; purge empties the dead letters
    assert await t.replay_dead("d", "c") == 1
    (back,) = await take(sub)
    assert (back.body, back.attempt) == (b"poison", 1)
    await back.dead_letter("again")
    assert await t.purge_dead("d", "c") == 1
    assert await t.dead_letters("d", "c") == []


async def test_first_channel_gets_messages_published_before_it_existed(bus: BusFactory) -> None:
    t = await bus()
    await t.publish("early", b"kept")
    (d,) = await take(await t.subscribe("early", "first", max_in_flight=1))
    assert d.body == b"kept"


async def test_ensure_channel_keeps_messages_for_a_channel_nobody_consumes_yet(
    bus: BusFactory,
) -> None:
    t = await bus()
    await t.ensure_channel("prep", "a")
    await t.ensure_channel("prep", "b")
    await t.publish("prep", b"x")
    assert (await t.stats("prep", "b")).depth == 1
    (d,) = await take(await t.subscribe("prep", "b", max_in_flight=1))
    assert d.body == b"x"


async def test_stats_count_depth_and_in_flight(bus: BusFactory) -> None:
    t = await bus()
    sub = await t.subscribe("s", "c", max_in_flight=1)
    for _ in range(3):
        await t.publish("s", b"x")
    (d,) = await take(sub)
    stats = await t.stats("s", "c")
    assert (stats.depth, stats.in_flight) == (2, 1)
    await d.ack()


async def test_reply_inbox_receives_replies_in_order(bus: BusFactory) -> None:
    owner, replier = await bus(), await bus()
    inbox = await owner.open_inbox(ttl_s=5)
    for i in range(3):
        await replier.send_reply(inbox.address, b"r%d" % i)
    got = []
    async with asyncio.timeout(5):
        async for body in inbox:
            got.append(body)
            if len(got) == 3:
                break
    assert got == [b"r0", b"r1", b"r2"]
    await inbox.close()


async def test_publish_rejects_bad_topic_names(bus: BusFactory) -> None:
    import pytest
    from kubefuncs.errors import ConfigError

    t: Transport = await bus()
    with pytest.raises(ConfigError, match="topic"):
        await t.publish("no spaces allowed", b"x")
