"""A function's lifespan in the runtime: startup before the first message, shutdown after
the drain, each within its time-out (see ``@function(lifespan=...)``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping

from .errors import LifespanFailed
from .function import Lifespan, Service, lifespan_context

log = logging.getLogger("kubefuncs.runtime")


async def start(
    lifespan: Lifespan, service: Service, stack: contextlib.AsyncExitStack, timeout_s: float
) -> None:
    """Enter ``lifespan`` (its startup) within ``timeout_s``; its exit (the shutdown) is
    pushed on ``stack``. A mapping it yields joins ``service.state``."""
    try:
        async with asyncio.timeout(timeout_s):
            given = await stack.enter_async_context(lifespan_context(lifespan, service))
    except TimeoutError as e:
        raise LifespanFailed(f"startup took longer than {timeout_s:g} s") from e
    except Exception as e:
        log.error("startup failed", exc_info=e, extra={"function": service.name})
        raise LifespanFailed(f"startup failed: {e!r}") from e
    if isinstance(given, Mapping):
        service.state.update(given)


async def stop(
    stack: contextlib.AsyncExitStack, timeout_s: float, name: str
) -> LifespanFailed | None:
    """Run the shutdown (``stack``'s exits) within ``timeout_s``; what went wrong, if
    anything, for the runtime to raise once it closed the bus."""
    try:
        async with asyncio.timeout(timeout_s):
            await stack.aclose()
    except TimeoutError:
        log.error("shutdown took longer than %g s; left unfinished", timeout_s)
        return LifespanFailed(f"shutdown took longer than {timeout_s:g} s")
    except Exception as e:
        log.error("shutdown failed", exc_info=e, extra={"function": name})
        return LifespanFailed(f"shutdown failed: {e!r}")
    return None
