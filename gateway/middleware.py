"""Per-route middleware of the gateway: ordered wrappers around a routed request.

A middleware is aiohttp's own shape, ``async def mw(request, handler) -> web.StreamResponse``:
it may answer at once (refuse), change the request, ``await handler(request)`` for the rest
of the chain and the call through the bus, and change the response. It runs after the
gateway's own checks (CORS preflight, methods, authentication, rate limits), so
``request[PRINCIPAL]`` is the authenticated :class:`~kubefuncs.gateway.auth.Principal`
(None on open routes). A routes file names them as ``module:function``::

    /orders/: {topic: orders, middleware: [myco.audit:log_order, myco.quota:check]}

the first outermost. An ``aiohttp.web.HTTPException`` a middleware raises is answered as
that status with a JSON reason; any other exception is a 500 ``middleware_error`` with
the traceback logged (a bug in the middleware, not bad input).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web
from kubefuncs.errors import ConfigError

from .auth import Principal

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]
PRINCIPAL: web.RequestKey[Principal | None] = web.RequestKey("kubefuncs_principal")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*")


def parse(value: Any, where: str) -> tuple[Middleware, ...]:
    """A route's ``middleware:``: a list of ``module:function`` names (imported now) or of
    callables (when routes are built in code)."""
    if value is None:
        return ()
    if not isinstance(value, list | tuple):
        raise ConfigError(where, f"must be a list of module:function names, got {value!r}")
    return tuple(_one(item, f"{where}[{i}]") for i, item in enumerate(value))


def _one(item: Any, where: str) -> Middleware:
    mw = _import(item, where) if isinstance(item, str) else item
    name = getattr(mw, "__name__", repr(mw))
    if not inspect.iscoroutinefunction(mw):
        raise ConfigError(where, f"{name} must be an async function (request, handler)")
    if len(inspect.signature(mw).parameters) != 2:
        raise ConfigError(where, f"{name} must take (request, handler)")
    return mw  # type: ignore[no-any-return]


def _import(name: str, where: str) -> Any:
    if not _NAME.fullmatch(name):
        raise ConfigError(where, f"must look like module:function, got {name!r}")
    module_name, attr = name.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(where, f"cannot import module {module_name!r}: {e}") from e
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ConfigError(where, f"module {module_name!r} has no {attr!r}") from None


def chain(middleware: Sequence[Middleware], handler: Handler) -> Handler:
    """``handler`` wrapped by ``middleware``, the first outermost."""
    call = handler
    for mw in reversed(middleware):
        call = functools.partial(_call, mw, call)
    return call


async def _call(mw: Middleware, handler: Handler, request: web.Request) -> web.StreamResponse:
    return await mw(request, handler)
