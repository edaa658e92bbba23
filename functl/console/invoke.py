"""``POST /api/v1/functions/{name}/invoke``: a call through the bus with
:class:`kubefuncs.Client`, waited for (200 with the reply) or, with ``"async": true``, run
in the background (202 with a call id; ``GET /api/v1/calls/{call_id}`` gives the result).
Background calls live in this process's memory for CALL_TTL_S after they finish, at most
MAX_CALLS at once: they are a convenience, not a queue (the bus is one).
"""

from __future__ import annotations

import asyncio
import base64
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..busops import plain
from .common import ApiError, allowed, json_body, object_body, view
from .settings import READ, WRITE

if TYPE_CHECKING:
    from .app import Console
    from .catalog import FunctionView

MAX_TIMEOUT_S = 300.0
MAX_CALLS = 1000
CALL_TTL_S = 600.0


@dataclass
class Call:
    function: str
    task: asyncio.Task[tuple[int, dict[str, Any]]]
    done_at: float | None = None


@dataclass
class Calls:
    """The background calls of one server, by id; finished ones expire after CALL_TTL_S."""

    by_id: dict[str, Call] = field(default_factory=dict)

    def start(self, function: str, work: Any) -> str:
        self.expire(time.monotonic())
        if len(self.by_id) >= MAX_CALLS:
            raise ApiError(
                429, "too_many_calls", f"{MAX_CALLS} background calls are kept: retry later"
            )
        call_id = uuid.uuid4().hex
        task = asyncio.create_task(work)
        call = Call(function, task)
        task.add_done_callback(lambda _: setattr(call, "done_at", time.monotonic()))
        self.by_id[call_id] = call
        return call_id

    def expire(self, now: float) -> None:
        gone = [k for k, c in self.by_id.items() if c.done_at and now - c.done_at > CALL_TTL_S]
        for k in gone:
            del self.by_id[k]

    async def close(self) -> None:
        for c in self.by_id.values():
            c.task.cancel()
        await asyncio.gather(*(c.task for c in self.by_id.values()), return_exceptions=True)


def _timeout(body: Mapping[str, Any], default_s: float) -> float:
    value = body.get("timeout_s", default_s)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 < value <= MAX_TIMEOUT_S
    ):
        raise ApiError(400, "bad_body", f"timeout_s must be a number in (0, {MAX_TIMEOUT_S:g}]")
    return float(value)


def http_request(spec: Any) -> Any:
    """The ``http`` member of an invoke body -> a wire HttpRequest (400 when malformed)."""
    from kubefuncs.wire import HttpRequest

    if not isinstance(spec, dict):
        raise ApiError(400, "bad_body", "http must be an object {method, path, headers, body}")
    method, path = spec.get("method", "GET"), spec.get("path", "/")
    headers, body = spec.get("headers") or {}, spec.get("body") or ""
    if not isinstance(method, str) or not re.fullmatch(r"[A-Za-z]{1,16}", method):
        raise ApiError(400, "bad_body", f"http.method must be an HTTP method, got {method!r}")
    if not isinstance(path, str) or not path.startswith("/"):
        raise ApiError(400, "bad_body", f"http.path must start with '/', got {path!r}")
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise ApiError(400, "bad_body", "http.headers must map names to strings")
    if not isinstance(body, str):
        raise ApiError(400, "bad_body", "http.body must be a string")
    target, _, query = path.partition("?")
    lowered = {str(k).lower(): v for k, v in headers.items()}
    return HttpRequest(method.upper(), target, query, lowered, body.encode())


def reply_json(reply: Any, duration_ms: float) -> dict[str, Any]:
    from kubefuncs.wire import HttpResponse

    if isinstance(reply, HttpResponse):
        text = _text(reply.body)
        return {
            "outcome": "http",
            "status": reply.status,
            "headers": dict(reply.headers),
            **text,
            "duration_ms": duration_ms,
        }
    return {"outcome": "reply", "reply": plain(reply), "duration_ms": duration_ms}


def _text(body: bytes) -> dict[str, str]:
    try:
        return {"body": body.decode("utf-8")}
    except UnicodeDecodeError:
        return {"body": "", "body_base64": base64.b64encode(body).decode()}


async def perform(
    console: Console, v: FunctionView, body: Mapping[str, Any]
) -> tuple[int, dict[str, Any]]:
    """Make the call; (HTTP status, JSON) of the outcome, failures included."""
    from kubefuncs import wire
    from kubefuncs.errors import CallTimeout, KubefuncsError, RemoteError

    timeout_s = _timeout(body, console.settings.invoke_timeout_s)
    is_http = "http" in body
    payload = http_request(body["http"]) if is_http else plain(body.get("payload"))
    kind = wire.HTTP_REQUEST if is_http else wire.REQUEST
    assert console.client is not None
    started = time.perf_counter()
    try:
        reply = await console.client.call(v.topic, payload, timeout_s=timeout_s, kind=kind)
    except RemoteError as e:
        took = round((time.perf_counter() - started) * 1000, 3)
        error = {"type": e.type, "message": e.message, "retryable": e.retryable}
        return 200, {"outcome": "error", "error": error, "duration_ms": took}
    except CallTimeout as e:
        return 504, {
            "error": "timeout",
            "message": f"no reply from {v.name} within {timeout_s:g} s: {e}",
        }
    except KubefuncsError as e:
        return 503, {"error": "bus_unavailable", "message": f"the bus failed the call: {e}"}
    return 200, reply_json(reply, round((time.perf_counter() - started) * 1000, 3))


async def invoke(request: web.Request) -> web.Response:
    console = await allowed(request, WRITE)
    v = await view(console, request.match_info["name"])
    body = object_body(await json_body(request), "the invoke body")
    if body.get("async") is True:
        _timeout(body, console.settings.invoke_timeout_s)  # refuse a bad body now, not later
        if "http" in body:
            http_request(body["http"])
        call_id = console.calls.start(v.name, perform(console, v, body))
        location = f"/api/v1/calls/{call_id}"
        answer = {"call_id": call_id, "function": v.name, "status": "pending", "location": location}
        return web.json_response(answer, status=202, headers={"Location": location})
    status, answer = await perform(console, v, body)
    return web.json_response(answer, status=status)


async def get_call(request: web.Request) -> web.Response:
    console = await allowed(request, READ)
    call_id = request.match_info["call_id"]
    console.calls.expire(time.monotonic())
    call = console.calls.by_id.get(call_id)
    if call is None:
        raise ApiError(
            404, "not_found", f"no call {call_id!r} (finished calls are kept {CALL_TTL_S:g} s)"
        )
    out: dict[str, Any] = {"call_id": call_id, "function": call.function, "status": "pending"}
    if call.task.done():
        status, answer = _outcome(call.task)
        out |= {"status": "done", "http_status": status, "result": answer}
    return web.json_response(out)


def _outcome(task: asyncio.Task[tuple[int, dict[str, Any]]]) -> tuple[int, dict[str, Any]]:
    if task.cancelled():
        return 503, {"error": "cancelled", "message": "the server stopped before the reply came"}
    failed = task.exception()
    if failed is not None:  # perform() turns every expected failure into an answer
        return 500, {"error": "internal", "message": f"the call failed: {failed!r}"}
    return task.result()
