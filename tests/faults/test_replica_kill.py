"""A function replica SIGKILLed while it holds messages (two replicas, a slow handler).

Given two replicas of a function whose handler takes 0.5 s, and a visibility time-out of
2 s (Valkey ``?visibility_timeout_s=2``, NSQ ``?msg_timeout_s=2``), when one replica is
SIGKILLed in the middle of its messages, then the other takes them over once the
visibility time-out has passed (attempt 2 or more) and every event is handled or
dead-lettered: none is lost.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from kubefuncs.transport import from_url

from tests.faults.ledger import Ledger
from tests.faults.load import publish_one, records, settle
from tests.faults.stack import FaultBus, function, stop_all

pytestmark = [pytest.mark.real, pytest.mark.slow]

EVENTS = 40
HANDLER_S = 0.5
VISIBILITY_S = 2.0


def in_flight(record: Path, pid: int) -> set[str]:
    """Ids ``pid`` started and has not finished."""
    notes = [(what, event_id) for what, p, event_id, _ in records(record) if p == pid]
    return {i for what, i in notes if what == "start"} - {i for what, i in notes if what == "done"}


def finished_elsewhere(record: Path, ids: set[str], pid: int) -> dict[str, int]:
    """Of ``ids``, those another process finished, with the attempt it saw."""
    return {
        event_id: attempt
        for what, p, event_id, attempt in records(record)
        if what == "done" and p != pid and event_id in ids
    }


@pytest.mark.parametrize("kind", ["valkey", "nsq"])
async def test_a_replica_killed_mid_message_loses_nothing(kind: str, tmp_path: Path) -> None:
    bus = FaultBus(kind, visibility_timeout_s=VISIBILITY_S)
    record = tmp_path / "handled.log"
    (victim, victim_health), (other, other_health) = (
        function(bus, record, KF_CONCURRENCY="4") for _ in range(2)
    )
    ledger = Ledger("replica SIGKILLed mid-message", kind)
    transport = from_url(bus.url)
    try:
        victim.wait_http(f"{victim_health}/readyz")
        other.wait_http(f"{other_health}/readyz")
        await transport.connect()
        for _ in range(EVENTS):
            await publish_one(transport, ledger.events, sleep_s=HANDLER_S)
        # When the victim is SIGKILLed while it holds some of them
        await _held_by(record, victim.proc.pid)
        victim.kill()
        killed_at = time.monotonic()
        held = in_flight(record, victim.proc.pid)  # its notes are final now
        # Then the other replica takes them over
        taken = await _taken_over(record, held, victim.proc.pid)
        ledger.recovery_s = time.monotonic() - killed_at
        await settle(ledger, record, bus, transport)
        other_alive = other.proc.poll() is None
    finally:
        await transport.close()
        complaints = stop_all([other])
        victim.stop()
        bus.close()
    ledger.check()
    assert held and set(taken) == held, (held, taken, ledger.summary())
    assert all(attempt >= 2 for attempt in taken.values()), taken  # a redelivery, counted
    assert ledger.recovery_s >= VISIBILITY_S * 0.9, ledger.recovery_s  # not before its time
    assert other_alive and not complaints, complaints


async def _held_by(record: Path, pid: int) -> None:
    async with asyncio.timeout(15):
        while not in_flight(record, pid):
            await asyncio.sleep(0.02)


async def _taken_over(record: Path, held: set[str], pid: int) -> dict[str, int]:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        taken = finished_elsewhere(record, held, pid)
        if set(taken) == held:
            return taken
        await asyncio.sleep(0.1)
    return finished_elsewhere(record, held, pid)
