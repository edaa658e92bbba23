"""Batch handlers: ``@function("events", batch=100, batch_wait_s=0.01)``.

A batch handler is ``handler(payloads)`` or ``handler(payloads, ctxs)``, sync or async: a
list of up to ``batch`` payloads and a :class:`Context` per message, in delivery order.

* **Forming a batch.** Deliveries join the open batch as the bus hands them over; it goes
  to the handler when it holds ``batch`` messages, or ``batch_wait_s`` after its first one
  joined. Before that, each message is admitted on its own as in the per-message path: a
  malformed one is dead-lettered, one past its deadline is acked and skipped, a kind a
  function does not serve is failed; the handler never sees them. ``KF_CONCURRENCY``
  counts batches handled at once (``concurrency x batch`` messages in flight).
* **Results.** The handler returns a list (or tuple) as long as ``payloads``: each item is
  that message's result (its reply when a caller waits), or an exception *instance* that
  fails that message alone (retried, error-replied or dead-lettered as if a per-message
  handler had raised it). A handler that raises, runs out of time (``KF_TIMEOUT_S`` covers
  the whole call) or returns anything else fails every message of the batch, each by its
  own attempt count.
* **Settling.** A message is acked only after the call returned and its reply is on the
  bus; the batch's messages settle concurrently (on Valkey their acks and replies go as one
  command).
* **Middleware** wraps each batch call, not each message: ``mw(call_next, payloads, ctxs)``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import wire
from .errors import TransportError
from .function import Context
from .transport import Delivery

if TYPE_CHECKING:
    from .runtime import Runtime

log = logging.getLogger("kubefuncs.runtime")

Admitted = list[tuple[wire.Envelope, Delivery]]


class Batcher:
    """Gathers deliveries into batches of at most ``size``; a batch is dispatched when
    full or ``wait_s`` after its first delivery joined, whichever comes first."""

    def __init__(self, size: int, wait_s: float, dispatch: Callable[[list[Delivery]], None]):
        self.size = size
        self.wait_s = wait_s
        self._dispatch = dispatch
        self._open: list[Delivery] = []
        self._timer: asyncio.TimerHandle | None = None

    def add(self, delivery: Delivery) -> None:
        self._open.append(delivery)
        if len(self._open) >= self.size:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.wait_s, self.flush)

    def flush(self) -> None:
        """Dispatch the open batch now (when full, when its wait is over, at shutdown)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._open:
            batch, self._open = self._open, []
            self._dispatch(batch)


async def handle_batch(rt: Runtime, deliveries: list[Delivery]) -> None:
    """Admit, run, reply and settle one batch. Never raises (but for cancellation)."""
    admitted: Admitted = []
    for delivery in deliveries:
        try:
            env = await rt._admit(delivery)
        except TransportError as e:
            log.warning("could not settle a message: %s", e)
        except Exception as e:
            await rt._runtime_error(delivery, e)
        else:
            if env is not None:
                admitted.append((env, delivery))
    if admitted:
        await _run(rt, admitted)


async def _run(rt: Runtime, admitted: Admitted) -> None:
    started = time.perf_counter()
    try:
        results = await _invoke(rt, admitted)
    except asyncio.CancelledError:  # shutting down past the grace period: hand them back
        await asyncio.gather(*(d.retry(0) for _, d in admitted), return_exceptions=True)
        raise
    except Exception as e:
        rt.metrics.took(time.perf_counter() - started)
        await asyncio.gather(*(_guarded(rt, env, d, e) for env, d in admitted))
        return
    rt.metrics.took(time.perf_counter() - started)
    plain: list[Delivery] = []  # done, nobody waits for a reply: acked in one go
    rest: list[Any] = []
    for (env, d), result in zip(admitted, results, strict=True):
        if env.reply_to or isinstance(result, Exception):
            rest.append(_guarded(rt, env, d, result))
        else:
            plain.append(d)
    if plain and not rest:
        await _ack(rt, plain)
        return
    if plain:
        rest.append(_ack(rt, plain))
    await asyncio.gather(*rest)


async def _ack(rt: Runtime, deliveries: list[Delivery]) -> None:
    try:
        await rt.transport.ack_many(deliveries)
    except TransportError as e:  # could not settle: the bus redelivers them later
        log.warning("could not settle %d message(s): %s", len(deliveries), e)
        return
    for _ in deliveries:
        rt.metrics.handled("ok")


async def _invoke(rt: Runtime, admitted: Admitted) -> list[Any]:
    payloads = [env.payload for env, _ in admitted]
    held = [d for _, d in admitted]
    handler = rt._handler
    if rt._chain is not None:
        call = rt._chain(payloads, [_context(rt, env, d) for env, d in admitted])  # type: ignore[arg-type]
    else:  # contexts only for a handler that takes them (a logger adapter each)
        ctxs = [_context(rt, env, d) for env, d in admitted] if rt._wants_context else []
        args = (payloads, ctxs) if rt._wants_context else (payloads,)
        call = handler(*args) if rt._is_async else asyncio.to_thread(handler, *args)
    results = await rt._limited(call, held)
    if not isinstance(results, list | tuple) or len(results) != len(payloads):
        got = f"{len(results)} items" if isinstance(results, list | tuple) else repr(results)
        raise TypeError(
            f"batch handler {rt.fn.name} must return a list of {len(payloads)} results "
            f"(one per payload, an exception instance to fail one), got {got[:80]}"
        )
    return list(results)


def _context(rt: Runtime, env: wire.Envelope, delivery: Delivery) -> Context:
    adapter = logging.LoggerAdapter(log, rt._extra(env, delivery))
    return Context(env, delivery.attempt, adapter, rt.client, state=rt.state)


async def _guarded(rt: Runtime, env: wire.Envelope, delivery: Delivery, outcome: Any) -> None:
    """Settle one message of a batch by its outcome: a result, or the error that failed it."""
    try:
        if isinstance(outcome, Exception):
            await rt._failed(delivery, env, outcome)
        else:
            await rt._settle(env, delivery, outcome)
    except TransportError as e:  # could not settle: the bus redelivers it later
        log.warning("could not settle a message: %s", e)
    except Exception as e:
        await rt._runtime_error(delivery, e)
