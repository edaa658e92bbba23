"""The Valkey transport's automatic pipelining, against a recording stand-in for redis-py:
which commands go out for which concurrent callers, and what each caller gets back."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from kubefuncs.errors import TransportError
from kubefuncs.transport._coalesce import MAX_MERGED, Coalescer
from kubefuncs.transport.valkey import ValkeyTransport
from redis.exceptions import ConnectionError as RedisConnectionError


class Recorder:
    """Answers every command with its own arguments; records round trips."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.round_trips: list[list[tuple[Any, ...]]] = []
        self.fail = fail

    async def execute_command(self, *args: Any) -> Any:
        return (await self._trip([args]))[0]

    def pipeline(self, transaction: bool = False) -> Pipe:
        return Pipe(self)

    async def _trip(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        self.round_trips.append(commands)
        await asyncio.sleep(0)
        if self.fail is not None:
            raise self.fail
        return [("ok", *c) for c in commands]


class Pipe:
    def __init__(self, owner: Recorder) -> None:
        self.owner, self.commands = owner, []

    def execute_command(self, *args: Any) -> None:
        self.commands.append(args)

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        return await self.owner._trip(self.commands)


HEAD = ("EVAL", "script", 1, "stream")
SINGLE = ("XADD", "stream", "*", "m")


async def test_items_of_one_loop_turn_go_as_one_command() -> None:
    redis = Recorder()
    c = Coalescer(redis)  # type: ignore[arg-type]
    results = await asyncio.gather(*(c.merged(HEAD, b"%d" % i, single=SINGLE) for i in range(5)))
    assert redis.round_trips == [[(*HEAD, b"0", b"1", b"2", b"3", b"4")]]
    assert results == [("ok", *HEAD, b"0", b"1", b"2", b"3", b"4")] * 5


async def test_a_lone_item_goes_in_its_single_form() -> None:
    redis = Recorder()
    c = Coalescer(redis)  # type: ignore[arg-type]
    assert await c.merged(HEAD, b"only", single=SINGLE) == ("ok", *SINGLE, b"only")
    assert await c.merged(HEAD, b"no single form") == ("ok", *HEAD, b"no single form")


async def test_different_heads_share_a_round_trip_as_separate_commands() -> None:
    redis = Recorder()
    c = Coalescer(redis)  # type: ignore[arg-type]
    other = ("EVAL", "script", 1, "other")
    await asyncio.gather(c.merged(HEAD, b"a"), c.merged(other, b"b"), c.merged(HEAD, b"c"))
    assert redis.round_trips == [[(*HEAD, b"a", b"c"), (*other, b"b")]]


async def test_a_merged_command_holds_at_most_max_merged_items() -> None:
    redis = Recorder()
    c = Coalescer(redis)  # type: ignore[arg-type]
    n = MAX_MERGED * 2 + 1
    await asyncio.gather(*(c.merged(HEAD, i, single=SINGLE) for i in range(n)))
    sizes = [len(cmd) - len(HEAD) for trip in redis.round_trips for cmd in trip]
    assert sizes == [MAX_MERGED, MAX_MERGED, 1]
    assert redis.round_trips[-1][-1] == (*SINGLE, n - 1)  # the one left over goes alone


async def test_items_queued_during_a_round_trip_go_in_the_next_one() -> None:
    redis = Recorder()
    c = Coalescer(redis)  # type: ignore[arg-type]
    first = asyncio.ensure_future(c.merged(HEAD, b"1"))
    while not redis.round_trips:  # until the first round trip is under way
        await asyncio.sleep(0)
    later = [c.merged_soon(HEAD, b"2"), c.merged_soon(HEAD, b"3")]
    await asyncio.gather(first, *later)
    assert redis.round_trips == [[(*HEAD, b"1")], [(*HEAD, b"2", b"3")]]


async def test_a_failed_round_trip_reaches_every_caller_mapped() -> None:
    redis = Recorder(fail=RedisConnectionError("gone"))
    seen: list[Exception] = []

    def failed(e: Exception) -> Exception:
        seen.append(e)
        return TransportError(f"mapped: {e}")

    c = Coalescer(redis, failed=failed)  # type: ignore[arg-type]
    results = await asyncio.gather(*(c.merged(HEAD, i) for i in range(3)), return_exceptions=True)
    assert [str(r) for r in results] == ["mapped: gone"] * 3
    assert len(seen) == 1


async def test_publish_soon_on_an_unreachable_bus_fails_with_transport_error() -> None:
    t = ValkeyTransport("valkey://127.0.0.1:1/0?prefix=x")
    t._known_streams.add(t.keys.topic("t"))  # as after a first publish
    with pytest.raises(TransportError, match="unreachable"):
        await t.publish_soon("t", b"body")
    assert not t.connected
    await t.close()


async def test_a_publish_on_an_idle_connection_goes_straight_out_the_rest_merge() -> None:
    redis = Recorder()
    c = Coalescer(redis)  # type: ignore[arg-type]
    # sequential: each alone, in its single form, without waiting for the loop turn's end
    assert await c.merged_or_now(HEAD, b"a", SINGLE) == ("ok", *SINGLE, b"a")
    # concurrent: the first goes out at once, the others merge into the next round trip
    await asyncio.gather(*(c.merged_or_now(HEAD, b, SINGLE) for b in (b"1", b"2", b"3")))
    assert redis.round_trips[1:] == [[(*SINGLE, b"1")], [(*HEAD, b"2", b"3")]]
