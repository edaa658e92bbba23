"""At most once what must not happen twice: ``Client.publish(dedupe_key=...)`` and
``ctx.once``, on the memory bus and real Valkey, and a function SIGKILLed after its side
effect whose message another replica finishes without doing it again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from kubefuncs import Client, Context, function, wire
from kubefuncs.once import DONE_WITHOUT_RESULT, once
from kubefuncs.runtime import Runtime
from kubefuncs.transport import Transport, from_url
from kubefuncs.transport._recent import Recent

from tests.nsq.support import Pump
from tests.procs import Proc

from .test_process import lines, ready, start_fn, wait_for


@pytest.fixture(
    params=[
        "memory",
        pytest.param("valkey", marks=pytest.mark.real),
        pytest.param("cluster", marks=pytest.mark.real),
    ]
)
def bus(request: pytest.FixtureRequest) -> str:
    if request.param == "memory":
        return f"memory://once-{wire.new_id()}"
    url: str = request.getfixturevalue(
        "valkey_url" if request.param == "valkey" else "valkey_cluster_url"
    )
    return f"{url}&block_ms=100"


@pytest.fixture
async def client(bus: str) -> AsyncIterator[Client]:
    async with Client(bus) as c:
        yield c


async def received(transport: Transport, topic: str, channel: str, quiet_s: float) -> list[Any]:
    """The payloads ``channel`` of ``topic`` gets until none came for ``quiet_s``."""
    pump = Pump(await transport.subscribe(topic, channel, max_in_flight=100))
    out: list[Any] = []
    try:
        while True:
            try:
                delivery = await asyncio.wait_for(pump.queue.get(), quiet_s)
            except TimeoutError:
                return out
            out.append(wire.decode(delivery.body).payload)
            await delivery.ack()
    finally:
        await pump.stop()


# -- Client.publish(dedupe_key=...) ----------------------------------------------------------


async def test_a_duplicate_publish_is_dropped_and_returns_the_first_id(client: Client) -> None:
    t = client.transport
    await t.ensure_channel("orders", "c")
    first = await client.publish("orders", {"n": 1}, dedupe_key="order-1")
    again = await client.publish("orders", {"n": 2}, dedupe_key="order-1")
    other_topic = await client.publish("invoices", {"n": 3}, dedupe_key="order-1")
    without = await client.publish("orders", {"n": 4})
    assert again == first and len({first, other_topic, without}) == 3
    assert await received(t, "orders", "c", 0.5) == [{"n": 1}, {"n": 4}]


async def test_a_key_is_free_again_after_its_window(client: Client) -> None:
    t = client.transport
    await t.ensure_channel("orders", "c")
    first = await client.publish("orders", 1, dedupe_key="k", dedupe_window_s=0.2)
    await asyncio.sleep(0.3)
    second = await client.publish("orders", 2, dedupe_key="k", dedupe_window_s=0.2)
    assert first != second
    assert await received(t, "orders", "c", 0.5) == [1, 2]


@pytest.mark.real
async def test_on_valkey_another_process_sees_the_key(valkey_url: str) -> None:
    async with Client(valkey_url) as a, Client(valkey_url) as b:
        await a.transport.ensure_channel("orders", "c")
        first = await a.publish("orders", "a", dedupe_key="k")
        assert await b.publish("orders", "b", dedupe_key="k") == first
        assert await b.publish("orders", "b", dedupe_key="k", delay_s=0.1) == first
        later = await b.publish("orders", "late", dedupe_key="k2", delay_s=0.1)
        assert await a.publish("orders", "late", dedupe_key="k2", delay_s=0.1) == later
        await asyncio.sleep(0.2)
        await a.transport.maintain()  # moves the due delayed publish into the stream
        assert await received(a.transport, "orders", "c", 0.5) == ["a", "late"]


async def test_concurrent_duplicates_in_one_process_publish_once(client: Client) -> None:
    t = client.transport
    await t.ensure_channel("orders", "c")
    ids = await asyncio.gather(*(client.publish("orders", i, dedupe_key="k") for i in range(20)))
    assert len(set(ids)) == 1
    assert len(await received(t, "orders", "c", 0.5)) == 1


@pytest.mark.parametrize(
    ("key", "window_s"), [("", 1.0), ("k" * 1025, 1.0), ("k", 0), ("k", -1), ("k", True)]
)
async def test_a_bad_key_or_window_is_refused(client: Client, key: str, window_s: float) -> None:
    with pytest.raises(ValueError, match="dedupe_"):
        await client.publish("orders", 1, dedupe_key=key, dedupe_window_s=window_s)


def test_the_process_store_is_bounded() -> None:
    now = [0.0]
    recent = Recent(max_items=2, max_bytes=1000, clock=lambda: now[0])
    for k in "abc":
        recent.put(k, b"v", 10)
    assert len(recent) == 2 and recent.get("a") is None and recent.get("c") == b"v"
    recent.put("big", b"x" * 2000, 10)  # over the bytes: the older ones go, never the new one
    assert len(recent) == 1 and recent.get("big") is not None
    now[0] = 11
    assert recent.get("big") is None and recent.bytes == 0


# -- ctx.once --------------------------------------------------------------------------------


async def test_once_runs_the_side_effect_once_and_replays_its_result(bus: str) -> None:
    transport = from_url(bus)
    await transport.connect()
    done: list[str] = []

    async def charge(key: str) -> dict[str, str]:
        done.append(key)
        return {"charge": "ch_1"}

    try:
        first = await once(transport, "fn/id1/charge", charge)
        again = await once(transport, "fn/id1/charge", charge)
        other = await once(transport, "fn/id2/charge", charge)
    finally:
        await transport.close()
    assert first == again == other == {"charge": "ch_1"}
    assert done == ["fn/id1/charge", "fn/id2/charge"]


async def test_a_failed_side_effect_writes_no_marker(bus: str) -> None:
    transport = from_url(bus)
    await transport.connect()
    tries: list[str] = []

    def flaky(key: str) -> str:
        tries.append(key)
        if len(tries) == 1:
            raise ConnectionError("card network down")
        return "ok"

    try:
        with pytest.raises(ConnectionError):
            await once(transport, "k", flaky)
        assert await once(transport, "k", flaky) == "ok"
        assert await once(transport, "k", flaky) == "ok"
        unkeepable = await once(transport, "k2", lambda key: object())
        assert unkeepable is not None and await transport.recall("k2") == DONE_WITHOUT_RESULT
        assert await once(transport, "k2", lambda key: pytest.fail("ran twice")) is None
    finally:
        await transport.close()
    assert len(tries) == 2


EFFECTS: list[str] = []


@function("once-retry", name="once-retry", backoff_s=0.01, backoff_max_s=0.01)
async def retried(payload: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """Charges through ctx.once, then fails its first attempt (after the side effect)."""
    charge = await ctx.once("charge", lambda key: EFFECTS.append(key) or f"ch-{ctx.attempt}")
    if ctx.attempt == 1:
        raise RuntimeError("crashed after charging")
    return {"charge": charge, "attempt": ctx.attempt}


async def test_a_retried_message_does_its_side_effect_once(bus: str) -> None:
    # Given a function that fails after its side effect, retried (not answered at once)
    EFFECTS.clear()
    transport = from_url(bus)
    await transport.connect()
    fn = retried.with_settings(replace(retried.settings, reply_errors_at_once=False))
    runtime = Runtime(fn, transport=transport)
    task = asyncio.create_task(runtime.run())
    client = Client(transport=transport)
    try:
        await asyncio.wait_for(runtime.serving.wait(), 10)
        # When a message is handled twice
        reply = await client.call("once-retry", {"n": 1}, timeout_s=10)
    finally:
        runtime.stop()
        await task
        await client.close()
        await transport.close()
    # Then the second attempt got the first one's result and the side effect ran once
    assert reply == {"charge": "ch-1", "attempt": 2}
    assert len(EFFECTS) == 1 and EFFECTS[0].startswith("once-retry/")


# -- a real process killed mid-handler -------------------------------------------------------


@pytest.mark.real
async def test_a_function_killed_after_its_side_effect_is_not_charged_twice(
    valkey_url: str, tmp_path: Path, procs: list[Proc]
) -> None:
    # Given a function that charged (one line in the effects file), then hangs
    url = f"{valkey_url}&visibility_timeout_s=2&block_ms=100"
    record, effects = tmp_path / "record", tmp_path / "effects"
    env = {"KF_TEST_EFFECTS": str(effects), "KF_MAX_ATTEMPTS": "5"}
    first, port = start_fn(url, record, name="tests.runtime.fns:charge_once", **env)
    procs.append(first)
    ready(first, port)
    async with Client(url) as c:
        call = asyncio.create_task(c.call("rt-once", {"id": 11, "hang": True}, timeout_s=30))
        await wait_for(lambda: effects.exists() and effects.read_text().count("\n") == 1)
        # When it is SIGKILLed mid-handler and another replica takes the message over after
        # the visibility timeout
        first.kill()
        second, _ = start_fn(url, record, name="tests.runtime.fns:charge_once", **env)
        procs.append(second)
        reply = await call
    # Then the message was handled by the second, with the first's charge, done once
    assert reply["attempt"] == 2 and reply["pid"] == second.proc.pid
    assert reply["charge"] == f"charge-11-{first.proc.pid}"
    charged = effects.read_text().splitlines()
    assert len(charged) == 1 and charged[0].split()[1] == str(first.proc.pid)
    assert [(m, a) for _, m, a in lines(record, "done")] == [(11, 2)]
    assert [a for _, _, a in lines(record, "start")] == [1, 2]
