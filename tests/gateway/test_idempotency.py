"""Idempotency-Key on a route with ``idempotency``: the pure decisions, the memory store's
bounds, and the gateway in-process (memory bus) with a function that counts its calls."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from kubefuncs import HttpRequest, HttpResponse, function
from kubefuncs.errors import ConfigError
from kubefuncs.gateway import create_app, loads
from kubefuncs.gateway.app import GATEWAY
from kubefuncs.gateway.idempotency import (
    DEFAULT_TTL_S,
    Idempotency,
    MemoryStore,
    ValkeyStore,
    fingerprint,
    is_final,
    parse_key,
)

from .test_app import KEY, SETTINGS, served

ROUTES = """
routes:
  /pay/: {topic: pay, idempotency: true, timeout_s: 2}
  /short/: {topic: pay, idempotency: {ttl_s: 1}}
  /jobs/: {topic: pay, async: true, idempotency: true}
  /secure/: {topic: pay, auth: api_key, idempotency: true}
  /plain/: pay
"""
CALLS: Counter[str] = Counter()


@function("pay")
async def pay(request: HttpRequest) -> HttpResponse:
    """Counts each invocation by path; ``/slow`` sleeps, ``/fail`` raises, ``/status/N``."""
    CALLS[request.path] += 1
    parts = request.path.strip("/").split("/")
    if "slow" in parts:
        await asyncio.sleep(0.5)
    if "fail" in parts:
        raise ValueError("declined")
    status = int(parts[-1]) if "status" in parts else 201
    body = b"charge %d of %s" % (CALLS[request.path], request.body)
    return HttpResponse(status, {"content-type": "text/plain", "x-charge": "c1"}, body)


Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    CALLS.clear()
    async with served(pay, SETTINGS, ROUTES) as c:
        yield c


# -- pure decisions ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, Idempotency(DEFAULT_TTL_S)),
        ({"ttl_s": 60}, Idempotency(60.0)),
        ({}, Idempotency(DEFAULT_TTL_S)),
        (False, None),
        (None, None),
    ],
)
def test_the_route_option_forms(value: object, expected: Idempotency | None) -> None:
    from kubefuncs.gateway.idempotency import parse_idempotency

    assert parse_idempotency(value, "r") == expected


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("{topic: t, idempotency: yes-please}", "idempotency"),
        ("{topic: t, idempotency: {ttl_s: 0}}", "idempotency.ttl_s"),
        ("{topic: t, idempotency: {ttl_s: true}}", "idempotency.ttl_s"),
        ("{topic: t, idempotency: {ttl: 5}}", "idempotency"),
    ],
)
def test_a_bad_option_names_its_field(text: str, field: str) -> None:
    with pytest.raises(ConfigError) as e:
        loads(f"routes:\n  /x/: {text}\n", "routes.yaml")
    assert f"routes.yaml: routes./x/.{field}" in str(e.value)


@pytest.mark.parametrize(
    ("values", "key"),
    [(["abc-123"], "abc-123"), (['"8e03978e-40d5"'], "8e03978e-40d5"), (["k" * 255], "k" * 255)],
)
def test_good_keys(values: list[str], key: str) -> None:
    assert parse_key(values) == (key, None)


@pytest.mark.parametrize(
    "values",
    [[], ["a", "b"], [""], ['""'], ["k" * 256], ["with space"], ["caf\u00e9"], ["a\tb"], ['a"b']],
)
def test_bad_keys_are_refused_with_a_reason(values: list[str]) -> None:
    key, problem = parse_key(values)
    assert key == "" and problem


def test_the_fingerprint_covers_method_path_query_and_body() -> None:
    base = fingerprint("POST", "/pay/x", "a=1", b"body")
    others = [
        fingerprint("PUT", "/pay/x", "a=1", b"body"),
        fingerprint("POST", "/pay/y", "a=1", b"body"),
        fingerprint("POST", "/pay/x", "a=2", b"body"),
        fingerprint("POST", "/pay/x", "a=1", b"other"),
        fingerprint("POST", "/pay/xa=1", "", b"body"),  # no ambiguity between the parts
    ]
    assert base == fingerprint("POST", "/pay/x", "a=1", b"body")
    assert base not in others


@pytest.mark.parametrize(
    ("status", "final"),
    [
        *[(200, True), (201, True), (202, True), (404, True), (422, True)],
        *[(429, False), (408, False), (500, False), (502, False), (503, False), (504, False)],
    ],
)
def test_only_final_answers_are_kept(status: int, final: bool) -> None:
    assert is_final(status) is final


async def test_the_memory_store_is_bounded_and_forgets_after_the_ttl() -> None:
    now = [0.0]
    store = MemoryStore(max_items=3, clock=lambda: now[0])
    for i in range(5):
        assert await store.claim(f"k{i}", b"claim", 10) is None
    assert len(store) == 3 and await store.claim("k0", b"again", 10) is None  # oldest went
    assert await store.claim("k4", b"other", 10) == b"claim"
    now[0] = 11.0
    assert await store.claim("k4", b"other", 10) is None  # expired
    await store.release("k4", b"not-mine")
    assert await store.claim("k4", b"x", 10) == b"other"
    await store.release("k4", b"other")
    assert await store.claim("k4", b"x", 10) is None


# -- the gateway ---------------------------------------------------------------------------


async def test_a_repeated_key_replays_the_first_response_without_invoking(
    client: Client,
) -> None:
    # Given a first request with a key
    first = await client.post("/pay/order-1", data=b"10 EUR", headers={"Idempotency-Key": "k1"})
    body = await first.read()
    assert first.status == 201 and "Idempotent-Replayed" not in first.headers
    # When the same request comes again with the same key
    again = await client.post("/pay/order-1", data=b"10 EUR", headers={"Idempotency-Key": "k1"})
    # Then it gets the same status, headers and body, marked as replayed
    assert again.status == 201 and await again.read() == body == b"charge 1 of 10 EUR"
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["X-Call-Id"] == first.headers["X-Call-Id"]
    assert again.headers["x-charge"] == "c1"
    # and the function ran once; a new key runs it again
    assert CALLS["/pay/order-1"] == 1
    other = await client.post("/pay/order-1", data=b"10 EUR", headers={"Idempotency-Key": "k2"})
    assert other.status == 201 and CALLS["/pay/order-1"] == 2
    metrics = await (await client.get("/metrics")).text()
    assert 'kubefuncs_gateway_idempotent_replays_total{route="/pay/"} 1.0' in metrics


async def test_without_a_key_or_option_every_request_invokes(client: Client) -> None:
    for _ in range(2):
        assert (await client.post("/pay/nokey", data=b"x")).status == 201
        plain = await client.post("/plain/k", data=b"x", headers={"Idempotency-Key": "k"})
        assert plain.status == 201
    assert CALLS["/pay/nokey"] == 2 and CALLS["/plain/k"] == 2


async def test_the_same_key_for_another_request_is_422(client: Client) -> None:
    headers = {"Idempotency-Key": "k-reused"}
    assert (await client.post("/pay/a", data=b"1", headers=headers)).status == 201
    for path, data in (("/pay/a", b"2"), ("/pay/b", b"1")):
        r = await client.post(path, data=data, headers=headers)
        assert r.status == 422 and (await r.json())["error"] == "idempotency_key_reused"
    assert (
        r.method == "POST"
        and (await client.put("/pay/a", data=b"1", headers=headers)).status == 422
    )
    assert CALLS["/pay/a"] == 1 and CALLS["/pay/b"] == 0


async def test_a_second_request_while_the_first_runs_is_409_with_retry_after(
    client: Client,
) -> None:
    headers = {"Idempotency-Key": "k-slow"}
    first = asyncio.ensure_future(client.post("/pay/slow", data=b"x", headers=headers))
    deadline = asyncio.get_running_loop().time() + 5
    while CALLS["/pay/slow"] == 0 and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)
    during = await client.post("/pay/slow", data=b"x", headers=headers)
    assert during.status == 409 and during.headers["Retry-After"] == "1"
    assert (await during.json())["error"] == "idempotency_in_progress"
    assert (await first).status == 201
    after = await client.post("/pay/slow", data=b"x", headers=headers)
    assert after.status == 201 and after.headers["Idempotent-Replayed"] == "true"
    assert CALLS["/pay/slow"] == 1


async def test_a_failure_releases_the_key_and_a_4xx_is_kept(client: Client) -> None:
    for _ in range(2):
        r = await client.get("/pay/fail", headers={"Idempotency-Key": "k-fail"})
        assert r.status == 502 and "Idempotent-Replayed" not in r.headers
    assert CALLS["/pay/fail"] == 2  # the client could retry
    for _ in range(2):
        r = await client.get("/pay/status/404", headers={"Idempotency-Key": "k-404"})
        assert r.status == 404
    assert r.headers["Idempotent-Replayed"] == "true" and CALLS["/pay/status/404"] == 1
    for _ in range(2):
        r = await client.get("/pay/status/503", headers={"Idempotency-Key": "k-503"})
    assert CALLS["/pay/status/503"] == 2


async def test_a_replay_ends_with_the_ttl(client: Client) -> None:
    headers = {"Idempotency-Key": "k-ttl"}
    assert (await client.post("/short/x", headers=headers)).status == 201
    r = await client.post("/short/x", headers=headers)
    assert r.headers.get("Idempotent-Replayed") == "true"
    await asyncio.sleep(1.1)
    r = await client.post("/short/x", headers=headers)
    assert "Idempotent-Replayed" not in r.headers and CALLS["/short/x"] == 2


async def test_an_async_replay_returns_the_first_call_id(client: Client) -> None:
    headers = {"Idempotency-Key": "k-job"}
    first = await client.post("/jobs/j", data=b"x", headers=headers)
    again = await client.post("/jobs/j", data=b"x", headers=headers)
    assert first.status == again.status == 202
    assert (await again.json())["call_id"] == (await first.json())["call_id"]
    assert again.headers["Location"] == first.headers["Location"]
    assert again.headers["Idempotent-Replayed"] == "true"
    deadline = asyncio.get_running_loop().time() + 5
    while (await client.get(first.headers["Location"])).status == 202:
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.02)
    assert CALLS["/jobs/j"] == 1


async def test_keys_are_scoped_per_principal_on_a_route_with_auth() -> None:
    other = "other-key-0123"
    settings = replace(SETTINGS, api_keys={KEY: "a", other: "b"})
    CALLS.clear()
    async with served(pay, settings, ROUTES) as client:
        for api_key in (KEY, other, KEY):
            headers = {"Idempotency-Key": "shared", "X-Api-Key": api_key}
            assert (await client.post("/secure/p", data=b"x", headers=headers)).status == 201
    assert CALLS["/secure/p"] == 2  # one per principal, the third a replay


@pytest.mark.parametrize(
    "raw",
    [b"k" * 256, b"caf\xc3\xa9", b"a b", b"", b"\x7f", b'a"b', b"k" * 5000],
)
async def test_hostile_keys_are_400_with_a_reason(client: Client, raw: bytes) -> None:
    # the header goes as raw bytes (aiohttp would refuse to send some of them)
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(
        b"POST /pay/h HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n"
        b"Idempotency-Key: " + raw + b"\r\n\r\n"
    )
    await writer.drain()
    response = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == b"400", head
    # refused by the gateway (JSON) or, for control characters, by the HTTP parser (text)
    assert b"bad_idempotency_key" in body or b"Invalid header value" in body, body
    assert CALLS["/pay/h"] == 0


async def test_a_crlf_in_the_key_never_reaches_a_response(client: Client) -> None:
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(
        b"POST /pay/h HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n"
        b"Idempotency-Key: a\rX-Injected: 1\r\n\r\n"
    )
    await writer.drain()
    response = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    head = response.partition(b"\r\n\r\n")[0]
    assert head.split(b" ")[1] == b"400" and b"X-Injected" not in head
    assert CALLS["/pay/h"] == 0


async def test_two_keys_headers_are_400(client: Client) -> None:
    r = await client.post("/pay/two", headers=[("Idempotency-Key", "a"), ("Idempotency-Key", "b")])
    assert r.status == 400 and (await r.json())["error"] == "bad_idempotency_key"


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("valkey://127.0.0.1:1/0?prefix=p", ValkeyStore),
        ("nsq://?nsqd=127.0.0.1:1", MemoryStore),
        ("memory://x", MemoryStore),
    ],
)
def test_keys_are_shared_on_valkey_and_per_replica_elsewhere(url: str, kind: type) -> None:
    app = create_app(replace(SETTINGS, bus_url=url), loads(ROUTES))  # nothing connects yet
    assert isinstance(app[GATEWAY].guard.store, kind)
