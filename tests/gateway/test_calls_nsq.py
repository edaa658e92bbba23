"""Async call results on NSQ: the update format, the bounded cache, and the fan-out store
against the nsqd double (or a real nsqd from the environment, tests/nsq/support.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import msgpack
import pytest
from kubefuncs.gateway import GatewaySettings, create_app, loads
from kubefuncs.gateway.app import GATEWAY
from kubefuncs.gateway.calls import DONE, PENDING, CallResult, MemoryCallStore
from kubefuncs.gateway.calls_nsq import (
    TOPIC,
    NsqCallStore,
    ResultCache,
    decode_update,
    encode_update,
    entry_bytes,
)
from kubefuncs.transport import Transport, from_url

from tests.nsq.support import eventually, nsq_url
from tests.nsq_double import running_nsqd
from tests.servers import free_port

RESULT = CallResult(DONE, 201, {"content-type": "text/plain"}, b"made")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# -- the update format -----------------------------------------------------------------------


def test_an_update_round_trips_with_a_relative_ttl() -> None:
    update = decode_update(encode_update("c1", RESULT, 2.5))
    assert (update.call_id, update.result, update.ttl_s) == ("c1", RESULT, 2.5)
    assert decode_update(encode_update("c2", CallResult(PENDING), 60)).result.state == PENDING
    # the owner travels with every state, so each replica refuses other principals alike
    owned = CallResult(PENDING, owner="api_key:alice")
    assert decode_update(encode_update("c3", owned, 60)).result == owned


def _packed(**changes: object) -> bytes:
    fields = msgpack.unpackb(encode_update("c1", RESULT, 1))
    fields.update(changes)
    packed: bytes = msgpack.packb(fields)
    return packed


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b"\xc1", "not msgpack"),
        (b"\x81\xa2id", "not msgpack"),  # cut short
        (encode_update("c1", RESULT, 1) + b"\x00", "not msgpack"),
        (msgpack.packb([1, 2]), "expected a map"),
        (msgpack.packb({(1, 2): 3}), "not msgpack"),  # a key Python cannot hash
        (_packed(id=""), "id must be"),
        (_packed(ttl_ms=0), "ttl_ms must be"),
        (_packed(c=True), "c must be an integer"),
        (_packed(o=3), "o must be"),
        (_packed(s="maybe"), "s must be"),
        (_packed(b="text"), "b bytes"),
        (_packed(h={"x": 1}), "h must be"),
    ],
)
def test_a_malformed_update_says_what_is_wrong(raw: bytes, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        decode_update(raw)


# -- the cache -------------------------------------------------------------------------------


def test_a_late_pending_never_hides_a_result() -> None:
    # Given a call whose result arrived before its pending state (NSQ keeps no order)
    cache = ResultCache()
    cache.put("c1", RESULT, 60)
    # When the pending state arrives
    cache.put("c1", CallResult(PENDING), 60)
    # Then the result stays; a pending call still becomes done
    assert cache.get("c1") == RESULT
    cache.put("c2", CallResult(PENDING), 60)
    cache.put("c2", RESULT, 60)
    assert cache.get("c2") == RESULT


def test_results_are_forgotten_after_their_ttl() -> None:
    clock = Clock()
    cache = ResultCache(clock=clock)
    cache.put("old", RESULT, 10)
    clock.now += 5
    cache.put("new", RESULT, 10)
    clock.now += 5
    assert cache.get("old") is None and cache.get("new") == RESULT
    # an expired result does not survive a late pending either
    cache.put("old", CallResult(PENDING), 10)
    assert cache.get("old") == CallResult(PENDING)
    clock.now += 20
    cache.put("other", RESULT, 10)  # putting drops the expired entries in front
    assert len(cache) == 1 and cache.bytes == entry_bytes(RESULT)


def test_the_oldest_go_first_beyond_the_bounds() -> None:
    # Given a cache for three entries
    cache = ResultCache(max_items=3)
    for call_id in ("a", "b", "c"):
        cache.put(call_id, RESULT, 60)
    # When "a" is updated and a fourth arrives
    cache.put("a", RESULT, 60)
    cache.put("d", RESULT, 60)
    # Then the least recently updated one is gone
    assert [cache.get(c) is not None for c in "abcd"] == [True, False, True, True]
    # And a byte budget evicts the same way, but never the entry just put
    big = CallResult(DONE, 200, {}, b"x" * 1000)
    small = ResultCache(max_bytes=2 * entry_bytes(big))
    for call_id in ("a", "b", "c"):
        small.put(call_id, big, 60)
    assert [small.get(c) is not None for c in "abc"] == [False, True, True]
    small.put("huge", CallResult(DONE, 200, {}, b"x" * 10_000), 60)
    assert len(small) == 1 and small.get("huge") is not None


# -- the store on NSQ ------------------------------------------------------------------------


@dataclass
class Replicas:
    a: NsqCallStore
    b: NsqCallStore
    bus: Transport  # a third connection, as any other process on the bus


@pytest.fixture
async def replicas() -> AsyncIterator[Replicas]:
    async with nsq_url() as url:
        transports = [from_url(url) for _ in range(3)]
        for t in transports:
            await t.connect()
        stores = [NsqCallStore(t) for t in transports[:2]]
        for store in stores:
            await store.start()
        try:
            yield Replicas(stores[0], stores[1], transports[2])
        finally:
            for store in stores:
                await store.close()
                await store.close()  # idempotent
            for t in transports:
                await t.close()


async def test_a_call_put_on_one_replica_is_seen_on_another(replicas: Replicas) -> None:
    # When replica A stores a pending call
    await replicas.a.put("c1", CallResult(PENDING), 60)
    # Then replica B knows it is pending, and then its result
    assert await eventually(lambda: replicas.b.get("c1")) == CallResult(PENDING)
    await replicas.a.put("c1", RESULT, 60)
    assert await eventually(lambda: _done(replicas.b, "c1")) == RESULT
    assert await replicas.a.get("c1") == RESULT  # A's own copy, also after its echo
    assert await replicas.b.get("unknown") is None


async def _done(store: NsqCallStore, call_id: str) -> CallResult | None:
    result = await store.get(call_id)
    return result if result is not None and result.state == DONE else None


async def test_a_malformed_message_is_dropped_and_reading_goes_on(replicas: Replicas) -> None:
    # When something else publishes garbage to the calls topic, then a real update
    await replicas.bus.publish(TOPIC, b"\xc1 not an update")
    await replicas.bus.publish(TOPIC, encode_update("c2", RESULT, 60))
    # Then both replicas drop the garbage and keep the update
    assert await eventually(lambda: replicas.b.get("c2")) == RESULT
    assert await eventually(lambda: replicas.a.get("c2")) == RESULT
    # And nothing stays in flight or queued: every message was FINished, none handed back
    for store in (replicas.a, replicas.b):
        await eventually(lambda store=store: _settled(replicas.bus, store.channel))
    assert (replicas.a.malformed, replicas.b.malformed) == (1, 1)


async def _settled(bus: Transport, channel: str) -> bool:
    stats = await bus.stats(TOPIC, channel)
    return (stats.depth, stats.in_flight, stats.delayed) == (0, 0, 0)


async def test_a_store_started_while_nsq_is_away_catches_up() -> None:
    # Given a store whose nsqlookupd is not there yet
    port = free_port()
    url = f"nsq://127.0.0.1:{port}?lookupd_poll_interval_s=0.2&dial_timeout_s=1"
    transport, publisher = from_url(url), from_url(url)
    store = NsqCallStore(transport)
    try:
        await store.start()  # no exception: it keeps trying
        assert not store.listening
        # When nsqd and nsqlookupd come up
        async with running_nsqd(with_lookupd=True, lookupd_http_port=port):
            await eventually(lambda: store.listening)
            await publisher.connect()
            await publisher.publish(TOPIC, encode_update("c3", RESULT, 60))
            # Then results published from then on arrive
            assert await eventually(lambda: store.get("c3")) == RESULT
            await store.close()
            await publisher.close()
    finally:
        await store.close()
        await transport.close()
        await publisher.close()


def test_the_gateway_shares_async_results_by_fan_out_on_nsq() -> None:
    table = loads("/x/: x")
    stores = {
        url: type(create_app(GatewaySettings(bus_url=url), table)[GATEWAY].store)
        for url in ("nsq://127.0.0.1:4161", "memory://")
    }
    assert stores == {"nsq://127.0.0.1:4161": NsqCallStore, "memory://": MemoryCallStore}
