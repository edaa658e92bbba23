"""Functions the gateway tests run, in-process or as ``python -m kubefuncs tests.gateway.fns:X``.

``behave`` acts on the first path segment it knows: ``.../fail`` raises ValueError,
``.../slow?s=N`` (or ``victim``) sleeps N seconds then answers ``slept``, ``.../status/N``
answers with status N; anything else is echoed back as JSON.
"""

from __future__ import annotations

import asyncio
import json
from urllib.parse import parse_qs

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
