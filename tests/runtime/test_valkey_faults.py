"""Faults a deployed function rides out on real Valkey (``python -m kubefuncs`` processes):
the server restarted empty, stream entries nobody should have written, a reply address that
holds a key of another type. Each was a loop that stopped or a retry that never ended."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from kubefuncs import Client, wire
from redis.asyncio import Redis

from tests.procs import Proc
from tests.runtime.test_process import FAST, lines, ready, start_fn, status, wait_for
from tests.servers import ServerProcess

pytestmark = pytest.mark.real


def _url(server: ServerProcess) -> str:
    return f"valkey://127.0.0.1:{server.port}/0?prefix=kf&{FAST}"


async def _call_until_answered(url: str, payload: Any, within_s: float) -> float:
    """Seconds until a call is answered (calls of 1 s each, again and again)."""
    started = time.monotonic()
    async with Client(url) as c:
        while time.monotonic() - started < within_s:
            try:
                await c.call("rt-record", payload, timeout_s=1)
                return time.monotonic() - started
            except Exception:  # CallTimeout, or the bus still away
                await asyncio.sleep(0.1)
    raise AssertionError(f"no answer within {within_s}s")


async def test_a_function_consumes_again_after_valkey_restarts_empty(
    cache_valkey: ServerProcess, tmp_path: Path, procs: list[Proc]
) -> None:
    # Given a function on a Valkey without persistence, answering calls
    url = _url(cache_valkey)
    proc, port = start_fn(url, tmp_path / "r")
    procs.append(proc)
    ready(proc, port)
    await _call_until_answered(url, {"id": 1}, 10)
    # When the server is killed and comes back empty (groups and streams gone), twice,
    # with the function's backoff given time to grow past the reclaim interval
    for n in (2, 3):
        cache_valkey.restart(down_s=2.0)
        # Then calls are answered again within seconds, and the process stays up
        took = await _call_until_answered(url, {"id": n}, 15)
        assert took < 15, proc.output()
    assert proc.proc.poll() is None
    assert status(port, "/readyz") == 200


async def test_a_bad_attempt_field_is_dead_lettered_and_both_replicas_go_on(
    valkey_url: str, tmp_path: Path, procs: list[Proc]
) -> None:
    # Given two replicas of a function on one channel
    url = f"{valkey_url}&{FAST}"
    record = tmp_path / "r"
    for _ in range(2):
        proc, port = start_fn(url, record)
        procs.append(proc)
        ready(proc, port)
    prefix = url.split("prefix=")[1].split("&")[0]
    stream, dead = f"{prefix}:topic:rt-record", f"{prefix}:dead:rt-record:record"
    good = wire.encode(wire.make("rt-record", {"id": 0}))
    async with Redis(port=int(url.split(":")[2].split("/")[0])) as r:
        # When entries nobody should have written arrive: attempts that are not integers,
        # no body at all, then 10 good events
        for fields in ({"m": good, "a": "x"}, {"m": good, "a": "-1"}, {"a": "1"}):
            await r.xadd(stream, fields)  # type: ignore[arg-type]
        async with Client(url) as c:
            for i in range(1, 11):
                await c.publish("rt-record", {"id": i})
        # Then the 10 are handled, the 3 dead-lettered with the reason, both still ready
        await wait_for(lambda: len({m for _, m, _ in lines(record, "done")}) == 10)
        reasons = [f[b"reason"].decode() for _, f in await r.xrange(dead)]
    assert sorted(reasons) == sorted(
        [
            "malformed: entry: attempt field 'x' is not an integer of at most 9 digits",
            "malformed: entry: attempt field '-1' is not an integer of at most 9 digits",
            "malformed: entry: entry has no m field",
        ]
    )
    assert 0 not in {m for _, m, _ in lines(record, "done")}
    assert all(p.proc.poll() is None for p in procs)


async def test_a_reply_address_of_another_type_is_dead_lettered_once(
    valkey_url: str, tmp_path: Path, procs: list[Proc]
) -> None:
    # Given a function, and an inbox name that holds a string
    url = f"{valkey_url}&{FAST}"
    record = tmp_path / "r"
    proc, port = start_fn(url, record)
    procs.append(proc)
    ready(proc, port)
    prefix = url.split("prefix=")[1].split("&")[0]
    bogus = f"{prefix}:reply:not-a-list"
    async with Redis(port=int(url.split(":")[2].split("/")[0])) as r, Client(url) as c:
        await r.set(bogus, "a string")
        # When a request names it as its reply address, among calls answered as usual
        env = wire.make("rt-record", {"id": 1}, reply_to=bogus)
        await c.transport.publish("rt-record", wire.encode(env))
        answers = await asyncio.gather(*(c.call("rt-record", {"id": i}) for i in range(2, 12)))
        # Then the others are answered, and that one is dead-lettered, run once only
        assert [a["id"] for a in answers] == list(range(2, 12))
        dead = f"{prefix}:dead:rt-record:record"
        await wait_for(lambda: True)
        deadline = time.monotonic() + 10
        while not await r.xlen(dead) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        [(_, fields)] = await r.xrange(dead)
        await asyncio.sleep(1.5)  # a retry would have run it again by now
    assert fields[b"reason"].startswith(b"Undeliverable: reply address"), fields
    assert [a for _, m, a in lines(record, "start") if m == 1] == [1]


async def test_dead_letters_written_by_anyone_still_list(valkey_url: str) -> None:
    # Given a dead stream with an entry whose attempt field is not a number
    async with Client(valkey_url) as c:
        bus = c.transport
        prefix = valkey_url.split("prefix=")[1].split("&")[0]
        async with Redis(port=int(valkey_url.split(":")[2].split("/")[0])) as r:
            await r.xadd(f"{prefix}:dead:t:ch", {"m": b"x", "a": "many", "reason": "r"})
        # When the dead letters are listed, Then the entry is there with attempt 0
        [dead] = await bus.dead_letters("t", "ch")
    assert (dead.body, dead.attempt, dead.reason) == (b"x", 0, "r")
