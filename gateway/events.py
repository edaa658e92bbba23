"""``POST /topics/{topic}``: HTTP bodies published as events (fire and forget), for the
topics the routes file opens (``publish:``). A function of the Gateway's state."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aiohttp import web
from kubefuncs import wire
from kubefuncs.errors import TransportError

from .responses import CALL_ID, error_response

if TYPE_CHECKING:
    from .proxy import Gateway

MAX_JSON_DEPTH = 100  # of a published JSON body; consumers refuse deeper payloads


async def publish(gw: Gateway, request: web.Request, topic: str) -> web.Response:
    """``POST /topics/{topic}``: the body as an event on ``topic``, if it may be published."""
    publish = gw.table.publish
    _, refusal = await gw._admit(request, publish.auth, publish.require_exp)
    if refusal is not None:
        return refusal
    if topic not in publish.topics:
        await gw.count_failure(request)
        return error_response(
            403, "topic_not_allowed", f"topic {topic!r} is not open for publishing"
        )
    body, refusal = await gw._body(request)
    if refusal is not None:
        return refusal
    payload, content_type, problem = event_payload(request.content_type, body)
    if problem:
        return error_response(400, "bad_request", problem)
    if gw.presence is not None:
        gw.presence.arrived(topic)  # wakes a function at zero (scaler.py)
    trace = gw._trace(request.headers, topic)
    trace.pop("tracestate", None)  # an event carries the trace id on, not the caller's state
    env = wire.make(topic, payload, headers=trace, content_type=content_type)
    try:
        message = wire.encode(env)
    except (ValueError, OverflowError, TypeError, RecursionError) as e:
        # UnicodeEncodeError (a lone surrogate) is a ValueError; OverflowError: an
        # integer msgpack cannot carry
        return error_response(422, "unencodable_payload", f"body cannot be carried: {e}")
    try:
        await gw.transport.publish(topic, message)
    except TransportError as e:
        return gw._bus_down(e, env.id)
    return web.json_response({"id": env.id, "topic": topic}, status=202, headers={CALL_ID: env.id})


def event_payload(content_type: str, body: bytes) -> tuple[Any, str, str | None]:
    """An event's payload: JSON bodies become values (carried as msgpack), others bytes."""
    if content_type == "application/json":
        try:
            value = json.loads(body) if body else None
        except ValueError as e:
            return None, "", f"body is not valid JSON: {e}"
        except RecursionError:
            value = None
            depth = MAX_JSON_DEPTH + 1
        else:
            depth = json_depth(value, MAX_JSON_DEPTH)
        if depth > MAX_JSON_DEPTH:
            return None, "", f"body is JSON nested deeper than {MAX_JSON_DEPTH} levels"
        return value, wire.MSGPACK, None
    return body, content_type or "application/octet-stream", None


def json_depth(value: Any, limit: int) -> int:
    """How deeply ``value`` nests lists and dicts, counted up to ``limit + 1`` (no recursion:
    the value came from a caller)."""
    deepest, level = 0, [(value, 1)]
    while level:
        item, depth = level.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            if deepest > limit:
                return deepest
            children = item.values() if isinstance(item, dict) else item
            level.extend((child, depth + 1) for child in children)
    return deepest
