"""``Transport.consumers``: the live consumers of a channel, as the gateway's scaler reads
them (gateway/presence.py). NSQ cannot tell (None)."""

from __future__ import annotations

import asyncio
import time

from kubefuncs.transport import Transport

from .conftest import BusFactory, reader


async def eventually(bus: Transport, channel: str | None, idle_s: float, want: int) -> None:
    deadline = time.monotonic() + 5
    seen = None
    while time.monotonic() < deadline:
        seen = await bus.consumers("orders", channel, idle_s=idle_s)
        if seen == want:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"consumers of orders/{channel}: {seen}, wanted {want}")


async def test_consumers_count_the_readers_of_a_channel_and_forget_the_gone(
    bus: BusFactory,
) -> None:
    t = await bus()
    # Given a topic nobody ever consumed
    never = await t.consumers("orders", "fn", idle_s=10)
    if never is None:  # a bus that cannot tell (NSQ): the gateway treats it as maybe cold
        return
    assert never == 0
    assert await t.consumers("orders", None, idle_s=10) == 0
    # When a consumer of fn reads (a message: Redis before 7.2 lists a consumer only once
    # it was served one), Then it counts for fn and for the topic, not for audit
    sub = await (await bus()).subscribe("orders", "fn", max_in_flight=1)
    got = reader(sub)
    await t.publish("orders", b"x")
    await (await asyncio.wait_for(got.queue.get(), 5)).ack()
    await eventually(t, "fn", 10, 1)
    await eventually(t, None, 10, 1)
    assert await t.consumers("orders", "audit", idle_s=10) == 0
    # And once it stopped reading it no longer counts (idle past idle_s)
    await sub.close()
    await eventually(t, "fn", 0.2, 0)
