"""Async calls through the gateway: ``async: true`` routes answer 202 with a call id at once,
the result is stored (calls.py) and fetched with ``GET /calls/{id}`` or POSTed to a callback
(callbacks.py). Functions of the :class:`~kubefuncs.gateway.proxy.Gateway`'s state."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from aiohttp import web
from kubefuncs import wire
from kubefuncs.errors import TransportError
from yarl import URL

from .auth import ANY
from .callbacks import CALLBACK_HEADER, BadCallback, callback_url, post_callback
from .calls import DONE, PENDING, CallResult, owner_of
from .responses import CALL_ID, error_response, from_reply, timeout_response
from .routes import Route
from .trace import trace_id

if TYPE_CHECKING:
    from .proxy import Gateway, Outgoing

log = logging.getLogger("kubefuncs.gateway")
_CALL_ID = re.compile(r"[0-9a-f]{32}")


async def start(
    gw: Gateway, request: web.Request, route: Route, call: Outgoing, owner: str | None
) -> web.Response:
    try:
        values = request.headers.getall(CALLBACK_HEADER, [])
        callback = callback_url(values, gw.settings.callbacks)
    except BadCallback as e:
        return error_response(400, "bad_callback", e.reason)
    call_id = call.id
    future = gw.replies.expect(call_id, route.timeout_s)
    pending = CallResult(PENDING, owner=owner)
    try:
        await gw.store.put(call_id, pending, gw.settings.result_ttl_s)
        await gw.transport.publish(route.topic, call.message)
    except TransportError as e:
        gw.replies.forget(call_id)
        return gw._bus_down(e, call_id)
    gw._spawn(finish(gw, route, call, future, callback, owner))
    return web.json_response(
        {"call_id": call_id, "status": PENDING, "result_url": f"/calls/{call_id}"},
        status=202,
        headers={CALL_ID: call_id, "Location": f"/calls/{call_id}"},
    )


async def finish(
    gw: Gateway,
    route: Route,
    call: Outgoing,
    future: asyncio.Future[wire.Envelope],
    callback: URL | None,
    owner: str | None,
) -> None:
    try:
        reply = await future
        response = from_reply(reply, call.id)
    except TimeoutError:
        gw.metrics.timed_out(route.prefix)
        response = timeout_response(route.topic, route.timeout_s, call.id)
    finally:
        gw.replies.forget(call.id)
    headers = dict(response.headers)
    result = CallResult(DONE, response.status, headers, _body_of(response), owner)
    try:
        await gw.store.put(call.id, result, gw.settings.result_ttl_s)
    except TransportError as e:
        log.warning(
            "could not store an async result: %s", e, extra=log_ids(call.id, route, call.trace)
        )
    if callback is not None and gw.session is not None:
        ok = await post_callback(
            gw.session, callback, call.id, result, gw.settings.callback_timeout_s
        )
        gw.metrics.callbacks.labels("ok" if ok else "failed").inc()


async def result(gw: Gateway, request: web.Request) -> web.Response:
    """``GET /calls/{id}``: 202 while pending, then the function's response. A call made
    on a route with auth is only shown to the principal that made it: others hear 401
    without credentials, or the 404 of an unknown id (ids cannot be probed)."""
    call_id = request.match_info["id"]
    if not _CALL_ID.fullmatch(call_id):
        return error_response(
            400, "bad_call_id", "a call id is 32 lowercase hex characters (from X-Call-Id)"
        )
    try:
        result = await gw.store.get(call_id)
    except TransportError as e:
        return gw._bus_down(e, call_id)
    if result is not None and result.owner is not None:
        # the caller's credentials, checked (and failures throttled) as on any route
        caller, refusal = await gw._admit(request, ANY)
        if refusal is not None:
            return refusal
        if owner_of(caller) != result.owner:
            result = None
    if result is None:
        return error_response(
            404, "unknown_call", "no such call (never made, or its result expired)", call_id
        )
    if result.state == PENDING:
        return web.json_response(
            {"call_id": call_id, "status": PENDING}, status=202, headers={CALL_ID: call_id}
        )
    return web.Response(
        status=result.status,
        headers={**result.headers, "X-Call-Status": DONE},
        body=result.body,
    )


def _body_of(response: web.Response) -> bytes:
    body = response.body
    return bytes(body) if isinstance(body, bytes | bytearray) else b""


def log_ids(call_id: str, route: Route, trace: Mapping[str, str]) -> dict[str, str]:
    """The ``extra`` of a log line about a call."""
    return {
        "call_id": call_id,
        "topic": route.topic,
        "route": route.prefix,
        "trace_id": trace_id(trace.get("traceparent", "")),
    }
