"""The gateway app in-process on a memory bus, with the function runtime on the same bus:
every status mapping, async calls, publishing, auth, CORS, limits, metrics."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from kubefuncs import Function, wire
from kubefuncs.errors import ConfigError
from kubefuncs.gateway import GatewaySettings, create_app, loads
from kubefuncs.gateway.app import GATEWAY
from kubefuncs.gateway.auth import sign_hs256
from kubefuncs.gateway.callbacks import HostPattern
from kubefuncs.runtime import Runtime
from kubefuncs.transport import from_url

from .fns import behave

ROUTES = """
routes:
  /echo/: e2e
  /fail/: {topic: e2e, methods: [GET]}
  /slow/: {topic: e2e, timeout_s: 0.3}
  /status/: e2e
  /jobs/: {topic: e2e, async: true, timeout_s: 0.5}
  /secure/: {topic: e2e, auth: api_key}
  /token/: {topic: e2e, auth: jwt}
  /site/: {topic: e2e, methods: [POST], cors: {origins: [https://site.example]}}
  /limited/: {topic: e2e, rate_limit: {rate: 1, burst: 2}}
publish: {topics: [events], auth: api_key}
"""
KEY = "test-key-0123"
SECRET = "jwt-secret-0123456789-0123456789-abc"
SETTINGS = GatewaySettings(
    bus_url="memory://", api_keys={KEY: "tests"}, jwt_secret=SECRET, max_body_bytes=1000
)


Client = TestClient[web.Request, web.Application]


@contextlib.asynccontextmanager
async def served(
    fn: Function,
    settings: GatewaySettings,
    routes: str,
    prepare: Callable[[web.Application], None] | None = None,
) -> AsyncIterator[Client]:
    """The gateway app for ``routes`` and ``fn`` on a private memory bus (``prepare`` may
    change the app before it serves)."""
    transport = from_url(f"memory://{wire.new_id()}")
    await transport.connect()
    runtime = Runtime(fn, transport=transport)
    task = asyncio.create_task(runtime.run())
    app = create_app(settings, loads(routes), transport=transport)
    if prepare is not None:
        prepare(app)
    try:
        async with TestClient(TestServer(app)) as client:
            yield client
    finally:
        runtime.stop()
        await task
        await transport.close()


def gateway(
    settings: GatewaySettings = SETTINGS, **function_settings: Any
) -> contextlib.AbstractAsyncContextManager[Client]:
    """The app and the ``behave`` function on a private memory bus."""
    fn = behave.with_settings(replace(behave.settings, **function_settings))
    return served(fn, settings, ROUTES)


async def test_a_request_travels_as_a_message_and_the_reply_comes_back() -> None:
    async with gateway() as client:
        # When a request with query, headers and body is sent
        r = await client.post(
            "/echo/a/b?x=1&y=2",
            data=b"hi",
            headers={"X-Thing": "t", "X-Api-Key": KEY, "Connection": "keep-alive"},
        )
        # Then the function saw method, path, query, headers and body, and its reply is the
        # response: status, headers, body, and the call id
        assert r.status == 200 and r.headers["x-echo"] == "1"
        assert len(r.headers["X-Call-Id"]) == 32
        seen = await r.json()
        assert (seen["method"], seen["path"], seen["query"], seen["body"]) == (
            "POST",
            "/echo/a/b",
            "x=1&y=2",
            "hi",
        )
        assert seen["headers"]["x-thing"] == "t"
        assert "x-api-key" not in seen["headers"] and "connection" not in seen["headers"]
        assert seen["headers"]["traceparent"].startswith("00-")


async def test_the_function_status_passes_through() -> None:
    async with gateway() as client:
        r = await client.get("/status/418")
        assert r.status == 418 and await r.text() == "as asked"


async def test_a_function_error_is_a_502_with_its_type() -> None:
    async with gateway() as client:
        r = await client.get("/fail/")
        assert r.status == 502
        assert r.headers["X-Kubefuncs-Error"] == "function_error"
        assert r.headers["X-Kubefuncs-Error-Type"] == "ValueError"
        body = await r.json()
        assert (body["type"], body["message"]) == ("ValueError", "boom")
        assert body["call_id"] == r.headers["X-Call-Id"]


async def test_a_handler_timeout_keeps_the_functions_504_hint() -> None:
    async with gateway(timeout_s=0.05) as client:
        r = await client.get("/status/200", params={"x": "1"})
        assert r.status == 200
        r = await client.get("/slow/", params={"s": "1"})
        assert r.status == 504 and (await r.json())["type"] == "TimeoutError"


async def test_no_reply_in_time_is_a_504_and_the_late_reply_is_counted() -> None:
    async with gateway() as client:
        # When the function takes longer than the route's 0.3 s
        r = await client.get("/slow/", params={"s": "0.5"})
        # Then the caller hears 504 with a reason, and the reply arriving later is dropped
        assert r.status == 504 and r.headers["X-Kubefuncs-Error"] == "timeout"
        assert "no reply from topic 'e2e' within 0.3s" in (await r.json())["message"]
        await asyncio.sleep(0.4)
        metrics = await (await client.get("/metrics")).text()
        assert "kubefuncs_gateway_late_replies_total 1.0" in metrics
        assert 'kubefuncs_gateway_timeouts_total{route="/slow/"} 1.0' in metrics


async def test_unknown_paths_and_methods_are_refused() -> None:
    async with gateway() as client:
        r = await client.get("/nowhere")
        assert r.status == 404 and (await r.json())["error"] == "not_found"
        r = await client.delete("/fail/")
        assert r.status == 405 and r.headers["Allow"] == "GET"


async def test_a_body_over_the_limit_is_a_413_declared_or_streamed() -> None:
    async with gateway() as client:
        r = await client.post("/echo/", data=b"x" * 1001)
        assert r.status == 413 and (await r.json())["error"] == "body_too_large"

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(3):
                yield b"y" * 600

        r = await client.post("/echo/", data=chunks())
        assert r.status == 413


async def test_too_many_in_flight_is_a_503_with_retry_after() -> None:
    async with gateway(replace(SETTINGS, max_in_flight=1)) as client:
        # Given one request waiting for a slow function
        # (long enough that a loaded machine cannot finish it before the second arrives)
        first = asyncio.create_task(client.get("/echo/slow", params={"s": "1"}))
        await asyncio.sleep(0.3)
        # When another comes / Then it is turned away at once
        r = await client.get("/echo/")
        assert r.status == 503 and r.headers["Retry-After"] == "1"
        assert (await first).status == 200


async def test_an_async_call_answers_202_then_the_result_by_id_and_callback() -> None:
    # Given a callback receiver
    received: asyncio.Queue[tuple[dict[str, str], bytes]] = asyncio.Queue()

    async def hook(request: web.Request) -> web.Response:
        await received.put((dict(request.headers), await request.read()))
        return web.Response()

    receiver = web.Application()
    receiver.router.add_post("/hook", hook)
    # (a receiver on 127.0.0.1: listed, and private addresses allowed)
    settings = replace(SETTINGS, callback_hosts=(HostPattern("127.0.0.1"),))
    settings = replace(settings, callback_allow_private=True)
    async with TestServer(receiver) as hook_server, gateway(settings) as client:
        # When an async route is called with a callback URL
        r = await client.post(
            "/jobs/slow?s=0.1", headers={"X-Callback-Url": str(hook_server.make_url("/hook"))}
        )
        # Then it answers 202 with the call id at once, pending until done
        assert r.status == 202
        call_id = r.headers["X-Call-Id"]
        assert (await r.json()) == {
            "call_id": call_id,
            "status": "pending",
            "result_url": f"/calls/{call_id}",
        }
        pending = await client.get(f"/calls/{call_id}")
        assert pending.status == 202 and (await pending.json())["status"] == "pending"
        # And the callback receives the result
        headers, body = await asyncio.wait_for(received.get(), 5)
        assert (headers["X-Call-Id"], headers["X-Call-Status"], body) == (call_id, "200", b"slept")
        # And the result can be fetched by id
        done = await client.get(f"/calls/{call_id}")
        assert done.status == 200 and await done.text() == "slept"
        assert done.headers["X-Call-Status"] == "done"


async def test_a_sync_route_becomes_async_with_a_callback_and_bad_ones_are_400() -> None:
    async with gateway() as client:
        r = await client.get("/echo/", headers={"X-Callback-Url": "ftp://nope"})
        assert r.status == 400 and "http(s)" in (await r.json())["message"]
        r = await client.get("/calls/" + "0" * 32)
        assert r.status == 404 and (await r.json())["error"] == "unknown_call"


async def test_an_async_call_without_reply_stores_a_504() -> None:
    async with gateway() as client:
        r = await client.post("/jobs/slow?s=1")
        call_id = r.headers["X-Call-Id"]
        for _ in range(60):
            done = await client.get(f"/calls/{call_id}")
            if done.status != 202:
                break
            await asyncio.sleep(0.05)
        assert done.status == 504 and (await done.json())["error"] == "timeout"


async def test_publishing_needs_auth_and_an_allowed_topic() -> None:
    async with gateway() as client:
        transport = client.app[GATEWAY].transport
        sub = await transport.subscribe("events", "check", max_in_flight=10)
        auth = {"X-Api-Key": KEY}
        r = await client.post("/topics/events", json={"n": 1})
        assert r.status == 401 and "WWW-Authenticate" in r.headers
        r = await client.post("/topics/secret", json={"n": 1}, headers=auth)
        assert r.status == 403
        r = await client.post(
            "/topics/events", data=b"{no", headers={**auth, "Content-Type": "application/json"}
        )
        assert r.status == 400 and "not valid JSON" in (await r.json())["message"]
        r = await client.post("/topics/events", json={"n": 1}, headers=auth)
        assert r.status == 202 and (await r.json())["topic"] == "events"
        delivery = await anext(aiter(sub))
        event = wire.decode(delivery.body)
        assert (event.kind, event.payload, event.id) == ("event", {"n": 1}, r.headers["X-Call-Id"])
        assert "traceparent" in event.headers


async def test_routes_check_api_keys_and_jwts() -> None:
    async with gateway() as client:
        r = await client.get("/secure/")
        assert r.status == 401 and r.headers["WWW-Authenticate"].startswith("ApiKey")
        r = await client.get("/secure/", headers={"X-Api-Key": "wrong-key-1"})
        assert r.status == 401
        assert (await client.get("/secure/", headers={"X-Api-Key": KEY})).status == 200
        token = sign_hs256({"sub": "ada", "exp": time.time() + 60}, SECRET.encode())
        r = await client.get("/token/", headers={"Authorization": f"Bearer {token}"})
        assert r.status == 200
        r = await client.get("/token/", headers={"Authorization": "Bearer a.b.c"})
        assert r.status == 401 and "malformed" in (await r.json())["message"]


async def test_cors_preflight_and_actual_responses() -> None:
    async with gateway() as client:
        origin = {"Origin": "https://site.example"}
        r = await client.options(
            "/site/", headers={**origin, "Access-Control-Request-Method": "POST"}
        )
        assert r.status == 204
        assert r.headers["Access-Control-Allow-Origin"] == "https://site.example"
        assert r.headers["Access-Control-Allow-Methods"] == "POST"
        r = await client.options(
            "/site/",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert r.status == 403
        r = await client.post("/site/", headers=origin)
        assert r.status == 200
        assert r.headers["Access-Control-Allow-Origin"] == "https://site.example"


async def test_the_rate_limit_refuses_with_retry_after() -> None:
    async with gateway() as client:
        statuses = [(await client.get("/limited/")).status for _ in range(3)]
        assert statuses == [200, 200, 429]
        r = await client.get("/limited/")
        assert r.status == 429 and r.headers["Retry-After"] == "1"


async def test_health_readiness_and_metrics() -> None:
    async with gateway() as client:
        assert (await client.get("/healthz")).status == 200
        assert (await client.get("/readyz")).status == 200
        await client.get("/echo/")
        await client.get("/nowhere")
        text = await (await client.get("/metrics")).text()
        assert 'kubefuncs_gateway_requests_total{route="/echo/",status="200",topic="e2e"}' in text
        assert 'kubefuncs_gateway_requests_total{route="",status="404",topic=""}' in text
        assert "kubefuncs_gateway_request_duration_seconds_bucket" in text
        assert "kubefuncs_gateway_in_flight 0.0" in text


async def test_an_incoming_traceparent_continues_its_trace() -> None:
    async with gateway() as client:
        incoming = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        r = await client.get("/echo/", headers={"traceparent": incoming, "tracestate": "a=1"})
        seen = (await r.json())["headers"]
        assert seen["traceparent"].split("-")[1] == "0af7651916cd43dd8448eb211c80319c"
        assert seen["tracestate"] == "a=1"


def test_a_route_that_needs_missing_credentials_is_refused_at_start() -> None:
    with pytest.raises(ConfigError, match="KF_GATEWAY_API_KEYS is not set"):
        create_app(GatewaySettings(bus_url="memory://"), loads("/x/: {topic: t, auth: api_key}"))


def test_json_error_bodies_are_json() -> None:
    from kubefuncs.gateway.responses import error_response

    r = error_response(418, "teapot", "short and stout", "abc")
    assert json.loads(r.body) == {  # type: ignore[arg-type]
        "error": "teapot",
        "message": "short and stout",
        "call_id": "abc",
    }
