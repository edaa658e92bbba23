"""Authentication through the gateway app: failed attempts are throttled per client (memory
and shared Valkey buckets), credentials never reach functions, JWKS keys, hostile tokens."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import replace
from typing import Any

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from kubefuncs.gateway import GatewaySettings, create_app, loads
from kubefuncs.gateway.auth import sign_hs256
from kubefuncs.gateway.frontdoor import refuse_bad_requests

from .fns import behave
from .test_app import Client, served
from .test_jwks import RSA_A, provider, token

ROUTES = """
routes:
  /echo/: e2e
  /secure/: {topic: e2e, auth: api_key}
  /token/: {topic: e2e, auth: jwt}
  /feed/: {topic: e2e, auth: {type: jwt, require_exp: false}}
  /either/: {topic: e2e, auth: any}
publish: {topics: [events], auth: api_key}
"""
KEY = "auth-key-0123456789"
SECRET = "auth-secret-0123456789-0123456789-0123"
SETTINGS = GatewaySettings(
    bus_url="memory://",
    api_keys={KEY: "tests"},
    jwt_secret=SECRET,
    auth_failures_per_min=60,  # one a second back
    auth_failures_burst=3,
)


def serve(
    settings: GatewaySettings = SETTINGS, *, bare: bool = False
) -> contextlib.AbstractAsyncContextManager[Client]:
    """The app with the ``behave`` function on a private memory bus (``bare``: without the
    middleware that refuses non-UTF-8 headers, to show the auth path is safe alone)."""

    def strip(app: web.Application) -> None:
        app.middlewares.remove(refuse_bad_requests)

    return served(behave, settings, ROUTES, strip if bare else None)


def bearer(claims: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": "Bearer " + sign_hs256(claims, SECRET.encode())}


async def statuses(client: Client, path: str, headers: dict[str, str], n: int) -> list[int]:
    return [(await client.get(path, headers=headers)).status for _ in range(n)]


async def test_failed_authentication_is_throttled_per_client_address() -> None:
    async with serve() as client:
        # Given successful requests (they are not charged to the failure budget)
        assert await statuses(client, "/secure/", {"X-Api-Key": KEY}, 10) == [200] * 10
        # When a client keeps guessing keys on a route without rate_limit
        wrong = await statuses(client, "/secure/", {"X-Api-Key": "guess-0123456"}, 4)
        # Then the burst of 3 is answered 401, then 429 with Retry-After
        assert wrong == [401, 401, 401, 429]
        r = await client.get("/secure/", headers={"X-Api-Key": "guess-0123456"})
        body = await r.json()
        assert r.status == 429 and r.headers["Retry-After"] == "1"
        assert body["error"] == "too_many_failures" and "failed authentication" in body["message"]
        # and while it waits even the right key gets 429: guesses are not checked
        assert await statuses(client, "/secure/", {"X-Api-Key": KEY}, 1) == [429]
        # and the budget is the address's, on every authenticated route and on publish
        assert await statuses(client, "/token/", bearer({"sub": "a"}), 1) == [429]
        assert (
            await client.post("/topics/events", json={}, headers={"X-Api-Key": KEY})
        ).status == 429
        # and open routes are not throttled by it
        assert await statuses(client, "/echo/", {}, 3) == [200] * 3
        # When a token has come back / Then one more attempt is checked
        await asyncio.sleep(1.05)
        assert await statuses(client, "/secure/", {"X-Api-Key": KEY}, 1) == [200]


async def test_bad_tokens_and_refused_topics_count_too() -> None:
    async with serve() as client:
        headers = {**bearer({"sub": "a"}), "X-Api-Key": KEY}
        # a JWT without exp, an expired one, then publishes to a topic nobody opened
        assert await statuses(client, "/token/", bearer({"sub": "a"}), 1) == [401]
        assert await statuses(client, "/token/", bearer({"exp": time.time() - 99}), 1) == [401]
        r = await client.post("/topics/secret", json={}, headers={"X-Api-Key": KEY})
        assert r.status == 403
        r = await client.post("/topics/secret", json={}, headers=headers)
        assert r.status == 429 and r.headers["Retry-After"] == "1"


async def test_the_throttle_can_be_turned_off() -> None:
    async with serve(replace(SETTINGS, auth_failures_per_min=0)) as client:
        assert await statuses(client, "/secure/", {}, 20) == [401] * 20


async def test_a_route_may_accept_tokens_without_exp() -> None:
    async with serve() as client:
        assert await statuses(client, "/feed/", bearer({"sub": "cron"}), 1) == [200]
        assert await statuses(client, "/token/", bearer({"sub": "cron"}), 1) == [401]


@pytest.mark.real
async def test_valkey_replicas_share_the_failure_budget(valkey_url: str) -> None:
    # Given two gateway replicas on one Valkey (no function needed: refusals never reach it)
    settings = replace(SETTINGS, bus_url=valkey_url)
    a = TestClient(TestServer(create_app(settings, loads(ROUTES))))
    b = TestClient(TestServer(create_app(settings, loads(ROUTES))))
    async with a, b:
        guess = {"X-Api-Key": "guess-0123456"}
        # When one address fails twice on replica a and once on replica b
        assert await statuses(a, "/secure/", guess, 2) == [401, 401]
        assert await statuses(b, "/either/", guess, 1) == [401]
        # Then both replicas refuse it with 429 (the bucket lives on the bus)
        rb = await b.get("/secure/", headers={"X-Api-Key": KEY})
        ra = await a.post("/topics/events", json={}, headers={"X-Api-Key": KEY})
        assert (ra.status, rb.status) == (429, 429)
        assert int(rb.headers["Retry-After"]) >= 1
        # and after a second one more attempt goes through to the check
        await asyncio.sleep(1.05)
        assert await statuses(b, "/secure/", guess, 2) == [401, 429]


async def test_a_function_never_sees_the_credentials() -> None:
    async with serve() as client:
        credentials = {
            **bearer({"sub": "ada", "exp": time.time() + 60}),
            "X-Api-Key": KEY,
            "x-api-key": KEY,
            "X-Other": "kept",
        }
        for path in ("/secure/", "/token/", "/either/", "/echo/"):
            r = await client.get(path, headers=credentials)
            assert r.status == 200, (path, await r.text())
            seen = (await r.json())["headers"]
            assert "authorization" not in seen and "x-api-key" not in seen, path
            assert seen["x-other"] == "kept"


HOSTILE = [
    "Bearer W" + "zEs" * 2000 + "MV0.e30.AAAA",  # a 6 KB JSON list as the header
    "Bearer " + "W1t" * 2000 + ".e30.AAAA",  # [[[[... nested past the parser's limit
    "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJyb290In0.",  # alg none, unsigned
    "bearer   ",
]


@pytest.mark.parametrize("value", HOSTILE, ids=["huge-list", "nested", "none", "empty"])
async def test_a_hostile_token_is_a_401_with_a_reason(
    value: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with serve(replace(SETTINGS, auth_failures_per_min=0)) as client:
        r = await client.get("/token/", headers={"Authorization": value})
        assert r.status == 401 and (await r.json())["message"], await r.text()
        assert not [rec for rec in caplog.records if rec.exc_info]


@pytest.mark.parametrize("header", [b"X-Api-Key: k\xff\xfe\x80", b"Authorization: Bearer \xc3("])
async def test_non_utf8_credentials_are_a_401_even_without_the_header_middleware(
    header: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    async with serve(bare=True) as client:
        reader, writer = await asyncio.open_connection(client.host, client.port)
        writer.write(
            b"GET /either/ HTTP/1.1\r\nHost: x\r\n" + header + b"\r\nConnection: close\r\n\r\n"
        )
        data = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 401"), data[:300]
        assert b"not valid UTF-8" in body or b"not ASCII" in body
        assert not [rec for rec in caplog.records if rec.exc_info]


async def test_rs256_tokens_verify_with_keys_from_a_jwks_url() -> None:
    async with provider() as p:
        settings = replace(SETTINGS, jwt_secret=None, jwks_url=p.url)
        async with serve(settings) as client:
            good = {"Authorization": f"Bearer {token(RSA_A, 'a')}"}
            r = await client.get("/token/", headers=good)
            assert r.status == 200, await r.text()
            r = await client.get(
                "/token/", headers={"Authorization": f"Bearer {token(RSA_A, 'q')}"}
            )
            assert r.status == 401 and "kid 'q'" in (await r.json())["message"]
            hs = bearer({"exp": time.time() + 60})
            r = await client.get("/token/", headers=hs)
            assert r.status == 401 and "'HS256' is not accepted" in (await r.json())["message"]
    assert p.fetches == 1


async def test_a_jwks_that_was_never_fetched_gives_503_auth_unavailable() -> None:
    settings = replace(SETTINGS, jwt_secret=None, jwks_url="http://127.0.0.1:9/jwks.json")
    async with serve(settings) as client:
        tok = jwt.encode({"exp": time.time() + 60}, RSA_A, "RS256", headers={"kid": "a"})
        r = await client.get("/token/", headers={"Authorization": f"Bearer {tok}"})
        assert r.status == 503 and r.headers["Retry-After"]
        assert (await r.json())["error"] == "auth_unavailable"
        # and an API key still works on a route that takes either
        assert (await client.get("/either/", headers={"X-Api-Key": KEY})).status == 200
