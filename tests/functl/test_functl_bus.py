"""Bus operations (prepare, publish, call, stats, dead letters) on the in-memory bus."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from kubefuncs import wire
from kubefuncs.functl import busops
from kubefuncs.functl.errors import BusUnreachable, CallFailed, UsageError
from kubefuncs.transport import DeadLetter, from_url

_names = itertools.count()


@pytest.fixture
def bus() -> str:
    return f"memory://functl-bus-{next(_names)}"


async def test_prepare_creates_channels_so_early_messages_are_kept(bus: str) -> None:
    # Given the bus was prepared for two functions
    said: list[str] = []
    await busops.prepare(bus, None, [("orders", "billing"), ("orders", "audit")], said.append)
    # When a message is published before any consumer runs
    await busops.publish(bus, None, "orders", {"id": 1}, headers={}, delay_s=0)
    # Then both channels hold it
    figures = await busops.stats(bus, None, [("orders", "billing"), ("orders", "audit")])
    assert [f.depth for f in figures] == [1, 1]
    assert said == [
        "bus topic orders channel billing ready",
        "bus topic orders channel audit ready",
    ]


async def test_publish_sends_an_event_envelope(bus: str) -> None:
    async with from_url(bus) as t:
        await t.ensure_channel("t", "c")
        sub = await t.subscribe("t", "c", max_in_flight=1)
        msg_id = await busops.publish(bus, None, "t", {"a": 1}, headers={"x": "y"}, delay_s=0)
        delivery = await anext(aiter(sub))
        env = wire.decode(delivery.body)
        await delivery.ack()
        await sub.close()
    assert (env.id, env.kind, env.topic, env.payload, dict(env.headers)) == (
        msg_id,
        "event",
        "t",
        {"a": 1},
        {"x": "y"},
    )


async def _responder(bus: str, topic: str, reply: object, *, error: bool = False) -> None:
    async with from_url(bus) as t:
        sub = await t.subscribe(topic, topic, max_in_flight=1)
        async for delivery in sub:
            request = wire.decode(delivery.body)
            payload = wire.ErrorInfo("ValueError", "bad input") if error else reply
            kind = wire.ERROR if error else wire.REPLY
            await t.send_reply(
                request.reply_to or "", wire.encode(wire.reply_for(request, payload, kind=kind))
            )
            await delivery.ack()
            break
        await sub.close()


async def test_call_returns_the_reply_payload(bus: str) -> None:
    async with from_url(bus) as t:
        await t.ensure_channel("echo", "echo")
    task = asyncio.create_task(_responder(bus, "echo", {"pong": True}))
    assert await busops.call(bus, None, "echo", {"ping": 1}, timeout_s=5) == {"pong": True}
    await task


async def test_call_error_reply_and_timeout_are_call_failures(bus: str) -> None:
    async with from_url(bus) as t:
        await t.ensure_channel("echo", "echo")
    task = asyncio.create_task(_responder(bus, "echo", None, error=True))
    with pytest.raises(CallFailed, match="bad input") as e:
        await busops.call(bus, None, "echo", {}, timeout_s=5)
    assert e.value.exit_code == 1
    await task
    with pytest.raises(CallFailed, match="no reply"):
        await busops.call(bus, None, "nobody", {}, timeout_s=0.05)


async def test_dead_letters_can_be_listed_replayed_and_purged(bus: str) -> None:
    async with from_url(bus) as t:
        await t.ensure_channel("jobs", "jobs")
        await t.publish("jobs", wire.encode(wire.make("jobs", {"n": 1})))
        await t.publish("jobs", b"not msgpack \xc1")
        sub = await t.subscribe("jobs", "jobs", max_in_flight=2)
        it = aiter(sub)
        for _ in range(2):
            await (await anext(it)).dead_letter("boom")
        await sub.close()
    letters = await busops.dead_letters(bus, None, "jobs", "jobs", limit=10)
    shown = [busops.describe_dead(x) for x in letters]
    assert shown[0]["payload"] == {"n": 1} and shown[0]["reason"] == "boom"
    assert "undecodable" in shown[1] and shown[1]["body_base64"]
    assert await busops.replay(bus, None, "jobs", "jobs", [letters[0].id]) == 1
    assert await busops.purge(bus, None, "jobs", "jobs", None) == 1
    assert (await busops.stats(bus, None, [("jobs", "jobs")]))[0].dead == 0


async def test_a_bad_bus_url_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown scheme"):
        await busops.stats("amqp://x", None, [("t", "c")])


async def test_an_unreachable_bus_names_the_fix() -> None:
    with pytest.raises(BusUnreachable, match="--bus") as e:
        await busops.stats("valkey://127.0.0.1:9/0", "secret", [("t", "c")])
    assert e.value.exit_code == 3 and "secret" not in str(e.value)


def test_describe_dead_makes_bytes_json_safe() -> None:
    body = wire.encode(wire.make("t", {"raw": b"\xff\x00", "text": b"hi"}))
    out = busops.describe_dead(DeadLetter("1-0", body, "r", 3, 0))
    assert out["payload"] == {"raw": {"base64": "/wA="}, "text": "hi"}
    assert out["time"] == "1970-01-01T00:00:00+00:00" and out["attempt"] == 3
