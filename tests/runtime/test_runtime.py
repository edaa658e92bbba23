"""Runtime semantics on the in-process bus (kubefuncs.testing)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from kubefuncs import Context, HttpRequest, HttpResponse, RemoteError, Retry, function, wire
from kubefuncs.testing import run


@function("echo")
async def echo(payload: Any, ctx: Context) -> Any:
    return {"payload": payload, "attempt": ctx.attempt}


def shout(payload: str) -> str:  # plain, sync, no context
    return payload.upper()


async def test_reply_reaches_the_caller() -> None:
    async with run(echo) as f:
        assert await f.call("hi") == {"payload": "hi", "attempt": 1}


async def test_sync_handler_without_context() -> None:
    async with run(shout, topic="shout") as f:
        assert await f.call("abc") == "ABC"


async def test_http_request_gets_an_http_response() -> None:
    @function("web")
    async def web(req: HttpRequest) -> Any:
        return HttpResponse(201, {"x-path": req.path}, req.body[::-1])

    async with run(web) as f:
        env = wire.make(
            "web",
            HttpRequest("POST", "/a/b", "q=1", {}, b"abc"),
            kind=wire.HTTP_REQUEST,
            reply_to=await f.client.replies.address(),
        )
        reply = await f.client.request(env, 5)
    assert reply.kind == wire.HTTP_RESPONSE
    assert reply.payload == HttpResponse(201, {"x-path": "/a/b"}, b"cba")
    assert reply.correlation_id == env.id


async def test_failure_retries_with_backoff_then_succeeds() -> None:
    seen: list[int] = []

    @function("flaky", backoff_s=0.01, max_attempts=5)
    async def flaky(payload: Any, ctx: Context) -> None:
        seen.append(ctx.attempt)
        if ctx.attempt < 3:
            raise ValueError("not yet")

    async with run(flaky) as f:
        await f.publish("x")
        async with asyncio.timeout(5):
            while len(seen) < 3:
                await asyncio.sleep(0.01)
        await f.settle()
        assert seen == [1, 2, 3]
        assert await f.dead_letters() == []
        assert f.runtime.metrics.retries.get() == 2


async def test_dead_letter_after_max_attempts_keeps_the_message_and_reason() -> None:
    @function("poison", backoff_s=0.01, max_attempts=3)
    async def poison(payload: Any) -> None:
        raise ValueError(f"cannot handle {payload}")

    async with run(poison) as f:
        msg_id = await f.publish("bad")
        await f.settle()
        (dead,) = await f.dead_letters()
    assert dead.attempt == 3
    assert dead.reason == "ValueError: cannot handle bad"
    assert wire.decode(dead.body).id == msg_id


async def test_waiting_caller_gets_an_error_reply_at_once() -> None:
    @function("broken")
    async def broken(payload: Any) -> None:
        raise LookupError("no such thing")

    async with run(broken) as f:
        with pytest.raises(RemoteError) as info:
            await f.call("x")
    assert (info.value.type, info.value.message) == ("LookupError", "no such thing")


async def test_malformed_message_is_dead_lettered_and_the_function_keeps_serving() -> None:
    async with run(echo) as f:
        await f.publish_raw(b"\xc1 not msgpack")
        await f.publish_raw(wire.encode(wire.make("echo", 1)).replace(b"\xa1v\x01", b"\xa1v\x07"))
        assert await f.call("still here") == {"payload": "still here", "attempt": 1}
        await f.settle()
        reasons = sorted(d.reason for d in await f.dead_letters())
    assert reasons[0].startswith("malformed: body is not valid msgpack")
    assert reasons[1].startswith("malformed: unsupported envelope version 7")


async def test_message_past_its_deadline_is_skipped_and_counted() -> None:
    calls: list[Any] = []

    @function("late")
    async def late(payload: Any) -> None:
        calls.append(payload)

    async with run(late) as f:
        env = wire.make("late", "old", deadline_ms=wire.now_ms() - 1)
        await f.publish_raw(wire.encode(env))
        await f.publish("fresh")
        await f.settle()
        assert calls == ["fresh"]
        registry = f.runtime.metrics.registry
        labels = {"function": f.runtime.fn.name, "outcome": "expired"}
        assert registry.get_sample_value("kubefuncs_invocations_total", labels) == 1
        assert await f.dead_letters() == []


async def test_per_message_time_limit() -> None:
    @function("slow", timeout_s=0.1)
    async def slow(payload: Any) -> None:
        await asyncio.sleep(10)

    async with run(slow) as f:
        started = time.monotonic()
        with pytest.raises(RemoteError) as info:
            await f.call("x")
    assert info.value.type == "TimeoutError"
    assert time.monotonic() - started < 2


async def test_concurrency_limit_is_honoured() -> None:
    running = peak = 0

    @function("busy", concurrency=3)
    async def busy(payload: Any) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.02)
        running -= 1

    async with run(busy) as f:
        for i in range(20):
            await f.publish(i)
        await f.settle()
    assert peak == 3


async def test_retry_exception_and_reject() -> None:
    attempts: dict[str, list[int]] = {"again": [], "never": []}

    @function("ctl", max_attempts=5)
    async def ctl(payload: str, ctx: Context) -> None:
        attempts[payload].append(ctx.attempt)
        if payload == "again" and ctx.attempt == 1:
            raise Retry(delay_s=0.05)
        if payload == "never":
            from kubefuncs import Reject

            raise Reject("not for us")

    async with run(ctl) as f:
        await f.publish("again")
        await f.publish("never")
        await f.settle()
        dead = await f.dead_letters()
    assert attempts == {"again": [1, 2], "never": [1]}
    assert [d.reason for d in dead] == ["Reject: not for us"]


async def test_context_publish_and_call_carry_the_trace() -> None:
    trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

    @function("front")
    async def front(payload: Any, ctx: Context) -> Any:
        return await ctx.call("back", payload)

    @function("back")
    async def back(payload: Any, ctx: Context) -> Any:
        return {"got": payload, "traceparent": ctx.headers.get("traceparent")}

    async with run(front) as f:
        back_fn = back.with_settings(back.settings)
        from kubefuncs.runtime import Runtime

        rt = Runtime(back_fn, transport=f.client.transport)
        task = asyncio.create_task(rt.run())
        try:
            reply = await f.call("x", headers={"traceparent": trace})
        finally:
            rt.stop()
            await task
    assert reply == {"got": "x", "traceparent": trace}


async def test_stop_drains_in_flight_work() -> None:
    done: list[str] = []

    @function("drain", timeout_s=5)
    async def drain(payload: str) -> None:
        await asyncio.sleep(0.2)
        done.append(payload)

    async with run(drain) as f:
        await f.publish("a")
        await asyncio.sleep(0.05)  # in flight now
    # leaving the block stops the runtime; it waited for the handler
    assert done == ["a"]


async def test_a_kind_functions_do_not_serve_is_answered_and_dead_lettered() -> None:
    async with run(echo) as f:
        stray = wire.make("echo", "x", kind=wire.REPLY, reply_to=await f.client.replies.address())
        reply = await f.client.request(stray, 5)
        await f.settle()
        (dead,) = await f.dead_letters()
    assert reply.kind == wire.ERROR and reply.payload.type == "UnsupportedKind"
    assert dead.reason.startswith("UnsupportedKind: a function does not serve reply messages")


async def test_an_ack_lost_with_its_connection_leaves_the_message_to_the_bus(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a function whose reply goes out but whose ack is lost with the broker connection
    # (NSQ: the consumer's connection dies between the reply's PUB and the FIN)
    from kubefuncs.errors import TransportError

    async with run(echo) as f:
        transport = f.runtime.transport

        async def reply_then_lose(delivery: Any, address: str, body: bytes) -> None:
            await transport.send_reply(address, body)
            raise TransportError("connection to the broker was lost")

        f.runtime.transport.reply_and_ack = reply_then_lose  # type: ignore[method-assign]
        # When it is called
        assert await f.call("hi") == {"payload": "hi", "attempt": 1}
        await asyncio.sleep(0.05)
        stats = await transport.stats(f.topic, f.channel)
        samples = f.runtime.metrics.invocations.values
    # Then the caller has its reply, and the message is left unsettled for the bus to hand
    # out again: not answered a second time with an error, not dead-lettered, no traceback
    assert stats.in_flight == 1
    assert samples[("echo", "error_reply")] == samples[("echo", "dead_letter")] == 0
    assert "could not settle a message: connection to the broker was lost" in caplog.text
    assert "Traceback" not in caplog.text


async def test_a_reply_address_the_bus_refuses_is_a_failure_of_the_message() -> None:
    # Given a request whose reply address no bus inbox can have
    from kubefuncs.errors import Undeliverable

    async with run(echo) as f:
        transport = f.runtime.transport

        async def refuse(delivery: Any, address: str, body: bytes) -> None:
            raise Undeliverable(f"reply address {address!r} is not a reply inbox of this bus")

        transport.reply_and_ack = refuse  # type: ignore[method-assign]
        await f.publish_raw(wire.encode(wire.make(f.topic, "x", kind=wire.REQUEST, reply_to="x")))
        await f.settle()
        # Then it is dead-lettered once with the reason: retrying cannot make it deliverable
        assert f.runtime.metrics.invocations.values[("echo", "dead_letter")] == 1
        [dead] = await f.dead_letters()
        assert dead.reason.startswith("Undeliverable: reply address 'x'")


async def test_a_result_no_bus_can_carry_is_dead_lettered_at_once() -> None:
    # Given a handler whose result msgpack has no form for (an integer beyond 64 bits)
    @function("huge", max_attempts=5, backoff_s=0.01)
    async def huge(payload: Any) -> int:
        return 2**70

    async with run(huge) as f:
        # When a caller waits for it, Then the caller gets the error and nothing is retried
        with pytest.raises(RemoteError, match="EncodeError"):
            await f.call("x")
        await f.settle()
        [dead] = await f.dead_letters()
    assert dead.attempt == 1 and dead.reason.startswith("EncodeError")


async def test_handled_messages_leave_nothing_in_flight() -> None:
    """Every message's task leaves the runtime's set when it ends, failed or not: the
    in-flight gauge is back to 0 once everything is settled."""

    @function("count", max_attempts=1)
    async def count(payload: Any) -> None:
        if payload == "boom":
            raise ValueError("fails, and is dead-lettered at once")

    async with run(count) as f:
        for payload in ("a", "boom", "b"):
            await f.publish(payload)
        await f.settle()
        async with asyncio.timeout(5):
            while f.runtime.metrics.in_flight.get():
                await asyncio.sleep(0.01)
        assert f.runtime._tasks == set()
