"""Wire contract v1: the envelope every kubefuncs message carries.

One message is one msgpack map with string keys (see docs/protocol.md). This module is
the only place that knows the field names; everything else works with :class:`Envelope`.
Decoding never raises anything but :class:`~kubefuncs.errors.DecodeError`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgpack

from .errors import DecodeError

VERSION = 1

EVENT = "event"
REQUEST = "request"
HTTP_REQUEST = "http-request"
REPLY = "reply"
HTTP_RESPONSE = "http-response"
ERROR = "error"
KINDS = frozenset({EVENT, REQUEST, HTTP_REQUEST, REPLY, HTTP_RESPONSE, ERROR})

MSGPACK = "application/msgpack"

_MAX_BODY_BYTES = 64 * 1024 * 1024


def new_id() -> str:
    """A fresh message id: 32 lowercase hex characters (as uuid4().hex, but cheaper)."""
    return os.urandom(16).hex()


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class Envelope:
    """One decoded kubefuncs message."""

    id: str
    topic: str
    kind: str
    payload: Any = None
    time_ms: int = 0
    content_type: str = MSGPACK
    reply_to: str | None = None
    correlation_id: str | None = None
    deadline_ms: int | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    def expired(self, at_ms: int | None = None) -> bool:
        """True when the producer's deadline has passed: nobody waits for the result."""
        if self.deadline_ms is None:
            return False
        return (now_ms() if at_ms is None else at_ms) > self.deadline_ms


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """Payload of an ``http-request`` message."""

    method: str
    path: str
    query: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        import json

        return json.loads(self.body) if self.body else None


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """Payload of an ``http-response`` reply."""

    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """Payload of an ``error`` reply. ``status`` is an optional HTTP status hint."""

    type: str
    message: str
    retryable: bool = False
    status: int | None = None


def make(
    topic: str,
    payload: Any,
    *,
    kind: str = EVENT,
    reply_to: str | None = None,
    correlation_id: str | None = None,
    deadline_ms: int | None = None,
    headers: Mapping[str, str] | None = None,
    content_type: str = MSGPACK,
    id: str | None = None,
) -> Envelope:
    """Build an envelope with a new id and the current time."""
    return Envelope(
        id=id or new_id(),
        topic=topic,
        kind=kind,
        payload=payload,
        time_ms=now_ms(),
        content_type=content_type,
        reply_to=reply_to,
        correlation_id=correlation_id,
        deadline_ms=deadline_ms,
        headers=dict(headers or {}),
    )


def reply_for(request: Envelope, payload: Any, *, kind: str = REPLY) -> Envelope:
    """The reply to ``request``: addressed to its ``reply_to``, correlated by its id."""
    return make(
        request.reply_to or "",
        payload,
        kind=kind,
        correlation_id=request.id,
        headers=_trace_headers(request.headers),
    )


def _trace_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k in ("traceparent", "tracestate")}


# -- encoding ------------------------------------------------------------------------------


def encode(env: Envelope) -> bytes:
    """Serialise an envelope to its msgpack body (keys in a fixed order)."""
    return msgpack.packb(to_wire(env), use_bin_type=True)  # type: ignore[no-any-return]


def to_wire(env: Envelope) -> dict[str, Any]:
    """The envelope as the plain map that goes on the wire."""
    return {
        "v": VERSION,
        "id": env.id,
        "topic": env.topic,
        "kind": env.kind,
        "time": env.time_ms,
        "content_type": env.content_type,
        "reply_to": env.reply_to,
        "correlation_id": env.correlation_id,
        "deadline": env.deadline_ms,
        "headers": dict(env.headers),
        "payload": payload_to_wire(env.payload),
    }


def payload_to_wire(payload: Any) -> Any:
    if isinstance(payload, HttpRequest):
        return {
            "method": payload.method,
            "path": payload.path,
            "query": payload.query,
            "headers": dict(payload.headers),
            "body": payload.body,
        }
    if isinstance(payload, HttpResponse):
        return {"status": payload.status, "headers": dict(payload.headers), "body": payload.body}
    if isinstance(payload, ErrorInfo):
        out: dict[str, Any] = {
            "type": payload.type,
            "message": payload.message,
            "retryable": payload.retryable,
        }
        if payload.status is not None:
            out["status"] = payload.status
        return out
    return payload


# -- decoding ------------------------------------------------------------------------------


def decode(body: bytes) -> Envelope:
    """Parse and validate a message body. Raises :class:`DecodeError` on anything malformed."""
    if not isinstance(body, bytes | bytearray | memoryview):
        raise DecodeError(f"message body must be bytes, got {type(body).__name__}")
    if len(body) > _MAX_BODY_BYTES:
        raise DecodeError(f"message body is {len(body)} bytes, over the {_MAX_BODY_BYTES} limit")
    try:
        raw = msgpack.unpackb(body, raw=False, strict_map_key=True)
    except Exception as e:  # msgpack raises several unrelated types for bad input
        raise DecodeError(f"body is not valid msgpack: {e}") from e
    return from_wire(raw)


def from_wire(raw: Any) -> Envelope:
    """Validate a decoded map and build the envelope (see :func:`decode`)."""
    if not isinstance(raw, dict):
        raise DecodeError(f"envelope must be a msgpack map, got {type(raw).__name__}")
    v = raw.get("v")
    if v != VERSION or isinstance(v, bool):
        raise DecodeError(f"unsupported envelope version {v!r}: this consumer speaks v{VERSION}")
    kind = _str(raw, "kind", required=True)
    payload = raw.get("payload")
    return Envelope(
        id=_str(raw, "id", required=True),
        topic=_str(raw, "topic") or "",
        kind=kind,
        payload=_payload(kind, payload),
        time_ms=_int(raw, "time") or 0,
        content_type=_str(raw, "content_type") or MSGPACK,
        reply_to=_str(raw, "reply_to"),
        correlation_id=_str(raw, "correlation_id"),
        deadline_ms=_int(raw, "deadline"),
        headers=_str_map(raw.get("headers"), "headers"),
    )


def _str(raw: Mapping[str, Any], key: str, *, required: bool = False) -> str | None:
    value = raw.get(key)
    if value is None:
        if required:
            raise DecodeError(f"envelope field {key!r} is missing")
        return None
    if not isinstance(value, str) or (required and not value):
        raise DecodeError(f"envelope field {key!r} must be a non-empty string, got {value!r:.60}")
    return value


def _int(raw: Mapping[str, Any], key: str) -> int | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise DecodeError(f"envelope field {key!r} must be an integer (unix ms), got {value!r:.60}")
    return value


def _str_map(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise DecodeError(f"{where} must be a map of string to string")
    return value


def _bytes(value: Any, where: str) -> bytes:
    if value is None:
        return b""
    if isinstance(value, str):
        return value.encode()
    if not isinstance(value, bytes):
        raise DecodeError(f"{where} must be bytes or a string")
    return value


def _payload(kind: str, payload: Any) -> Any:
    if kind == HTTP_REQUEST:
        return _http_request(payload)
    if kind == HTTP_RESPONSE:
        return _http_response(payload)
    if kind == ERROR:
        return _error(payload)
    return payload


def _require_map(payload: Any, kind: str) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise DecodeError(f"payload of a {kind!r} message must be a map")
    return payload


def _http_request(payload: Any) -> HttpRequest:
    p = _require_map(payload, HTTP_REQUEST)
    method, path = p.get("method"), p.get("path")
    if not isinstance(method, str) or not isinstance(path, str):
        raise DecodeError("http-request payload needs string 'method' and 'path'")
    query = p.get("query") or ""
    if not isinstance(query, str):
        raise DecodeError("http-request 'query' must be the raw query string")
    return HttpRequest(
        method=method,
        path=path,
        query=query,
        headers=_str_map(p.get("headers"), "http-request headers"),
        body=_bytes(p.get("body"), "http-request body"),
    )


def _http_response(payload: Any) -> HttpResponse:
    p = _require_map(payload, HTTP_RESPONSE)
    status = p.get("status", 200)
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise DecodeError(f"http-response 'status' must be an integer 100-599, got {status!r}")
    return HttpResponse(
        status=status,
        headers=_str_map(p.get("headers"), "http-response headers"),
        body=_bytes(p.get("body"), "http-response body"),
    )


def _error(payload: Any) -> ErrorInfo:
    p = _require_map(payload, ERROR)
    type_, message = p.get("type"), p.get("message", "")
    if not isinstance(type_, str) or not isinstance(message, str):
        raise DecodeError("error payload needs string 'type' and 'message'")
    status = p.get("status")
    if status is not None and (not isinstance(status, int) or isinstance(status, bool)):
        raise DecodeError("error 'status' must be an integer")
    return ErrorInfo(type_, message, bool(p.get("retryable", False)), status)


# -- CloudEvents ---------------------------------------------------------------------------

_CE_CORE = {"id", "source", "type", "time", "datacontenttype", "data", "specversion"}


def to_cloudevent(env: Envelope, *, source: str | None = None) -> dict[str, Any]:
    """Map an envelope to a CloudEvents 1.0 event (structured form, as a dict)."""
    ce: dict[str, Any] = {
        "specversion": "1.0",
        "id": env.id,
        "source": source or env.headers.get("ce-source", f"/kubefuncs/topics/{env.topic}"),
        "type": env.headers.get("ce-type", f"io.kubefuncs.{env.kind}"),
        "time": datetime.fromtimestamp(env.time_ms / 1000, UTC).isoformat().replace("+00:00", "Z"),
        "datacontenttype": env.content_type,
        "data": payload_to_wire(env.payload),
        "kftopic": env.topic,
    }
    for key in ("reply_to", "correlation_id"):
        value = getattr(env, key)
        if value is not None:
            ce["kf" + key.replace("_", "")] = value
    if env.deadline_ms is not None:
        ce["kfdeadline"] = env.deadline_ms
    for key, value in env.headers.items():
        if key not in ("ce-source", "ce-type"):
            ce[key.replace("-", "").lower()] = value
    return ce


def from_cloudevent(ce: Mapping[str, Any], *, topic: str | None = None) -> Envelope:
    """Build an ``event`` envelope from a CloudEvents 1.0 event in structured form."""
    for key in ("id", "source", "type"):
        if not isinstance(ce.get(key), str):
            raise DecodeError(f"CloudEvent attribute {key!r} is missing or not a string")
    headers = {"ce-source": ce["source"], "ce-type": ce["type"]}
    known = _CE_CORE | {"kftopic", "kfreplyto", "kfcorrelationid", "kfdeadline"}
    headers.update({k: str(v) for k, v in ce.items() if k not in known})
    time_ms = now_ms()
    if isinstance(ce.get("time"), str):
        try:
            time_ms = int(
                datetime.fromisoformat(ce["time"].replace("Z", "+00:00")).timestamp() * 1000
            )
        except ValueError as e:
            raise DecodeError(f"CloudEvent 'time' is not RFC 3339: {ce['time']!r}") from e
    return Envelope(
        id=ce["id"],
        topic=topic or str(ce.get("kftopic", "")),
        kind=EVENT,
        payload=ce.get("data"),
        time_ms=time_ms,
        content_type=str(ce.get("datacontenttype", MSGPACK)),
        headers=headers,
    )
