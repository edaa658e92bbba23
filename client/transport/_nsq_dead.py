"""Dead letters on NSQ, which has no dead-letter queue of its own.

A dead letter is a small msgpack map published to the channel's dead topic
(:func:`~._nsq_config.side_topic` ``kind="dead"``) before the original message is FINished.
nsqd's HTTP API cannot read messages, so listing, replaying and purging consume the dead
topic through the ``kubefuncs`` channel: take up to the channel's depth in flight at once
(so nothing is seen twice), FIN what goes away, REQ the rest, then CLS.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgpack  # type: ignore[import-untyped, unused-ignore]
from nsq import protocol

from ..wire import new_id
from ._nsq_config import DEAD_CHANNEL, Node, NsqConfig
from ._nsq_conn import CLS, NsqdConn
from ._nsq_http import NsqHttp
from .base import DeadLetter

COLLECT_S = 2.0  # how long a pass waits for the messages the stats promised
Decide = Callable[[DeadLetter], Awaitable[bool]]  # True: remove it (FIN), False: keep it (REQ)


def wrap(body: bytes, reason: str, attempt: int, topic: str, channel: str) -> bytes:
    """The dead-letter map: ``{v, id, body, reason, attempt, time, topic, channel}``."""
    return bytes(
        msgpack.packb(
            {
                "v": 1,
                "id": new_id(),
                "body": body,
                "reason": reason,
                "attempt": attempt,
                "time": int(time.time() * 1000),
                "topic": topic,
                "channel": channel,
            },
            use_bin_type=True,
        )
    )


def unwrap(raw: bytes, nsq_id: bytes, timestamp_ns: int) -> DeadLetter:
    """A dead letter from a dead-topic message; something else published there is kept
    as it is, with an empty reason."""
    try:
        data: Any = msgpack.unpackb(raw, raw=False)
    except (ValueError, msgpack.UnpackException):
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("body"), bytes):
        return DeadLetter(f"nsq-{nsq_id.decode()}", raw, "", 0, timestamp_ns // 1_000_000)
    return DeadLetter(
        id=str(data.get("id") or f"nsq-{nsq_id.decode()}"),
        body=data["body"],
        reason=str(data.get("reason", "")),
        attempt=int(data.get("attempt", 0)),
        time_ms=int(data.get("time", timestamp_ns // 1_000_000)),
    )


async def dead_pass(
    config: NsqConfig, node: Node, dead_topic: str, expected: int, decide: Decide
) -> list[DeadLetter]:
    """Take up to ``expected`` dead letters of one nsqd in flight, ask ``decide`` about each,
    and return them all (in the order nsqd gave them)."""
    received: list[Any] = []
    complete = asyncio.Event()

    def on_message(msg: Any) -> None:
        received.append(msg)
        if len(received) >= expected:
            complete.set()

    conn = await NsqdConn(node.tcp, config, on_message=on_message).open(config.dial_timeout_s)
    try:
        await conn.command(protocol.subscribe(dead_topic, DEAD_CHANNEL))
        conn.send(protocol.ready(min(expected, int(conn.raw.max_rdy_count))))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(COLLECT_S):
                await complete.wait()
        conn.send(protocol.ready(0))
        letters = await _settle_all(received, decide)
        await conn.command(CLS, timeout_s=2.0)  # answered after every FIN/REQ above
        for late in received[len(letters) :]:  # sent before RDY 0 reached nsqd
            late.requeue(backoff=False, time_ms=0)
        return letters
    finally:
        conn.close()


async def _settle_all(received: list[Any], decide: Decide) -> list[DeadLetter]:
    letters = []
    pending = list(received)
    try:
        while pending:
            msg = pending[0]
            letter = unwrap(msg.body, msg.id, int(msg.timestamp))
            remove = await decide(letter)
            pending.pop(0)
            msg.finish() if remove else msg.requeue(backoff=False, time_ms=0)
            letters.append(letter)
    finally:
        for msg in pending:  # decide failed: keep the rest as they were
            msg.requeue(backoff=False, time_ms=0)
    return letters


async def dead_passes(
    config: NsqConfig,
    http: NsqHttp,
    nodes: list[Node],
    dead_topic: str,
    decide: Decide,
    *,
    limit: int = 0,
    repeat: bool,
) -> list[DeadLetter]:
    """One :func:`dead_pass` on each nsqd (more while ``repeat`` and letters keep coming);
    ``limit`` > 0 caps how many are taken in all."""
    seen: list[DeadLetter] = []
    for node in nodes:
        while True:
            figures = await http.figures(node, dead_topic, DEAD_CHANNEL)
            waiting = figures.topic_depth + figures.depth
            if limit:
                waiting = min(waiting, limit - len(seen))
            if waiting <= 0:
                break
            letters = await dead_pass(config, node, dead_topic, waiting, decide)
            seen += letters
            if not (repeat and letters):
                break
    return seen
