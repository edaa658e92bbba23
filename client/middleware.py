"""Per-message middleware: ordered wrappers around a function's handler.

A middleware is ``async def mw(call_next, payload, ctx)``: it may act before (look at or
refuse the message), await ``call_next(payload, ctx)`` for the rest of the chain and the
handler, act after (on the result) and on error (``try``/``except`` around the call). The
first of ``@function(..., middleware=[a, b])`` is the outermost: ``a`` wraps ``b`` wraps the
handler. What a middleware raises counts as the handler's failure (retries, dead letters,
error replies); the per-message time limit covers the whole chain.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .function import Context

Next = Callable[[Any, "Context"], Awaitable[Any]]
Middleware = Callable[[Next, Any, "Context"], Awaitable[Any]]


def check(middleware: Sequence[Middleware]) -> tuple[Middleware, ...]:
    """The middleware as a tuple; TypeError naming the first that is not an async callable
    of (call_next, payload, ctx)."""
    for mw in middleware:
        name = getattr(mw, "__name__", repr(mw))
        method = getattr(mw, "__call__", None)  # noqa: B004 (a class instance, as well)
        if not (inspect.iscoroutinefunction(mw) or inspect.iscoroutinefunction(method)):
            raise TypeError(
                f"middleware {name} must be an async function (call_next, payload, ctx)"
            )
        if len(inspect.signature(mw).parameters) != 3:
            raise TypeError(f"middleware {name} must take (call_next, payload, ctx)")
    return tuple(middleware)


def chain(middleware: Sequence[Middleware], handler: Next) -> Next:
    """``handler`` wrapped by ``middleware``, the first outermost."""
    call = handler
    for mw in reversed(middleware):
        call = functools.partial(mw, call)
    return call
