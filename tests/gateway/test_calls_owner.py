"""Async results are shown only to the principal that started the call (any caller when
the route is anonymous), on every bus: the memory bus, real Valkey (results on the bus) and
NSQ (results fanned out to every replica, the owner travelling with them)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import msgpack
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given, settings
from hypothesis import strategies as st
from kubefuncs import wire
from kubefuncs.gateway import GatewaySettings, create_app, loads
from kubefuncs.gateway.auth import Principal
from kubefuncs.gateway.calls import DONE, PENDING, CallResult, ValkeyCallStore, owner_of
from kubefuncs.runtime import Runtime
from kubefuncs.transport import from_url

from tests.nsq.support import nsq_url

from .fns import behave

ROUTES = """
routes:
  /mine/: {topic: e2e, async: true, auth: api_key, timeout_s: 5}
  /open/: {topic: e2e, async: true, timeout_s: 5}
"""
ALICE, BOB = "alice-key-0123", "bob-key-0123456"
SETTINGS = GatewaySettings(api_keys={ALICE: "alice", BOB: "bob"})
Client = TestClient[web.Request, web.Application]


@dataclass
class Replicas:
    starter: Client  # where calls are made
    reader: Client  # another replica where the bus shares results (the same one on memory)


@pytest.fixture(params=["memory", pytest.param("valkey", marks=pytest.mark.real), "nsq"])
async def replicas(request: pytest.FixtureRequest) -> AsyncIterator[Replicas]:
    async with _bus_url(request) as url:
        transports = [from_url(url) for _ in range(2)]
        for t in transports:
            await t.connect()
        runtime = Runtime(behave, transport=transports[0])
        task = asyncio.create_task(runtime.run())
        apps = [create_app(SETTINGS, loads(ROUTES), transport=t) for t in transports]
        try:
            async with TestClient(TestServer(apps[0])) as a, TestClient(TestServer(apps[1])) as b:
                yield Replicas(a, a if request.param == "memory" else b)
        finally:
            runtime.stop()
            await task
            for t in transports:
                await t.close()


@contextlib.asynccontextmanager
async def _bus_url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    if request.param == "memory":
        yield f"memory://{wire.new_id()}"
    elif request.param == "valkey":
        yield request.getfixturevalue("valkey_url")
    else:
        async with nsq_url() as url:
            yield url


async def _done(client: Client, call_id: str, **headers: str) -> bytes:
    async with asyncio.timeout(10):
        while True:
            r = await client.get(f"/calls/{call_id}", headers=headers)
            if r.status == 200:
                return await r.read()
            assert r.status in (202, 404), (r.status, await r.text())  # 404: not here yet
            await asyncio.sleep(0.02)


async def test_only_the_principal_that_started_a_call_reads_its_result(
    replicas: Replicas,
) -> None:
    # Given a call started with Alice's API key on a route that requires credentials
    r = await replicas.starter.post("/mine/slow?s=0.05", headers={"X-Api-Key": ALICE})
    assert r.status == 202, await r.text()
    call_id = r.headers["X-Call-Id"]
    # Then Alice reads its result (on another replica where the bus shares results)
    assert await _done(replicas.reader, call_id, **{"X-Api-Key": ALICE}) == b"slept"
    # And Bob hears exactly what an unknown id gets: ids of others cannot be probed
    unknown = await replicas.reader.get("/calls/" + "0" * 32, headers={"X-Api-Key": BOB})
    bob = await replicas.reader.get(f"/calls/{call_id}", headers={"X-Api-Key": BOB})
    assert (bob.status, unknown.status) == (404, 404)
    bob_body, unknown_body = await bob.json(), await unknown.json()
    assert bob_body.pop("call_id") == call_id and unknown_body.pop("call_id") == "0" * 32
    assert bob_body == unknown_body
    # And a caller without credentials is asked for them, as by the route
    anonymous = await replicas.reader.get(f"/calls/{call_id}")
    assert anonymous.status == 401 and "WWW-Authenticate" in anonymous.headers
    wrong = await replicas.reader.get(f"/calls/{call_id}", headers={"X-Api-Key": "nobody-123"})
    assert wrong.status == 401


async def test_a_pending_call_is_hidden_from_others_too(replicas: Replicas) -> None:
    r = await replicas.starter.post("/mine/slow?s=1", headers={"X-Api-Key": ALICE})
    call_id = r.headers["X-Call-Id"]
    # While it runs: Alice sees it pending, Bob sees no such call
    async with asyncio.timeout(5):
        while (
            await replicas.reader.get(f"/calls/{call_id}", headers={"X-Api-Key": ALICE})
        ).status != 202:
            await asyncio.sleep(0.02)
    bob = await replicas.reader.get(f"/calls/{call_id}", headers={"X-Api-Key": BOB})
    assert bob.status == 404


async def test_a_call_on_an_anonymous_route_is_readable_by_anyone(replicas: Replicas) -> None:
    r = await replicas.starter.post("/open/slow?s=0.05", headers={"X-Api-Key": ALICE})
    call_id = r.headers["X-Call-Id"]
    assert await _done(replicas.reader, call_id) == b"slept"
    for headers in ({}, {"X-Api-Key": BOB}, {"X-Api-Key": "not-a-key-at-all"}):
        r = await replicas.reader.get(f"/calls/{call_id}", headers=headers)
        assert r.status == 200 and await r.read() == b"slept"


# -- what is stored ----------------------------------------------------------------------------


def test_the_owner_is_the_method_and_name_of_the_principal() -> None:
    assert owner_of(Principal("alice", "api_key")) == "api_key:alice"
    assert owner_of(None) is None
    owned = CallResult(DONE, 200, {"a": "b"}, b"x", "jwt:alice")
    assert CallResult.decode(owned.encode()) == owned
    assert CallResult.decode(CallResult(PENDING).encode()).owner is None


def test_an_entry_stored_before_owners_reads_as_anonymous() -> None:
    legacy = msgpack.packb({"s": DONE, "c": 200, "h": {}, "b": b"old"}, use_bin_type=True)
    assert CallResult.decode(legacy) == CallResult(DONE, 200, {}, b"old", None)


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"\xc1", "not msgpack"),
        (msgpack.packb([1]), "expected a map"),
        (msgpack.packb({"s": DONE, "c": 200, "h": {}}), "b bytes"),
        (msgpack.packb({"s": DONE, "c": "200", "h": {}, "b": b""}), "c must be"),
        (msgpack.packb({"s": DONE, "c": 200, "h": [], "b": b""}), "h must be"),
        (msgpack.packb({"s": DONE, "c": 200, "h": {}, "b": b"", "o": 7}), "o must be"),
        (msgpack.packb({"s": DONE, "c": 200, "h": {}, "b": b"", "o": ""}), "o must be"),
    ],
)
def test_a_malformed_entry_says_what_is_wrong(raw: bytes, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        CallResult.decode(raw)


@pytest.mark.real
async def test_a_malformed_entry_on_valkey_is_an_unknown_call_not_a_500(
    valkey_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Given entries on the bus written by something else: garbage, and an old-format result
    transport = from_url(valkey_url)
    await transport.connect()
    call: Any = transport.call  # type: ignore[attr-defined]
    prefix = transport.keys.prefix  # type: ignore[attr-defined]
    bad, old = "a" * 32, "b" * 32
    await call("SET", f"{prefix}:gw:call:{bad}", b"\xc1garbage")
    legacy = msgpack.packb({"s": DONE, "c": 200, "h": {}, "b": b"old"}, use_bin_type=True)
    await call("SET", f"{prefix}:gw:call:{old}", legacy)
    store = ValkeyCallStore(call, prefix)
    app = create_app(SETTINGS, loads(ROUTES), transport=transport)
    try:
        # When they are read
        with caplog.at_level(logging.WARNING):
            assert await store.get(bad) is None
            async with TestClient(TestServer(app)) as client:
                r = await client.get(f"/calls/{bad}")
                # Then the garbage is an unknown call (and logged), the old result anyone's
                assert r.status == 404 and (await r.json())["error"] == "unknown_call"
                r = await client.get(f"/calls/{old}")
                assert r.status == 200 and await r.read() == b"old"
        assert "malformed async result" in caplog.text
    finally:
        await transport.close()


SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.text(max_size=8),
    st.binary(max_size=8),
)
VALUES = st.one_of(SCALARS, st.dictionaries(st.text(max_size=3), SCALARS, max_size=3))
FIELDS = st.dictionaries(st.sampled_from(["s", "c", "h", "b", "o", "x"]), VALUES, max_size=6)


@settings(max_examples=200, deadline=None, database=None)
@given(
    st.one_of(
        st.binary(max_size=64),
        FIELDS.map(lambda d: msgpack.packb(d, use_bin_type=True)),
    )
)
def test_any_stored_bytes_decode_to_a_result_or_a_value_error(raw: bytes) -> None:
    try:
        result = CallResult.decode(raw)
    except ValueError as e:
        assert str(e)
        return
    assert result.state in (PENDING, DONE) and isinstance(result.body, bytes)
    assert result.owner is None or isinstance(result.owner, str)
