"""Functions the gateway tests run, in-process or as ``python -m kubefuncs tests.gateway.fns:X``.

``behave`` acts on the first path segment it knows: ``.../fail`` raises ValueError,
``.../slow?s=N`` (or ``victim``) sleeps N seconds then answers ``slept``, ``.../status/N``
answers with status N; anything else is echoed back as JSON.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web
from kubefuncs import HttpRequest, HttpResponse, function


def echo_body(request: HttpRequest) -> bytes:
    return json.dumps(
        {
            "method": request.method,
            "path": request.path,
            "query": request.query,
            "headers": dict(request.headers),
            "body": request.text(),
        }
    ).encode()


ACTIONS = frozenset({"fail", "slow", "victim", "status"})


@function("e2e")
async def behave(request: HttpRequest) -> HttpResponse | str:
    parts = request.path.strip("/").split("/")
    at = next((i for i, p in enumerate(parts) if p in ACTIONS), None)
    action = "echo" if at is None else parts[at]
    if action == "fail":
        raise ValueError("boom")
    if action in ("slow", "victim"):
        await asyncio.sleep(float(parse_qs(request.query).get("s", ["0"])[0]))
        return "slept"
    if action == "status":
        status = int(parts[at + 1])  # type: ignore[operator]
        return HttpResponse(status, {"content-type": "text/plain"}, b"as asked")
    return HttpResponse(
        200, {"content-type": "application/json", "x-echo": "1"}, echo_body(request)
    )


# -- gateway middleware (routes name them as tests.gateway.fns:NAME) -------------------------


async def stamp(request: web.Request, handler: Any) -> web.StreamResponse:
    """Marks the request for the function and the response for the caller."""
    response = await handler(request.clone(headers={**request.headers, "X-Stamped": "1"}))
    from kubefuncs.gateway.middleware import PRINCIPAL

    principal = request[PRINCIPAL]
    return _seen(response, f"stamp:{principal.name if principal else '-'}")


async def quota(request: web.Request, handler: Any) -> web.StreamResponse:
    """Refuses what asks for it, before the function is called."""
    if request.query.get("over") == "1":
        raise web.HTTPTooManyRequests(text="monthly quota used up")
    return _seen(await handler(request), "quota")


def _seen(response: web.StreamResponse, name: str) -> web.StreamResponse:
    """Appends ``name`` to X-Seen-By: the innermost middleware's comes first."""
    before = response.headers.get("X-Seen-By")
    response.headers["X-Seen-By"] = f"{before},{name}" if before else name
    return response


async def broken(request: web.Request, handler: Any) -> web.StreamResponse:
    raise KeyError("a bug in the middleware")


def not_async(request: web.Request, handler: Any) -> None:
    return None
