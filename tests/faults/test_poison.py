"""Poison entries of every field and type, interleaved with good events, on two replicas.

Given two replicas of a function, when entries broken in every way (tests/faults/poison.py:
stream fields, bodies, envelope field types, kinds, payloads, non-UTF-8 strings, a body
over the size limit, reply addresses the function must refuse or cannot write to) are put
on its topic between good events, then every good event is handled, every poison entry is
dead-lettered at its first attempt with a reason (never retried, never dropped), and both
replicas are alive, ready and still consuming afterwards.
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from kubefuncs import wire
from kubefuncs.transport import Transport, from_url
from redis.asyncio import Redis

from tests.faults import poison
from tests.faults.ledger import Ledger
from tests.faults.load import event_body, handled, records, settle
from tests.faults.stack import TOPIC, FaultBus, function, stop_all

pytestmark = [pytest.mark.real, pytest.mark.slow]

AFTER = 20  # good events published after the last poison one
PROBE_S = 1.0  # how long each of the last 4 events takes


async def _valkey_cases(bus: FaultBus) -> list[tuple[str, poison.Fields]]:
    """Every case, the reply addresses included: two of them hold keys of another type."""
    wrong_type = {"string": bus.key("reply", wire.new_id()), "hash": bus.key("reply", "h")}
    async with Redis.from_url(bus.redis_url) as r:
        await r.set(wrong_type["string"], b"not a list")
        await r.hset(wrong_type["hash"], "f", "v")
    addresses = {
        "holding a string": wrong_type["string"],
        "holding a hash": wrong_type["hash"],
        "naming a topic stream": bus.key("topic", TOPIC),
        "of another prefix": f"other:reply:{wire.new_id()}",
    }
    return poison.cases(entry_fields=True, huge=True) + poison.reply_to_cases(addresses)


def _nsq_cases() -> list[tuple[str, poison.Fields]]:
    addresses = {"not an inbox": "nope", "a Valkey list": f"kf:reply:{wire.new_id()}"}
    return poison.cases(entry_fields=False, huge=False) + poison.reply_to_cases(addresses)


async def _put(bus: FaultBus, transport: Transport, fields: poison.Fields) -> None:
    if bus.nsq is not None:
        await transport.publish(TOPIC, fields["m"])
        return
    async with Redis.from_url(bus.redis_url) as r:
        await r.xadd(bus.key("topic", TOPIC), fields)  # type: ignore[arg-type]


async def _publish_good(transport: Transport, ledger: Ledger, sleep_s: float = 0.0) -> str:
    event_id = wire.new_id()
    await transport.publish(TOPIC, event_body(event_id, sleep_s))
    ledger.events.published[event_id] = time.monotonic()
    return event_id


@pytest.mark.parametrize("kind", ["valkey", "nsq"])
async def test_poison_entries_are_dead_lettered_and_stop_nothing(kind: str, tmp_path: Path) -> None:
    bus = FaultBus(kind)
    record = tmp_path / "handled.log"
    replicas = [function(bus, record, KF_CONCURRENCY="2") for _ in range(2)]
    ledger = Ledger("poison entries", kind)
    transport = from_url(bus.url)
    try:
        for proc, health in replicas:
            proc.wait_http(f"{health}/readyz")
        await transport.connect()
        cases = await _valkey_cases(bus) if bus.valkey else _nsq_cases()
        # When poison entries are put between good events
        for _, fields in cases:
            await _put(bus, transport, fields)
            await _publish_good(transport, ledger)
        for _ in range(AFTER):
            await _publish_good(transport, ledger, sleep_s=0.1)
        # Then
        expected = Counter(fields.get("m", b"") for _, fields in cases)
        dead = await _until_dead(bus, transport, expected)
        await settle(ledger, record, bus, transport)
        consumers = await _probe_consumers(transport, ledger, record)
        ready = [_ready(health) for _, health in replicas]
        alive = [proc.proc.poll() is None for proc, _ in replicas]
    finally:
        await transport.close()
        complaints = stop_all([proc for proc, _ in replicas])
        bus.close()
    ledger.extra = _poison_figures(expected, dead, record)
    ledger.check()
    assert not ledger.events.dead, ledger.events.dead  # no good event dead-lettered
    missing = _missing(expected, dead)
    names = {fields.get("m", b""): name for name, fields in cases}
    assert not missing, (len(missing), [names[body] for body in missing])
    retried = [(body[:60], reason, a) for body, reason, a in dead if a > 1]
    assert not retried, retried  # a permanent failure is never retried
    assert all(reason for _, reason, _ in dead), dead
    assert not ledger.extra["poison_handled"], ledger.extra
    assert all(alive) and all(ready) and not complaints, (alive, ready, complaints)
    assert consumers == {p.proc.pid for p, _ in replicas}, consumers  # both still consume


async def _until_dead(
    bus: FaultBus, transport: Transport, expected: Counter[bytes]
) -> list[tuple[bytes, str, int]]:
    """The dead letters (body, reason, attempt), once all expected are there (15 s at most)."""
    deadline = time.monotonic() + 15
    while True:
        dead = await _dead_with_attempt(bus, transport)
        if not _missing(expected, dead) or time.monotonic() > deadline:
            return dead
        await asyncio.sleep(0.5)


async def _dead_with_attempt(bus: FaultBus, transport: Transport) -> list[tuple[bytes, str, int]]:
    if bus.nsq is not None:
        letters = await transport.dead_letters(TOPIC, "ledger", limit=10_000)
        return [(d.body, d.reason, d.attempt) for d in letters]
    async with Redis.from_url(bus.redis_url) as r:
        entries = await r.xrange(bus.key("dead", TOPIC, "ledger"))
    return [
        (f.get(b"m", b""), f.get(b"reason", b"").decode(errors="replace"), _attempt(f))
        for _, f in entries
    ]


def _attempt(fields: dict[bytes, bytes]) -> int:
    try:
        return int(fields.get(b"a", b"0"))
    except ValueError:
        return 0  # a dead entry may keep the broken attempt field it came with


def _missing(expected: Counter[bytes], dead: list[tuple[bytes, str, int]]) -> list[bytes]:
    got = Counter(body for body, _, _ in dead)
    return [body for body, n in expected.items() if got[body] < n]


def _poison_figures(
    expected: Counter[bytes], dead: list[tuple[bytes, str, int]], record: Path
) -> dict[str, int]:
    got = Counter(body for body, _, _ in dead)
    handled_poison = {i for what, _, i, _ in records(record) if i.startswith("poison-")}
    return {
        "poison_sent": sum(expected.values()),
        "poison_dead": sum(min(n, got[body]) for body, n in expected.items()),
        "poison_handled": len(handled_poison),
    }


def _ready(health: str) -> bool:
    try:
        with urllib.request.urlopen(f"{health}/readyz", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


async def _probe_consumers(transport: Transport, ledger: Ledger, record: Path) -> set[int]:
    """Which processes handle 4 slow events now: each replica has 2 slots, so a replica
    that still consumes must take some of them while the other is busy."""
    probes = {await _publish_good(transport, ledger, sleep_s=PROBE_S) for _ in range(4)}
    deadline = time.monotonic() + 4 * PROBE_S + 5
    by: dict[str, int] = {}
    while time.monotonic() < deadline:
        by = {i: pid for what, pid, i, _ in records(record) if what == "done" and i in probes}
        if len(by) == len(probes):
            break
        await asyncio.sleep(0.1)
    ledger.events.handled = handled(record)
    return set(by.values())
