"""``ctx.once``: a side effect done once per message despite redelivery.

A message is delivered at least once: a consumer that dies mid-handler, a retry, a dead
letter replayed, each runs the handler again with the same message id. ``ctx.once(name,
side_effect)`` runs ``side_effect(key)`` only if no earlier run of this message finished
it, and records that it did (the marker) only after it returned. The key is
``<channel>/<message id>/<name>``; a later run gets the first run's result back.

Where the marker lives: on a Valkey bus, on the bus (every replica, every restart); on NSQ
and the memory bus in this process only (a redelivery to the same process, such as a
retry, is covered; one to another process or after a restart is not).

The window no marker can close: the side effect finished but the process died (or the bus
went away) before the marker was written. The next run does it again. Hand ``key`` to the
side effect (an idempotency key of the payment API, a unique constraint in the database)
and that second run is harmless too.

Why a call with the side effect as an argument and not ``async with ctx.once(name) as
first: if first: ...``: a context manager cannot skip its body, so forgetting the ``if``
would charge the card on every delivery, and the first run's result (a charge id the
handler goes on with) would be lost to the later ones.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgpack  # type: ignore[import-untyped, unused-ignore]

from .transport import Transport

log = logging.getLogger("kubefuncs.once")

DEDUPE_WINDOW_S = 3600.0  # Client.publish(dedupe_key=...)'s default window
ONCE_TTL_S = 7 * 86_400.0  # how long a marker is kept (redeliveries, replayed dead letters)
DONE_WITHOUT_RESULT = b"\xc1"  # never valid msgpack: the result could not be kept


def once_key(channel: str, message_id: str, name: str) -> str:
    return f"{channel}/{message_id}/{name}"


async def once(
    transport: Transport,
    key: str,
    side_effect: Callable[[str], Awaitable[Any] | Any],
    ttl_s: float = ONCE_TTL_S,
) -> Any:
    """``side_effect(key)``'s result, run only if ``key`` has no marker; the marker, with
    the result, is written after it returned (an exception writes none: the next run
    tries again). A result msgpack cannot carry is returned but replays as None."""
    if not isinstance(key, str) or not key:
        raise ValueError("once needs a non-empty key")
    if ttl_s <= 0:
        raise ValueError(f"once's ttl_s must be > 0, got {ttl_s!r}")
    done = await transport.recall(key)
    if done is not None:
        return _result(done, key)
    result = side_effect(key)
    if inspect.isawaitable(result):
        result = await result
    await transport.remember(key, _packed(result, key), ttl_s)
    return result


def _packed(result: Any, key: str) -> bytes:
    try:
        packed: bytes = msgpack.packb(result, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as e:
        log.warning("once %s: its result cannot be kept (%s); a replay returns None", key, e)
        return DONE_WITHOUT_RESULT
    return packed


def _result(done: bytes, key: str) -> Any:
    if done == DONE_WITHOUT_RESULT:
        return None
    try:
        return msgpack.unpackb(done, raw=False)
    except (ValueError, TypeError) as e:  # written by something else: done, result unknown
        log.warning("once %s: unreadable result (%s); treated as done, returning None", key, e)
        return None
