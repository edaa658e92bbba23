"""A Valkey Cluster master SIGKILLed under load, its replica promoted (~100 requests/s
through the gateway, ~25 events/s published straight to the bus).

Given a gateway and a function, each a process of its own, on a 3-master, 3-replica Valkey
Cluster of the scenario's own, when the master that serves the topic's slot (or the one
that holds the gateway's reply inbox) is killed and its replica takes over, then every
HTTP request is answered (with its own body, or a 503/504 with a reason; none hangs),
requests are answered again within a few seconds, no process crashes or restarts, both
are ready again, and every event the bus took is handled or dead-lettered (published =
handled + dead-lettered: the replica has what the master acknowledged).
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

RECOVERY_S = 8.0  # after the replica took over, requests are answered again within this


@pytest.mark.parametrize("shard", ["topic", "inbox"])
async def test_a_cluster_failover_under_load_loses_nothing(shard: str, tmp_path: Path) -> None:
    bus = FaultBus("cluster")
    record = tmp_path / "handled.log"
    gw, base = gateway(bus, tmp_path)
    fn, health = function(bus, record)
    ledger = Ledger(f"cluster failover, {shard} shard", "cluster")
    transport = from_url(bus.url)
    try:
        fn.wait_http(f"{base}/f/warm-up", expect=b"sha256")
        await transport.connect()
        stop, load = start_load(base, ledger, transport)
        await asyncio.sleep(1.0)
        if shard == "inbox":  # the master of the gateway's reply inbox instead
            bus.victim = await asyncio.to_thread(bus.inbox_master)
            topic_master = await asyncio.to_thread(bus.topic_master)
            ledger.extra["same_shard"] = bus.victim == topic_master
        # When the master of the topic's slot is SIGKILLed and its replica takes over
        killed_at = time.monotonic()
        await asyncio.to_thread(bus.kill)
        promoted_at = time.monotonic()
        ledger.extra["failover_s"] = round(promoted_at - killed_at, 2)
        await _until_answered_again(ledger, promoted_at)
        await asyncio.to_thread(bus.start)  # the old master comes back, as a replica
        await asyncio.sleep(1.5)  # and some more traffic once it is answered again
        stop.set()
        await asyncio.gather(*load)
        await settle(ledger, record, bus, transport)
        alive = gw.proc.poll() is None and fn.proc.poll() is None
        if alive:  # ready again (it was not while its shard was away)
            await asyncio.to_thread(fn.wait_http, f"{health}/readyz", timeout_s=10)
            await asyncio.to_thread(gw.wait_http, f"{base}/readyz", timeout_s=10)
    finally:
        await transport.close()
        complaints = stop_all([fn, gw])
        bus.close()
    # Then
    ledger.check(recovery_within_s=RECOVERY_S)
    assert ledger.recovery_s is not None
    steady_from = promoted_at + ledger.recovery_s + 2.0
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
