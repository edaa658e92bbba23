"""End to end on each bus, real Valkey (one server and a 3-master cluster) and NSQ (the
nsqd + nsqlookupd double as a process, or a real nsqd from the environment, see
tests/nsq/support.py): two gateway replicas and the functions in separate processes
(``python -m kubefuncs.gateway``, ``python -m kubefuncs tests.gateway.fns:behave``), as
deployed."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from kubefuncs import wire
from kubefuncs.gateway.calls_nsq import TOPIC as CALLS_TOPIC
from kubefuncs.gateway.calls_nsq import decode_update
from kubefuncs.transport import from_url

from tests.nsq.support import Pump, bus_url, real_nsq
from tests.nsq_double import NsqdProcess
from tests.procs import Proc
from tests.servers import ServerProcess, free_port

pytestmark = pytest.mark.real

KEY = "e2e-key-0123456"
MAX_IN_FLIGHT = 250
ROUTES = """
routes:
  /echo/: e2e
  /fail/: {topic: e2e, methods: [GET]}
  /slow/: {topic: e2e, timeout_s: 0.5}
  /status/: e2e
  /void/: {topic: void, timeout_s: 1}
  /jobs/: {topic: e2e, async: true, timeout_s: 5}
  /secure/: {topic: e2e, auth: api_key}
  /site/: {topic: e2e, methods: [POST], cors: true}
  /limited/: {topic: e2e, rate_limit: {rate: 1, burst: 2}}
  /shared/: {topic: e2e, rate_limit: {rate: 0.2, burst: 2}}
  /victim/: {topic: victim, timeout_s: 1.5}
publish: {topics: [events], auth: api_key}
"""


@dataclass(frozen=True)
class Bus:
    kind: str  # valkey or nsq
    url: str
    redis_url: str = ""  # valkey only
    prefix: str = ""  # valkey only


@dataclass(frozen=True)
class Stack:
    bus: Bus
    url: str  # gateway A's base URL
    other: str  # gateway B's: another replica on the same bus with the same routes


def function(bus: str, topic: str) -> Proc:
    env = {
        "KF_BUS_URL": bus,
        "KF_TOPIC": topic,
        "KF_CONCURRENCY": "64",
        "KF_HEALTH_ADDR": "",
        "KF_LOG_LEVEL": "WARNING",
    }
    return Proc(["kubefuncs", "tests.gateway.fns:behave"], env)


def gateway(bus: str, routes: Path, port: int) -> Proc:
    env = {
        "KF_BUS_URL": bus,
        "KF_GATEWAY_ADDR": f"127.0.0.1:{port}",
        "KF_GATEWAY_API_KEYS": f"tests={KEY}",
        "KF_GATEWAY_MAX_BODY_BYTES": "65536",
        "KF_GATEWAY_MAX_IN_FLIGHT": str(MAX_IN_FLIGHT),
        "KF_GATEWAY_CALLBACK_HOSTS": "127.0.0.1",  # the tests' callback receivers
        "KF_GATEWAY_CALLBACK_ALLOW_PRIVATE": "true",
        "KF_LOG_LEVEL": "WARNING",
    }
    return Proc(["kubefuncs.gateway", str(routes)], env)


@contextlib.contextmanager
def valkey_bus(request: pytest.FixtureRequest) -> Iterator[Bus]:
    server: ServerProcess = request.getfixturevalue("valkey_server")
    prefix = "e2e" + wire.new_id()[:8]
    url = f"valkey://127.0.0.1:{server.port}/0?prefix={prefix}"
    yield Bus("valkey", url, server.url, prefix)


@contextlib.contextmanager
def cluster_bus(request: pytest.FixtureRequest) -> Iterator[Bus]:
    """The session's Valkey Cluster: the same tests as on one server (kind valkey)."""
    cluster = request.getfixturevalue("valkey_cluster")
    prefix = "e2e" + wire.new_id()[:8]
    yield Bus("valkey", f"{cluster.url}/?prefix={prefix}", "", prefix)


def bus_of(request: pytest.FixtureRequest) -> contextlib.AbstractContextManager[Bus]:
    if request.param == "valkey":
        return valkey_bus(request)
    return cluster_bus(request) if request.param == "cluster" else nsq_bus()


@contextlib.contextmanager
def nsq_bus() -> Iterator[Bus]:
    real = real_nsq()
    if real is not None:
        tcp, http, lookupd = real
        yield Bus("nsq", bus_url(tcp=tcp, http=http, lookupd=lookupd, real=True))
        return
    with NsqdProcess(lookupd_http_port=0) as nsqd:
        url = bus_url(
            tcp=nsqd.tcp_address,
            http=nsqd.http_address,
            lookupd=nsqd.lookupd_http_address,
            real=False,
        )
        yield Bus("nsq", url)


@pytest.fixture(scope="module", params=["valkey", "cluster", "nsq"])
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    routes = Path(tmp_path_factory.mktemp("gw")) / "routes.yaml"
    routes.write_text(ROUTES)
    with bus_of(request) as bus:
        ports = free_port(), free_port()
        stack = Stack(bus, *(f"http://127.0.0.1:{port}" for port in ports))
        gateways = [gateway(bus.url, routes, port) for port in ports]
        worker = function(bus.url, "e2e")
        try:
            for proc, base in zip(gateways, (stack.url, stack.other), strict=True):
                proc.wait_http(f"{base}/readyz")
            worker.wait_http(f"{stack.url}/echo/warm-up", expect=b"warm-up")
            yield stack
        finally:
            procs = [worker, *gateways]
            codes = [proc.stop() for proc in procs]  # stop them all, then complain
            for proc, code in zip(procs, codes, strict=True):
                assert code == 0, proc.output()


@contextlib.asynccontextmanager
async def listening(stack: Stack, topic: str) -> AsyncIterator[Pump]:
    """A channel of its own on ``topic``, subscribed before the test publishes anything."""
    channel = f"probe-{wire.new_id()[:8]}"
    if stack.bus.kind == "nsq":
        channel += "#ephemeral"  # gone with this listener, like a gateway replica's
    transport = from_url(stack.bus.url)
    await transport.connect()
    pump = Pump(await transport.subscribe(topic, channel, max_in_flight=100))
    try:
        yield pump
    finally:
        await pump.stop()
        await transport.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        yield session


async def test_a_request_is_answered_by_the_function_process(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    async with http.post(f"{stack.url}/echo/x?q=1", data=b"body") as r:
        assert r.status == 200 and r.headers["X-Call-Id"]
        seen = await r.json()
    assert (seen["path"], seen["query"], seen["body"]) == ("/echo/x", "q=1", "body")


async def test_every_status_mapping(stack: Stack, http: aiohttp.ClientSession) -> None:
    u = stack.url

    async def status(method: str, path: str, **kw: object) -> tuple[int, aiohttp.ClientResponse]:
        async with http.request(method, u + path, **kw) as r:  # type: ignore[arg-type]
            await r.read()
            return r.status, r

    assert (await status("GET", "/status/201"))[0] == 201
    assert (await status("GET", "/nowhere"))[0] == 404
    code, r = await status("POST", "/fail/")
    assert code == 405 and r.headers["Allow"] == "GET"
    assert (await status("POST", "/echo/", data=b"x" * 70_000))[0] == 413
    code, r = await status("GET", "/fail/")
    assert code == 502 and r.headers["X-Kubefuncs-Error-Type"] == "ValueError"
    started = time.monotonic()
    code, r = await status("GET", "/slow/?s=1")
    assert code == 504 and r.headers["X-Kubefuncs-Error"] == "timeout"
    assert time.monotonic() - started < 1.0
    code, r = await status("GET", "/secure/")
    assert code == 401 and "WWW-Authenticate" in r.headers
    assert (await status("GET", "/secure/", headers={"X-Api-Key": KEY}))[0] == 200
    assert [(await status("GET", "/limited/"))[0] for _ in range(3)] == [200, 200, 429]
    assert (await status("GET", "/echo/", headers={"X-Callback-Url": "nope"}))[0] == 400
    preflight = {"Origin": "https://a.example", "Access-Control-Request-Method": "POST"}
    code, r = await status("OPTIONS", "/site/", headers=preflight)
    assert code == 204 and r.headers["Access-Control-Allow-Origin"] == "*"


async def test_too_many_in_flight_get_503_with_retry_after(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    # Given more concurrent requests than the gateway admits, to a topic nobody answers
    async def one() -> tuple[int, str | None]:
        async with http.get(f"{stack.url}/void/") as r:
            return r.status, r.headers.get("Retry-After")

    results = await asyncio.gather(*(one() for _ in range(MAX_IN_FLIGHT + 20)))
    # Then the excess is turned away with Retry-After, the rest time out
    assert results.count((503, "1")) == 20
    assert results.count((504, None)) == MAX_IN_FLIGHT


async def test_200_concurrent_requests_each_get_their_own_reply(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    async def one(i: int) -> tuple[int, dict[str, str]]:
        async with http.post(f"{stack.url}/echo/{i}?i={i}", data=f"body-{i}".encode()) as r:
            return r.status, await r.json()

    results = await asyncio.gather(*(one(i) for i in range(200)))
    for i, (status, seen) in enumerate(results):
        assert status == 200
        assert (seen["path"], seen["query"], seen["body"]) == (f"/echo/{i}", f"i={i}", f"body-{i}")


async def test_an_async_call_reaches_its_callback_and_every_replica(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    # Given a local server that receives callbacks
    received: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()

    async def hook(request: web.Request) -> web.Response:
        await received.put((request.headers["X-Call-Id"], await request.read()))
        return web.Response()

    app = web.Application()
    app.router.add_post("/hook", hook)
    watch = listening(stack, CALLS_TOPIC) if stack.bus.kind == "nsq" else contextlib.nullcontext()
    async with watch as updates, TestServer(app, host="127.0.0.1") as server:
        # When an async route is called with a callback URL
        headers = {"X-Callback-Url": str(server.make_url("/hook"))}
        async with http.post(f"{stack.url}/jobs/slow?s=0.2", headers=headers) as r:
            assert r.status == 202
            call_id = (await r.json())["call_id"]
        # Then the callback gets the function's answer, and so does GET /calls/{id}
        assert await asyncio.wait_for(received.get(), 5) == (call_id, b"slept")
        async with http.get(f"{stack.url}/calls/{call_id}") as r:
            assert r.status == 200 and await r.read() == b"slept"
        # And the result is kept where every gateway replica finds it: on Valkey in a key on
        # the bus, on NSQ with each replica, which all read the calls topic
        if updates is None:
            assert await valkey_key_exists(stack, f"gw:call:{call_id}")
        else:
            assert await call_states(updates, call_id) == [("done", b"slept"), ("pending", b"")]


async def valkey_key_exists(stack: Stack, key: str) -> bool:
    transport = from_url(stack.bus.url)  # on one server or a cluster alike
    await transport.connect()
    try:
        return bool(await transport.call("EXISTS", f"{stack.bus.prefix}:{key}"))  # type: ignore[attr-defined]
    finally:
        await transport.close()


async def call_states(updates: Pump, call_id: str) -> list[tuple[str, bytes]]:
    """The states of ``call_id`` published on the calls topic (pending and done; NSQ does
    not promise their order), sorted."""
    states = []
    while len(states) < 2:
        (delivery,) = await updates.take()
        await delivery.ack()
        update = decode_update(delivery.body)
        if update.call_id == call_id:
            states.append((update.result.state, update.result.body))
    return sorted(states)


async def test_an_async_call_made_through_one_replica_is_answered_by_another(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    # When an async call is made through gateway A
    async with http.post(f"{stack.url}/jobs/slow?s=0.8") as r:
        assert r.status == 202
        call_id = (await r.json())["call_id"]
    # Then gateway B answers GET /calls/{id}: pending while the function works, then its answer
    seen: list[int] = []
    async with asyncio.timeout(5):
        while not seen or seen[-1] != 200:
            async with http.get(f"{stack.other}/calls/{call_id}") as r:
                seen.append(r.status)
                body, call_status = await r.read(), r.headers.get("X-Call-Status")
            await asyncio.sleep(0.02)
    assert (body, call_status) == (b"slept", "done")
    # (on NSQ the pending state reaches B a message hop after A answered 202: a few ms)
    phases = [status for status, _ in itertools.groupby(seen)]
    assert phases == [202, 200] or (stack.bus.kind == "nsq" and phases == [404, 202, 200]), seen
    assert seen.count(404) <= 5, seen


async def test_rate_limits_are_shared_on_valkey_and_per_replica_on_nsq(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    async def status(base: str) -> int:
        async with http.get(f"{base}/shared/") as r:
            return r.status

    # Given a client that used up its burst on gateway A
    assert [await status(stack.url) for _ in range(3)] == [200, 200, 429]
    # When it turns to gateway B
    # Then on Valkey the bucket is on the bus and B refuses too; on NSQ B has its own bucket
    expected = [429] if stack.bus.kind == "valkey" else [200, 200, 429]
    assert [await status(stack.other) for _ in expected] == expected


async def test_a_published_event_lands_on_its_topic(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    headers = {"X-Api-Key": KEY}
    async with listening(stack, "events") as events:
        async with http.post(f"{stack.url}/topics/events", json={"n": 7}, headers=headers) as r:
            assert r.status == 202
            event_id = r.headers["X-Call-Id"]
        async with http.post(f"{stack.url}/topics/other", json={}, headers=headers) as r:
            assert r.status == 403
        (delivery,) = await events.take()
        await delivery.ack()
    event = wire.decode(delivery.body)
    assert (event.id, event.kind, event.payload) == (event_id, "event", {"n": 7})


async def test_a_function_killed_mid_request_gives_a_timely_error(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    # Given a function process serving /victim/
    victim = function(stack.bus.url, "victim")
    try:
        victim.wait_http(f"{stack.url}/victim/?s=0", expect=b"slept")
        # When it is killed while handling a request
        started = time.monotonic()
        pending = asyncio.ensure_future(http.get(f"{stack.url}/victim/?s=5"))
        await asyncio.sleep(0.3)
        victim.kill()
        async with await pending as r:
            # Then the caller hears 504 at the route's deadline, and nothing hangs
            assert r.status == 504
        assert time.monotonic() - started < 2.5
    finally:
        victim.stop()
    async with http.get(f"{stack.url}/echo/after") as r:
        assert r.status == 200
