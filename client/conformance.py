"""Conformance suite: drive a running function, in any language, through the wire contract.

``functl conformance --bus URL --topic T`` (or :func:`run`) talks to the function only
over the bus, as docs/protocol.md defines it, and reports one :class:`Result` per check.
The function under test must follow the conformance conventions of that document:

* ``{"conformance": "echo", "value": V}`` -> reply ``{"value": V, "attempt": <attempt>}``
  (after ``sleep_ms`` milliseconds when the payload has that key);
* ``{"conformance": "fail"}`` -> the handler fails (an error reply when a caller waits).

Run it against an otherwise idle channel: some checks read the channel's figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio import Redis

from . import wire
from .client import Client
from .errors import KubefuncsError
from .transport import options as url_options

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@dataclass(frozen=True, slots=True)
class Options:
    """What to test and how long to wait. ``channel`` defaults to the topic name;
    ``visibility_timeout_s`` to the bus URL's ``visibility_timeout_s`` (else 30)."""

    bus_url: str
    topic: str
    channel: str = ""
    password: str | None = None
    visibility_timeout_s: float | None = None
    timeout_s: float = 10.0
    calls: int = 20
    dead_letter_timeout_s: float = 60.0

    def resolved(self) -> Options:
        vis = self.visibility_timeout_s
        if vis is None:
            vis = float(url_options(self.bus_url).get("visibility_timeout_s", 30))
        return replace(self, channel=self.channel or self.topic, visibility_timeout_s=vis)


@dataclass(frozen=True, slots=True)
class Result:
    """The outcome of one check: ``ok`` is None when the check does not apply to the bus."""

    name: str
    ok: bool | None
    detail: str

    def line(self) -> str:
        status = {True: "PASS", False: "FAIL", None: "SKIP"}[self.ok]
        return f"{status} {self.name:<24} {self.detail}"


class CheckFailed(KubefuncsError):
    """A check saw the function break the contract; the message says how."""


class Skipped(KubefuncsError):
    """A check does not apply to this bus."""


class Probe:
    """The suite's side of the bus: a Client for calls plus raw access for the checks."""

    def __init__(self, opts: Options, client: Client) -> None:
        self.opts = opts
        self.client = client
        self.transport = client.transport

    async def address(self) -> str:
        return await self.client.replies.address()

    async def request(self, payload: Any, *, kind: str = wire.REQUEST, **kw: Any) -> wire.Envelope:
        """Send a request, return the correlated reply (CheckFailed when none comes)."""
        return await self.exchange(await self.envelope(payload, kind=kind, **kw))

    async def exchange(self, env: wire.Envelope) -> wire.Envelope:
        """Publish a prepared request, return the correlated reply (CheckFailed when none)."""
        try:
            return await self.client.request(env, self.opts.timeout_s)
        except KubefuncsError as e:
            raise CheckFailed(f"no correlated reply: {e}") from e

    async def envelope(self, payload: Any, **kw: Any) -> wire.Envelope:
        kw.setdefault("deadline_ms", wire.now_ms() + int(self.opts.timeout_s * 1000))
        return wire.make(self.opts.topic, payload, reply_to=await self.address(), **kw)

    async def dead_letter(self, body: bytes, timeout_s: float) -> tuple[str, int]:
        """Wait for ``body`` in the channel's dead letters; purge it; (reason, attempt)."""
        topic, channel = self.opts.topic, self.opts.channel
        async with self.maintaining():
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                for d in await self.transport.dead_letters(topic, channel, limit=100_000):
                    if d.body == body:
                        await self.transport.purge_dead(topic, channel, [d.id])
                        return d.reason, d.attempt
                await asyncio.sleep(0.1)
        raise CheckFailed(f"not in the dead letters of {topic}/{channel} after {timeout_s:g}s")

    @contextlib.asynccontextmanager
    async def maintaining(self) -> Any:
        """Move due delayed retries meanwhile, as the gateway does for every function."""

        async def loop() -> None:
            while True:
                with contextlib.suppress(KubefuncsError):
                    await self.transport.maintain()
                await asyncio.sleep(0.2)

        task = asyncio.create_task(loop())
        try:
            yield
        finally:
            task.cancel()

    async def settled(self, timeout_s: float) -> Any:
        """Wait until the channel has nothing undelivered and nothing in flight."""
        deadline = time.monotonic() + timeout_s
        while True:
            stats = await self.transport.stats(self.opts.topic, self.opts.channel)
            if stats.depth == 0 and stats.in_flight == 0:
                return stats
            if time.monotonic() > deadline:
                raise CheckFailed(f"channel not settled after {timeout_s:g}s: {stats}")
            await asyncio.sleep(0.05)


def expect(condition: bool, problem: str) -> None:
    if not condition:
        raise CheckFailed(problem)


def check_reply(request: wire.Envelope, reply: wire.Envelope, kind: str) -> None:
    expect(reply.kind == kind, f"reply kind is {reply.kind!r}, expected {kind!r}")
    expect(reply.correlation_id == request.id, "correlation_id is not the request id")


# -- the checks ----------------------------------------------------------------------------


async def request_reply(p: Probe) -> str:
    value = {"text": "héllo ✓", "bin": b"\x00\xff", "n": -42, "list": [1.5, None, True]}
    env = await p.envelope({"conformance": "echo", "value": value})
    reply = await p.exchange(env)
    check_reply(env, reply, wire.REPLY)
    want = {"value": value, "attempt": 1}
    expect(reply.payload == want, f"payload {reply.payload!r:.120}, expected {want!r:.120}")
    return "reply kind, correlation_id and payload as sent"


async def trace_context(p: Probe) -> str:
    headers = {"traceparent": TRACEPARENT, "tracestate": "kf=conformance"}
    reply = await p.request({"conformance": "echo", "value": 1}, headers=headers)
    got = {k: reply.headers.get(k) for k in headers}
    expect(got == headers, f"reply headers carry {got}, expected {headers}")
    return "traceparent and tracestate copied to the reply"


async def http_request(p: Probe) -> str:
    req = wire.HttpRequest("POST", "/conformance", "a=1", {"content-type": "text/plain"}, b"hi")
    env = await p.envelope(req, kind=wire.HTTP_REQUEST)
    reply = await p.exchange(env)
    check_reply(env, reply, wire.HTTP_RESPONSE)
    return f"http-response with status {reply.payload.status}"


async def error_reply(p: Probe) -> str:
    env = await p.envelope({"conformance": "fail"})
    reply = await p.exchange(env)
    check_reply(env, reply, wire.ERROR)
    info = reply.payload
    expect(bool(info.type), "error reply without a type")
    return f"error reply {info.type}: {info.message}"[:100]


async def malformed(p: Probe) -> str:
    bodies = [b"\xc1kubefuncs conformance " + wire.new_id().encode(), future_version(p)]
    for body in bodies:
        await p.transport.publish(p.opts.topic, body)
    reasons = [(await p.dead_letter(body, p.opts.timeout_s))[0] for body in bodies]
    expect(all(reasons), "a dead letter without a reason")
    await p.request({"conformance": "echo", "value": "still there"})
    return f"dead-lettered ({reasons[0][:40]}...), still serving"


def future_version(p: Probe) -> bytes:
    """A well-formed envelope with ``v`` = 2 (encode writes ``v`` first: fixmap, "v", 1)."""
    body = wire.encode(wire.make(p.opts.topic, "from the future"))
    assert body.startswith(b"\x8b\xa1v\x01")
    return b"\x8b\xa1v\x02" + body[4:]


async def expired_deadline(p: Probe) -> str:
    before = await p.settled(p.opts.timeout_s)
    env = await p.envelope({"conformance": "echo", "value": 1}, deadline_ms=wire.now_ms() - 1000)
    future = p.client.replies.expect(env.id)
    try:
        await p.transport.publish(p.opts.topic, wire.encode(env))
        await asyncio.sleep(0.2)
        after = await p.settled(p.opts.timeout_s)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(future), 0.5)
        expect(not future.done(), "replied to a request past its deadline")
    finally:
        p.client.replies.forget(env.id)
    expect(after.dead == before.dead, "dead-lettered instead of acknowledged")
    expect(after.delayed == before.delayed, "retried instead of acknowledged")
    return "no reply, acknowledged"


async def retry_dead_letter(p: Probe) -> str:
    env = wire.make(p.opts.topic, {"conformance": "fail", "token": wire.new_id()})
    body = wire.encode(env)
    await p.transport.publish(p.opts.topic, body)
    reason, attempt = await p.dead_letter(body, p.opts.dead_letter_timeout_s)
    expect(bool(reason), "a dead letter without a reason")
    return f"event retried, dead-lettered after attempt {attempt}: {reason}"[:100]


async def concurrency(p: Probe) -> str:
    n = p.opts.calls
    started = time.monotonic()
    replies = await asyncio.gather(
        *(p.request({"conformance": "echo", "value": i, "sleep_ms": 200}) for i in range(n))
    )
    took = time.monotonic() - started
    wrong = [i for i, r in enumerate(replies) if r.payload != {"value": i, "attempt": 1}]
    expect(not wrong, f"{len(wrong)} of {n} replies wrong (first: call {wrong[:1]})")
    return f"{n} calls of 0.2s each answered correctly in {took:.2f}s"


async def redelivery(p: Probe) -> str:
    """Act as a consumer of the channel that crashed holding a message."""
    if not _is_valkey(p.opts.bus_url):
        raise Skipped("only implemented for the Valkey binding so far")
    vis = p.opts.visibility_timeout_s or 30.0
    env = await p.envelope(
        {"conformance": "echo", "value": "redelivered"},
        deadline_ms=wire.now_ms() + int((vis * 2 + p.opts.timeout_s + 30) * 1000),
    )
    future = p.client.replies.expect(env.id)
    started = time.monotonic()
    try:
        async with crashed_consumer(p.opts, wire.encode(env)):
            reply = await asyncio.wait_for(future, vis * 2 + p.opts.timeout_s)
    except TimeoutError:
        raise CheckFailed(f"not taken over within {vis * 2 + p.opts.timeout_s:g}s") from None
    finally:
        p.client.replies.forget(env.id)
    took = time.monotonic() - started
    attempt = reply.payload.get("attempt") if isinstance(reply.payload, dict) else None
    expect(isinstance(attempt, int) and attempt >= 2, f"reply says attempt {attempt!r}, want >= 2")
    expect(took >= vis * 0.9, f"taken over after {took:.1f}s, before the {vis:g}s visibility")
    return f"taken over after {took:.1f}s (visibility {vis:g}s) with attempt {attempt}"


@contextlib.asynccontextmanager
async def crashed_consumer(opts: Options, body: bytes) -> Any:
    """Publish ``body`` and read it at once as a consumer that never settles it (XADD and
    XREADGROUP in one MULTI, so the function cannot read it first); remove that consumer
    at the end."""
    prefix = url_options(opts.bus_url).get("prefix", "kf")
    stream, consumer = f"{prefix}:topic:{opts.topic}", f"conformance-crashed-{wire.new_id()[:8]}"
    redis = _raw_redis(opts)
    try:
        pipe = redis.pipeline(transaction=True)
        pipe.xadd(stream, {"m": body})
        pipe.xreadgroup(opts.channel, consumer, {stream: ">"}, count=1)
        added, read = await pipe.execute()
        taken = [entry_id for _, entries in read or [] for entry_id, _ in entries]
        expect(taken == [added], "could not take the message as a consumer (channel not idle?)")
        yield
    finally:
        with contextlib.suppress(Exception):
            await redis.xgroup_delconsumer(stream, opts.channel, consumer)
        await redis.aclose()


async def undeliverable_reply(p: Probe) -> str:
    """A reply address that can never take a reply is a permanent failure: the message is
    dead-lettered once (never run again and again), and the function goes on serving."""
    addresses = [f"conformance-not-an-inbox-{wire.new_id()[:8]}"]
    valkey = _is_valkey(p.opts.bus_url)
    if valkey:  # an inbox name that holds a string
        prefix = url_options(p.opts.bus_url).get("prefix", "kf")
        addresses.append(f"{prefix}:reply:conformance-{wire.new_id()[:8]}")
        async with _raw_redis(p.opts) as redis:
            await redis.set(addresses[1], "not a list", ex=120)
    bodies = []
    for address in addresses:
        env = wire.make(p.opts.topic, {"conformance": "echo", "value": address}, reply_to=address)
        bodies.append(wire.encode(env))
        await p.transport.publish(p.opts.topic, bodies[-1])
    reasons = [(await p.dead_letter(body, p.opts.timeout_s))[0] for body in bodies]
    expect(all(reasons), "a dead letter without a reason")
    await p.request({"conformance": "echo", "value": "still there"})
    kinds = "not an inbox" + (", a key of another type" if valkey else "")
    return f"dead-lettered ({kinds}), still serving"


async def poison_entry(p: Probe) -> str:
    """Stream entries kubefuncs did not write (an attempt count that is not a number) are
    dead-lettered with a reason; the consumer reads on."""
    if not _is_valkey(p.opts.bus_url):
        raise Skipped("NSQ messages have no fields besides the body (see malformed-dead-letter)")
    prefix = url_options(p.opts.bus_url).get("prefix", "kf")
    bodies = []
    async with _raw_redis(p.opts) as redis:
        for attempts in ("x", "-1", "1e3", "99999999999999999999"):
            env = wire.make(p.opts.topic, {"conformance": "echo", "value": attempts})
            bodies.append(wire.encode(env))
            await redis.xadd(f"{prefix}:topic:{p.opts.topic}", {"m": bodies[-1], "a": attempts})
    reasons = [(await p.dead_letter(body, p.opts.timeout_s))[0] for body in bodies]
    expect(all(reasons), "a dead letter without a reason")
    await p.request({"conformance": "echo", "value": "still there"})
    return f"{len(bodies)} dead-lettered ({reasons[0][:40]}...), still serving"


def _is_valkey(bus_url: str) -> bool:
    return urlsplit(bus_url).scheme in ("valkey", "valkeys", "redis", "rediss")


def _raw_redis(opts: Options) -> Redis:
    parts = urlsplit(opts.bus_url)
    scheme = {"valkey": "redis", "valkeys": "rediss"}.get(parts.scheme, parts.scheme)
    url = urlunsplit((scheme, parts.netloc, parts.path, "", ""))
    return Redis.from_url(url, password=opts.password)


Check = Callable[[Probe], Awaitable[str]]

CHECKS: list[tuple[str, Check]] = [
    ("request-reply", request_reply),
    ("trace-context", trace_context),
    ("http-request", http_request),
    ("error-reply", error_reply),
    ("malformed-dead-letter", malformed),
    ("expired-deadline", expired_deadline),
    ("retry-then-dead-letter", retry_dead_letter),
    ("concurrency", concurrency),
    ("redelivery-after-crash", redelivery),
    ("undeliverable-reply", undeliverable_reply),
    ("poison-entry", poison_entry),
]


async def run_check(probe: Probe, name: str, check: Check) -> Result:
    try:
        return Result(name, True, await check(probe))
    except Skipped as e:
        return Result(name, None, str(e))
    except CheckFailed as e:
        return Result(name, False, str(e))
    except (KubefuncsError, OSError, TimeoutError) as e:
        return Result(name, False, f"{type(e).__name__}: {e}")


async def run(
    opts: Options,
    report: Callable[[Result], None] = lambda r: None,
    only: list[str] | None = None,
) -> list[Result]:
    """Run the checks (or those named in ``only``) in order; ``report`` sees each result."""
    opts = opts.resolved()
    try:
        client = await connect(opts)
    except KubefuncsError as e:
        report(Result("bus", False, str(e)))
        return [Result("bus", False, str(e))]
    results: list[Result] = []
    try:
        probe = Probe(opts, client)
        for name, check in CHECKS:
            if only is None or name in only:
                results.append(await run_check(probe, name, check))
                report(results[-1])
    finally:
        await client.close()
    return results


async def connect(opts: Options) -> Client:
    client = Client(opts.bus_url, password=opts.password)
    try:
        await client.transport.connect()
    except KubefuncsError:
        await client.close()
        raise
    return client


def passed(results: list[Result]) -> bool:
    """True when no check failed (skipped checks do not fail the suite)."""
    return all(r.ok is not False for r in results)
