"""The bus SIGKILLed and started again under load (~100 requests/s through the gateway,
~25 events/s published straight to the bus), with and without persistence.

Given a gateway and a function, each a process of its own, on a bus of the scenario's own,
when the bus is killed and comes back 1 s later, then every HTTP request is answered (with
its own body, or a 503/504 with a reason; none hangs), requests are answered again within
a few seconds and stay answered, and every event the bus took is handled or dead-lettered.
A bus that keeps nothing (Valkey restarted empty, nsqd's memory queues) loses what it held
when it died, by definition: those events are counted apart (``lost_with_memory``); an
event the bus took after the restart must never be lost.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from kubefuncs.transport import from_url

from tests.faults.ledger import Ledger
from tests.faults.load import settle, start_load
from tests.faults.stack import FaultBus, function, gateway, stop_all, tracebacks

pytestmark = [pytest.mark.real, pytest.mark.slow]

RECOVERY_S = 8.0  # after the bus is back, requests are answered again within this
SCENARIO = {
    "valkey": "bus restart, AOF",
    "valkey-empty": "bus restart, empty",
    "nsq": "bus restart, memory queues",
}


@pytest.mark.parametrize("kind", ["valkey", "valkey-empty", "nsq"])
async def test_a_bus_restart_under_load_loses_nothing_it_promised_to_keep(
    kind: str, tmp_path: Path
) -> None:
    bus = FaultBus(kind)
    record = tmp_path / "handled.log"
    gw, base = gateway(bus, tmp_path)
    fn, _ = function(bus, record)
    ledger = Ledger(SCENARIO[kind], kind)
    transport = from_url(bus.url)
    try:
        fn.wait_http(f"{base}/f/warm-up", expect=b"sha256")
        await transport.connect()
        stop, load = start_load(base, ledger, transport)
        await asyncio.sleep(2.0)
        # When the bus is SIGKILLed and is back 1 s later
        await asyncio.to_thread(bus.kill)
        await asyncio.sleep(1.0)
        await asyncio.to_thread(bus.start)
        back_at = time.monotonic()
        ledger.crash_at = bus.crash_at
        await _until_answered_again(ledger, back_at)
        await asyncio.sleep(3.0)  # and some more traffic once it is answered again
        stop.set()
        await asyncio.gather(*load)
        await settle(ledger, record, bus, transport)
        alive = gw.proc.poll() is None and fn.proc.poll() is None
    finally:
        await transport.close()
        complaints = stop_all([fn, gw])
        bus.close()
    # Then
    ledger.check(recovery_within_s=RECOVERY_S)
    assert ledger.requests.outcomes["error"] > 0, ledger.summary()  # the outage was hit
    assert ledger.recovery_s is not None
    steady_from = back_at + ledger.recovery_s + 2.0
    assert ledger.requests.failed_after(steady_from) == 0, (ledger.summary(), ledger.requests)
    assert alive and not complaints, complaints
    assert not tracebacks([fn, gw])


async def _until_answered_again(ledger: Ledger, back_at: float) -> None:
    deadline = back_at + RECOVERY_S + 1
    while time.monotonic() < deadline:
        ledger.recovery_s = ledger.requests.recovery_s(back_at)
        if ledger.recovery_s is not None:
            return
        await asyncio.sleep(0.1)
