"""How replies and refusals become HTTP responses (pure, but for a warning when a reply
carries headers HTTP cannot)."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from kubefuncs import wire
from kubefuncs.function import to_http_response

log = logging.getLogger("kubefuncs.gateway")

CALL_ID = "X-Call-Id"
ERROR = "X-Kubefuncs-Error"
ERROR_TYPE = "X-Kubefuncs-Error-Type"

# never forwarded in either direction (RFC 9110 7.6.1), plus what aiohttp computes itself
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)
# the caller's credentials stay at the gateway (whatever the route's auth: a function on an
# open route is no place for a bearer token meant for another)
NOT_FORWARDED = HOP_BY_HOP | {"x-api-key", "authorization"}
# RFC 9110 5.1 / 5.5: a name is a token; a value has no control character but tab
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_FIELD_VALUE = re.compile(r"[^\x00-\x08\x0a-\x1f\x7f]*")


def valid_header(name: str, value: str) -> bool:
    """Whether ``name: value`` can be sent as an HTTP header (no CR/LF injection)."""
    return bool(_TOKEN.fullmatch(name) and _FIELD_VALUE.fullmatch(value))


def request_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The caller's headers as the function sees them: lower-case names, no hop-by-hop
    headers and no credentials (repeated headers are joined with a comma)."""
    out: dict[str, str] = {}
    for name, value in headers.items():
        key = name.lower()
        if key in NOT_FORWARDED:
            continue
        out[key] = f"{out[key]}, {value}" if key in out else value
    return out


def error_response(
    status: int, code: str, message: str, call_id: str | None = None, **extra: Any
) -> web.Response:
    """A refusal or failure: JSON ``{"error", "message", "call_id", ...}`` and the code in
    the X-Kubefuncs-Error header."""
    body: dict[str, Any] = {"error": code, "message": message}
    if call_id:
        body["call_id"] = call_id
    body.update(extra)
    headers = {ERROR: code}
    if call_id:
        headers[CALL_ID] = call_id
    return web.Response(
        status=status,
        body=json.dumps(body).encode() + b"\n",
        content_type="application/json",
        headers=headers,
    )


def retry_later(code: str, message: str, call_id: str | None = None) -> web.Response:
    """503 with ``Retry-After: 1``: the gateway cannot take this request just now."""
    response = error_response(503, code, message, call_id)
    response.headers["Retry-After"] = "1"
    return response


def throttled(code: str, message: str, wait_s: float) -> web.Response:
    """429 with ``Retry-After``: whole seconds until a token is back (at least 1)."""
    response = error_response(429, code, message)
    response.headers["Retry-After"] = retry_after(wait_s)
    return response


def retry_after(wait_s: float) -> str:
    return str(max(1, round(wait_s + 0.499)))


def error_status(info: wire.ErrorInfo) -> int:
    """A function's error reply -> HTTP status: its hint when it is a 4xx/5xx, else 502."""
    if info.status is not None and 400 <= info.status <= 599:
        return info.status
    return 502


def from_reply(reply: wire.Envelope, call_id: str) -> web.Response:
    """The HTTP response for a function's reply (http-response, error, or a plain reply)."""
    if reply.kind == wire.ERROR:
        info: wire.ErrorInfo = reply.payload
        response = error_response(
            error_status(info),
            "function_error",
            info.message,
            call_id,
            type=info.type,
            retryable=info.retryable,
        )
        response.headers[ERROR_TYPE] = info.type
        return response
    http = reply.payload if reply.kind == wire.HTTP_RESPONSE else to_http_response(reply.payload)
    headers = {k: v for k, v in http.headers.items() if k.lower() not in HOP_BY_HOP}
    bad = [k for k, v in headers.items() if not valid_header(k, v)]
    if bad:  # a function's bug; sending them would drop the connection (header injection)
        log.warning(
            "dropped reply headers HTTP cannot carry: %s",
            ", ".join(map(repr, bad)),
            extra={"call_id": call_id},
        )
        headers = {k: v for k, v in headers.items() if k not in bad}
    headers[CALL_ID] = call_id
    return web.Response(status=http.status, headers=headers, body=http.body)


def timeout_response(topic: str, timeout_s: float, call_id: str) -> web.Response:
    return error_response(
        504,
        "timeout",
        f"no reply from topic {topic!r} within {timeout_s:g}s (the function did not answer "
        "in time; the request may still be processed)",
        call_id,
    )
