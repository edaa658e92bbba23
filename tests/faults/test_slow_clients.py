"""Slow clients while the gateway serves load: connections that stop in their headers, that
drip their headers a byte at a time, or that stop in their body.

Given a gateway (header and body time-outs of 1 s) and a function, each a process of its
own, under ~100 requests/s and ~25 events/s, when 150 slow connections are opened at once,
then every normal request is still answered with its own body, every event is handled,
and every slow connection is closed within its time-out (plus slack): a stalled body with
a 408 and a reason.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from kubefuncs.transport import from_url

from tests.faults.ledger import Ledger
from tests.faults.load import settle, start_load
from tests.faults.stack import ROUTE, FaultBus, function, gateway, stop_all, tracebacks

pytestmark = [pytest.mark.real, pytest.mark.slow]

TIMEOUT_S = 1.0
CLOSED_WITHIN_S = 6.0  # the time-out, plus slack for a loaded 2-core machine
SLOW = {
    "headers": 60,  # the request line and one header, then nothing
    "drip": 30,  # a header byte every 0.2 s, never the end of the headers
    "body": 60,  # Content-Length 1000, 7 bytes of it, then nothing
}


async def _slow(kind: str, host: str, port: int) -> tuple[str, float, bytes]:
    """One slow client: (kind, seconds until the server closed, what it answered)."""
    reader, writer = await asyncio.open_connection(host, port)
    opened = time.monotonic()
    head = f"POST {ROUTE}slow HTTP/1.1\r\nHost: x\r\n".encode()
    if kind == "body":
        writer.write(head + b"Content-Length: 1000\r\n\r\npartial")
    elif kind == "headers":
        writer.write(head + b"X-Slow: 1")
    got = b""
    try:
        async with asyncio.timeout(CLOSED_WITHIN_S * 2):
            if kind == "drip":
                got = await _drip(reader, writer, head + b"X-Slow: " + b"a" * 1000)
            else:
                await writer.drain()
                got = await reader.read()
    except TimeoutError:
        return kind, float("inf"), got
    except OSError:  # reset while writing: closed by the server
        pass
    finally:
        writer.close()
    return kind, time.monotonic() - opened, got


async def _drip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes) -> bytes:
    for byte in data:
        writer.write(bytes([byte]))
        await writer.drain()
        try:
            return await asyncio.wait_for(reader.read(), 0.2)  # b"" once closed
        except TimeoutError:
            continue
    return b"not closed"


async def test_slow_clients_are_closed_while_the_load_is_served(tmp_path: Path) -> None:
    bus = FaultBus("valkey")
    record = tmp_path / "handled.log"
    timeouts = {
        "KF_GATEWAY_HEADER_TIMEOUT_S": str(TIMEOUT_S),
        "KF_GATEWAY_BODY_TIMEOUT_S": str(TIMEOUT_S),
    }
    gw, base = gateway(bus, tmp_path, env=timeouts)
    fn, _ = function(bus, record)
    ledger = Ledger("slow clients under load", "valkey")
    transport = from_url(bus.url)
    host, port = base.removeprefix("http://").split(":")
    try:
        fn.wait_http(f"{base}/f/warm-up", expect=b"sha256")
        await transport.connect()
        stop, load = start_load(base, ledger, transport)
        await asyncio.sleep(1.0)
        # When the slow clients come, all at once, while the load goes on
        slow = await asyncio.gather(
            *(_slow(kind, host, int(port)) for kind, n in SLOW.items() for _ in range(n))
        )
        await asyncio.sleep(1.0)
        stop.set()
        await asyncio.gather(*load)
        await settle(ledger, record, bus, transport)
        alive = gw.proc.poll() is None and fn.proc.poll() is None
    finally:
        await transport.close()
        complaints = stop_all([fn, gw])
        bus.close()
    closed = [s for _, s, _ in slow if s <= CLOSED_WITHIN_S]
    answered_408 = [got for kind, _, got in slow if kind == "body" and b" 408 " in got[:20]]
    ledger.extra = {
        "slow_connections": len(slow),
        "slow_closed": len(closed),
        "slow_408": len(answered_408),
        "slow_closed_max_s": round(max(s for _, s, _ in slow), 2),
    }
    # Then
    ledger.check()
    assert ledger.requests.outcomes["error"] == 0, ledger.summary()  # nothing refused
    assert len(closed) == len(slow), ledger.summary()
    assert len(answered_408) == SLOW["body"], [got[:80] for _, _, got in slow][:5]
    assert all(b"body_timeout" in got for got in answered_408)
    assert alive and not complaints, complaints
    assert not tracebacks([fn, gw])
