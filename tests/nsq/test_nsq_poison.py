"""Poison on NSQ: whatever a message holds, the function's consume loop dead-letters it with
the reason and goes on; a reply nsqd refuses is Undeliverable, not retried without end."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from kubefuncs import Client, Context, RemoteError, function, wire
from kubefuncs.errors import Undeliverable
from kubefuncs.runtime import Runtime
from kubefuncs.transport import Transport, from_url
from kubefuncs.transport.nsq import NsqTransport

from tests.nsq.support import DOUBLE, OPTIONS, eventually
from tests.nsq_double import NsqdDouble, running_nsqd
from tests.nsq_double.broker import Message

MAX_MSG_SIZE = 64 * 1024  # nsqd's --max-msg-size, small so the tests stay light
HANDLED: list[str] = []


@function("poison", max_attempts=3, backoff_s=0.05, backoff_max_s=0.1)
async def poison(payload: dict[str, str], ctx: Context) -> str:
    HANDLED.append(payload["op"])
    if payload["op"] == "fail":
        raise ValueError("always fails")
    if payload["op"] == "huge reply":
        return "x" * (MAX_MSG_SIZE + 1)
    return f"{payload['op']} done"


@dataclass
class Running:
    nsqd: NsqdDouble
    function: Transport
    caller: Client


@pytest.fixture
async def running() -> AsyncIterator[Running]:
    HANDLED.clear()
    async with running_nsqd(max_msg_size=MAX_MSG_SIZE, **DOUBLE) as nsqd:
        url = f"nsq://?nsqd={nsqd.tcp_address}&nsqd_http={nsqd.http_address}&{OPTIONS}"
        function_bus, caller_bus = from_url(url), from_url(url)
        await function_bus.connect()
        await caller_bus.connect()
        runtime = Runtime(poison, transport=function_bus)
        task = asyncio.create_task(runtime.run())
        await eventually(lambda: runtime.ready)
        caller = Client(transport=caller_bus)
        try:
            yield Running(nsqd, function_bus, caller)
            assert not task.done(), "the consume loop ended"
            assert runtime.ready
        finally:
            runtime.stop()
            await task
            await caller.close()
            await caller_bus.close()
            await function_bus.close()


async def dead_letters(running: Running, count: int) -> list[object]:
    transport = running.caller.transport

    async def found() -> list[object] | None:
        letters = await transport.dead_letters("poison", "poison")
        return letters if len(letters) >= count else None

    return list(await eventually(found, within_s=8))


async def still_serves(running: Running) -> None:
    assert await running.caller.call("poison", {"op": "ping"}, timeout_s=5) == "ping done"


@pytest.mark.parametrize(
    "body",
    [b"not an envelope", b"\x81\xa1v\xcd\xff\xff", b"\xc1" * 100, b"{" * 5000],
    ids=["text", "bad version", "invalid msgpack", "deep"],
)
async def test_a_body_that_is_no_envelope_is_dead_lettered_with_the_reason(
    running: Running, body: bytes
) -> None:
    # Given a message on the function's topic that is not an envelope
    assert isinstance(running.caller.transport, NsqTransport)
    wire_topic = running.caller.transport.config.wire("poison")
    running.nsqd.publish(wire_topic, [body])
    # Then it is a dead letter with the reason, and the function goes on serving
    (letter,) = await dead_letters(running, 1)
    assert letter.reason.startswith("malformed") and letter.body == body  # type: ignore[attr-defined]
    await still_serves(running)
    assert HANDLED == ["ping"]


async def test_a_body_too_large_to_keep_is_dead_lettered_without_it(running: Running) -> None:
    # Given a poison body so close to nsqd's --max-msg-size that its dead letter is too big
    assert isinstance(running.caller.transport, NsqTransport)
    wire_topic = running.caller.transport.config.wire("poison")
    running.nsqd.publish(wire_topic, [b"\xc1" * (MAX_MSG_SIZE - 8)])
    # Then the dead letter keeps the reason and says why the body is missing
    (letter,) = await dead_letters(running, 1)
    assert letter.body == b""  # type: ignore[attr-defined]
    assert "malformed" in letter.reason and "not kept" in letter.reason  # type: ignore[attr-defined]
    await still_serves(running)


async def test_a_huge_attempt_count_is_dead_lettered_at_its_first_failure(
    running: Running,
) -> None:
    # Given a failing message that nsqd has already handed out 65534 times
    assert isinstance(running.caller.transport, NsqTransport)
    wire_topic = running.caller.transport.config.wire("poison")
    await running.caller.publish("poison", {"op": "warm"})
    await eventually(lambda: "warm" in HANDLED)
    body = _envelope_of(running, {"op": "fail"})
    channel = running.nsqd.topics[wire_topic].channels["poison"]
    channel.put(Message(b"f" * 16, body, time.time_ns(), attempts=0xFFFE))
    # Then it is dead-lettered at once (attempt 65535 >= max_attempts), never retried
    (letter,) = await dead_letters(running, 1)
    assert letter.attempt == 0xFFFF and "always fails" in letter.reason  # type: ignore[attr-defined]
    assert HANDLED.count("fail") == 1
    await still_serves(running)


def _envelope_of(running: Running, payload: dict[str, str]) -> bytes:
    return wire.encode(wire.make("poison", payload))


async def test_a_reply_nsqd_refuses_is_undeliverable_and_not_retried_forever(
    running: Running,
) -> None:
    # Given a function whose reply is bigger than nsqd's --max-msg-size
    caller_bus = running.caller.transport
    inbox = await caller_bus.open_inbox(10)
    try:
        with pytest.raises(Undeliverable, match="E_BAD_MESSAGE"):
            await running.function.send_reply(inbox.address, b"x" * (MAX_MSG_SIZE + 1))
    finally:
        await inbox.close()
    # When a caller waits for such a reply: Then it gets the error at once, and the message
    # is settled (answered with the error, or dead-lettered), not handed out again
    with pytest.raises(RemoteError, match="E_BAD_MESSAGE"):
        await running.caller.call("poison", {"op": "huge reply"}, timeout_s=8)

    async def settled() -> bool:
        stats = await caller_bus.stats("poison", "poison")
        return stats.depth == stats.in_flight == stats.delayed == 0

    await eventually(settled)
    await asyncio.sleep(0.5)  # a retry would show up within its 0.05..0.1 s backoff
    assert HANDLED.count("huge reply") == 1
    await still_serves(running)
