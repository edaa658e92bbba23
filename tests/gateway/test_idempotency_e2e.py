"""Idempotency-Key across two gateway replicas on one Valkey (separate processes, as
deployed): a key used on one replica is replayed by the other, and the function runs once.
Also the Valkey store's scripts on their own (a malformed record, a claim that expired)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from kubefuncs import wire
from kubefuncs.gateway.idempotency import Record, ValkeyStore
from kubefuncs.transport import from_url

from tests.gateway.test_e2e import Stack, function, gateway, listening, valkey_bus
from tests.nsq.support import Pump
from tests.servers import free_port

pytestmark = pytest.mark.real

ROUTES = """
routes:
  /pay/: {topic: e2e, idempotency: true, timeout_s: 5}
  /jobs/: {topic: e2e, async: true, idempotency: {ttl_s: 60}, timeout_s: 5}
"""


@pytest.fixture(scope="module")
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    routes = Path(tmp_path_factory.mktemp("gw")) / "routes.yaml"
    routes.write_text(ROUTES)
    with valkey_bus(request) as bus:
        ports = free_port(), free_port()
        stack = Stack(bus, *(f"http://127.0.0.1:{port}" for port in ports))
        gateways = [gateway(bus.url, routes, port) for port in ports]
        worker = function(bus.url, "e2e")
        try:
            for proc, base in zip(gateways, (stack.url, stack.other), strict=True):
                proc.wait_http(f"{base}/readyz")
            worker.wait_http(f"{stack.url}/pay/warm-up", expect=b"warm-up")
            yield stack
        finally:
            procs = [worker, *gateways]
            codes = [proc.stop() for proc in procs]
            for proc, code in zip(procs, codes, strict=True):
                assert code == 0, proc.output()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def published(pump: Pump, quiet_s: float = 0.5) -> int:
    """How many messages the probe channel got until none came for ``quiet_s``."""
    count = 0
    while True:
        try:
            await asyncio.wait_for(pump.queue.get(), quiet_s)
        except TimeoutError:
            return count
        count += 1


async def test_a_key_used_on_one_replica_is_replayed_by_the_other(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    key = {"Idempotency-Key": f"pay-{wire.new_id()}"}
    async with listening(stack, "e2e") as pump:
        # Given a request answered by replica A
        async with http.post(f"{stack.url}/pay/order", data=b"10 EUR", headers=key) as r:
            assert r.status == 200
            first, call_id = await r.read(), r.headers["X-Call-Id"]
        # When the same request comes to replica B, and to A again
        for base in (stack.other, stack.url):
            async with http.post(f"{base}/pay/order", data=b"10 EUR", headers=key) as r:
                # Then both replay A's response; the function was invoked once
                assert r.status == 200 and await r.read() == first
                assert r.headers["Idempotent-Replayed"] == "true"
                assert r.headers["X-Call-Id"] == call_id
        async with http.post(f"{stack.other}/pay/order", data=b"20 EUR", headers=key) as r:
            assert r.status == 422
        assert await published(pump) == 1
    async with http.get(f"{stack.other}/metrics") as r:
        assert 'kubefuncs_gateway_idempotent_replays_total{route="/pay/"} 1.0' in await r.text()


async def test_a_request_running_on_one_replica_is_409_on_the_other(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    key = {"Idempotency-Key": f"slow-{wire.new_id()}"}
    async with listening(stack, "e2e") as pump:
        slow = asyncio.ensure_future(http.get(f"{stack.url}/pay/slow?s=1", headers=key))
        await asyncio.wait_for(pump.queue.get(), 10)  # the first one is on the bus
        async with http.get(f"{stack.other}/pay/slow?s=1", headers=key) as r:
            assert r.status == 409 and r.headers["Retry-After"] == "1"
            assert (await r.json())["error"] == "idempotency_in_progress"
        async with await slow as r:
            assert r.status == 200 and await r.read() == b"slept"
        async with http.get(f"{stack.other}/pay/slow?s=1", headers=key) as r:
            assert r.status == 200 and r.headers["Idempotent-Replayed"] == "true"
        assert await published(pump) == 0  # nothing but the first


async def test_an_async_replay_on_another_replica_names_the_same_call(
    stack: Stack, http: aiohttp.ClientSession
) -> None:
    key = {"Idempotency-Key": f"job-{wire.new_id()}"}
    async with http.post(f"{stack.url}/jobs/j", data=b"x", headers=key) as r:
        assert r.status == 202
        call_id = (await r.json())["call_id"]
    async with http.post(f"{stack.other}/jobs/j", data=b"x", headers=key) as r:
        assert r.status == 202 and (await r.json())["call_id"] == call_id
        assert r.headers["Idempotent-Replayed"] == "true"


async def test_the_valkey_store_scripts(shared_url: str) -> None:
    transport = from_url(shared_url)
    await transport.connect()
    store = ValkeyStore(transport.call, transport.keys.prefix)  # type: ignore[attr-defined]
    mine, theirs = Record("t1", "f").encode(), Record("t2", "f").encode()
    try:
        assert await store.claim("k", mine, 5) is None
        assert await store.claim("k", theirs, 5) == mine
        await store.release("k", theirs)  # not theirs to release
        assert await store.claim("k", theirs, 5) == mine
        await store.finish("k", mine, b"done", 5)
        assert await store.claim("k", theirs, 5) == b"done"
        await store.finish("k", mine, b"again", 5)  # our claim is gone: left alone
        assert await store.claim("k", theirs, 5) == b"done"
        assert await store.claim("short", mine, 0.05) is None
        await asyncio.sleep(0.1)
        assert await store.claim("short", theirs, 5) is None  # the claim expired
        redis = transport.redis  # type: ignore[attr-defined]
        every = {"target_nodes": "primaries"} if "+cluster" in shared_url else {}
        keys = await redis.keys(f"{transport.keys.prefix}:gw:idem:*", **every)  # type: ignore[attr-defined]
        assert len(keys) == 2
    finally:
        await transport.close()
