"""Traffic for the fault scenarios, and what the function and the bus say became of it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
from kubefuncs import wire
from kubefuncs.transport import Transport
from redis.asyncio import Redis

from tests.faults.fns import answer_for
from tests.faults.ledger import Events, Ledger, Requests
from tests.faults.stack import CHANNEL, ROUTE, TOPIC, FaultBus

CLIENT_TIMEOUT_S = 8.0  # well past the route's time-out: a request this slow counts as hung


async def _one_request(http: aiohttp.ClientSession, base: str, n: int, log: Requests) -> None:
    path = f"{ROUTE}{n}"
    body = wire.new_id().encode()
    sent = time.monotonic()
    try:
        async with http.post(base + path, data=body) as r:
            raw = await r.read()
            status = r.status
    except (aiohttp.ClientError, TimeoutError) as e:
        log.note("lost", sent, detail=f"{path}: {type(e).__name__} {e}")
        return
    log.note(_outcome(status, raw, path, body), sent, status, f"{status} {raw[:200]!r}")


def _outcome(status: int, raw: bytes, path: str, body: bytes) -> str:
    try:
        seen = json.loads(raw)
    except ValueError:
        seen = None
    if status == 200:
        return "ok" if seen == answer_for(path, body) else "wrong"
    explained = isinstance(seen, dict) and bool(seen.get("error")) and 400 <= status <= 599
    return "error" if explained else "unexplained"


async def http_load(
    base: str, log: Requests, stop: asyncio.Event, *, workers: int = 14, pause_s: float = 0.06
) -> None:
    """``workers`` callers, each sending a POST, waiting for it, pausing ``pause_s``."""
    timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_S)
    counter = iter(range(10**9))
    async with aiohttp.ClientSession(
        timeout=timeout, connector=aiohttp.TCPConnector(limit=0)
    ) as http:

        async def caller() -> None:
            while not stop.is_set():
                await _one_request(http, base, next(counter), log)
                await asyncio.sleep(pause_s)

        await asyncio.gather(*(caller() for _ in range(workers)))


def event_body(event_id: str, sleep_s: float = 0.0) -> bytes:
    return wire.encode(wire.make(TOPIC, {"id": event_id, "sleep_s": sleep_s}))


async def publish_one(transport: Transport, events: Events, sleep_s: float = 0.0) -> None:
    """Publish one event; ``published`` only once the bus took it (a refusal is no loss)."""
    event_id = wire.new_id()
    try:
        async with asyncio.timeout(3):
            await transport.publish(TOPIC, event_body(event_id, sleep_s))
    except Exception:  # the bus is away: the publisher is told, nothing to account for
        events.publish_refused += 1
        return
    events.published[event_id] = time.monotonic()


async def event_load(
    transport: Transport, events: Events, stop: asyncio.Event, *, pause_s: float = 0.04
) -> None:
    while not stop.is_set():
        await publish_one(transport, events)
        await asyncio.sleep(pause_s)


def start_load(
    base: str, ledger: Ledger, transport: Transport
) -> tuple[asyncio.Event, list[asyncio.Task[None]]]:
    """HTTP traffic through the gateway at ``base`` and events straight to the bus, until
    the returned event is set (then await the tasks)."""
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(http_load(base, ledger.requests, stop)),
        asyncio.create_task(event_load(transport, ledger.events, stop)),
    ]
    return stop, tasks


def records(path: Path) -> list[tuple[str, int, str, int]]:
    """The function's notes: (``start``/``done``, pid, event id, attempt)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 4:
            out.append((parts[0], int(parts[1]), parts[2], int(parts[3])))
    return out


def handled(path: Path) -> Counter[str]:
    return Counter(event_id for what, _, event_id, _ in records(path) if what == "done")


async def dead_letters(bus: FaultBus, transport: Transport) -> list[tuple[bytes, str]]:
    """(body, reason) of every dead letter of the ledger channel, read from the bus."""
    if bus.nsq is not None:
        letters = await transport.dead_letters(TOPIC, CHANNEL, limit=10_000)
        return [(d.body, d.reason) for d in letters]
    # straight from the stream: a dead entry need not be one the transport can list
    if bus.cluster is not None:
        call: Any = getattr(transport, "call")  # noqa: B009 (a Valkey transport's)
        entries = await call("XRANGE", bus.key("dead", TOPIC, CHANNEL), "-", "+")
    else:
        async with Redis.from_url(bus.redis_url) as r:
            entries = await r.xrange(bus.key("dead", TOPIC, CHANNEL))
    return [(f.get(b"m", b""), f.get(b"reason", b"").decode(errors="replace")) for _, f in entries]


def event_id_of(body: bytes) -> str | None:
    with contextlib.suppress(Exception):
        payload: Any = wire.decode(body).payload
        if isinstance(payload, dict) and isinstance(payload.get("id"), str):
            return payload["id"]
    return None


async def settle(ledger: Ledger, record: Path, bus: FaultBus, transport: Transport) -> None:
    """Wait until every event is handled, dead or lost with the bus's memory (at most 20 s,
    or 6 s without progress), then fill the ledger in from the function's notes and the
    dead letters."""
    deadline = time.monotonic() + 20
    progress, progress_at = -1, time.monotonic()
    while True:
        ledger.events.handled = handled(record)
        with contextlib.suppress(Exception):
            for body, reason in await dead_letters(bus, transport):
                event_id = event_id_of(body)
                if event_id in ledger.events.published:
                    ledger.events.dead[event_id] = reason
        now = time.monotonic()
        if len(ledger.events.handled) + len(ledger.events.dead) > progress:
            progress = len(ledger.events.handled) + len(ledger.events.dead)
            progress_at = now
        if not ledger.lost_events() or now > deadline or now - progress_at > 6:
            return
        await asyncio.sleep(0.3)
