"""End to end through real Valkey: the gateway and the functions in separate processes
(``python -m kubefuncs.gateway``, ``python -m kubefuncs tests.gateway.fns:behave``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from kubefuncs import wire
from redis.asyncio import Redis

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
  /victim/: {topic: victim, timeout_s: 1.5}
publish: {topics: [events], auth: api_key}
"""


@dataclass
class Stack:
    url: str  # gateway base URL
    bus_url: str
    redis_url: str
    prefix: str


def function(bus_url: str, topic: str) -> Proc:
    env = {
        "KF_BUS_URL": bus_url,
        "KF_TOPIC": topic,
        "KF_CONCURRENCY": "64",
        "KF_HEALTH_ADDR": "",
        "KF_LOG_LEVEL": "WARNING",
    }
    return Proc(["kubefuncs", "tests.gateway.fns:behave"], env)


@pytest.fixture(scope="module")
def stack(
    valkey_server: ServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    prefix = "e2e" + wire.new_id()[:8]
    bus_url = f"valkey://127.0.0.1:{valkey_server.port}/0?prefix={prefix}"
    routes = Path(tmp_path_factory.mktemp("gw")) / "routes.yaml"
    routes.write_text(ROUTES)
    port = free_port()
    gateway = Proc(
        ["kubefuncs.gateway", str(routes)],
        {
            "KF_BUS_URL": bus_url,
            "KF_GATEWAY_ADDR": f"127.0.0.1:{port}",
            "KF_GATEWAY_API_KEYS": f"tests={KEY}",
            "KF_GATEWAY_MAX_BODY_BYTES": "65536",
            "KF_GATEWAY_MAX_IN_FLIGHT": str(MAX_IN_FLIGHT),
            "KF_LOG_LEVEL": "WARNING",
        },
    )
    worker = function(bus_url, "e2e")
    base = f"http://127.0.0.1:{port}"
    try:
        gateway.wait_http(f"{base}/readyz")
        worker.wait_http(f"{base}/echo/warm-up", expect=b"warm-up")
        yield Stack(base, bus_url, valkey_server.url, prefix)
    finally:
        assert worker.stop() == 0, worker.output()
        assert gateway.stop() == 0, gateway.output()


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


async def test_an_async_call_reaches_its_callback_and_is_kept_on_the_bus(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    # Given a local server that receives callbacks
    received: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()

    async def hook(request: web.Request) -> web.Response:
        await received.put((request.headers["X-Call-Id"], await request.read()))
        return web.Response()

    app = web.Application()
    app.router.add_post("/hook", hook)
    async with TestServer(app, host="127.0.0.1") as server:
        # When an async route is called with a callback URL
        headers = {"X-Callback-Url": str(server.make_url("/hook"))}
        async with http.post(f"{stack.url}/jobs/slow?s=0.2", headers=headers) as r:
            assert r.status == 202
            call_id = (await r.json())["call_id"]
        # Then the callback gets the function's answer
        assert await asyncio.wait_for(received.get(), 5) == (call_id, b"slept")
    # And the result is kept in Valkey, where any gateway replica finds it
    async with http.get(f"{stack.url}/calls/{call_id}") as r:
        assert r.status == 200 and await r.read() == b"slept"
    redis = Redis.from_url(stack.redis_url)
    try:
        assert await redis.exists(f"{stack.prefix}:gw:call:{call_id}") == 1
    finally:
        await redis.aclose()


async def test_a_published_event_lands_on_its_topic(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    headers = {"X-Api-Key": KEY}
    async with http.post(f"{stack.url}/topics/events", json={"n": 7}, headers=headers) as r:
        assert r.status == 202
        event_id = r.headers["X-Call-Id"]
    async with http.post(f"{stack.url}/topics/other", json={}, headers=headers) as r:
        assert r.status == 403
    redis = Redis.from_url(stack.redis_url)
    try:
        entries = await redis.xrange(f"{stack.prefix}:topic:events")
    finally:
        await redis.aclose()
    event = wire.decode(entries[-1][1][b"m"])
    assert (event.id, event.kind, event.payload) == (event_id, "event", {"n": 7})


async def test_a_function_killed_mid_request_gives_a_timely_error(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    # Given a function process serving /victim/
    victim = function(stack.bus_url, "victim")
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
