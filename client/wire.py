"""Wire contract v1: the envelope every kubefuncs message carries.

One message is one msgpack map with string keys (see docs/protocol.md). This module is
the only place that knows the field names; everything else works with :class:`Envelope`.
Decoding never raises anything but :class:`~kubefuncs.errors.DecodeError`.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import msgpack

from . import _wire_limits as limits
from .errors import DecodeError, EncodeError

VERSION = 1

EVENT = "event"
REQUEST = "request"
HTTP_REQUEST = "http-request"
REPLY = "reply"
HTTP_RESPONSE = "http-response"
ERROR = "error"
KINDS = frozenset({EVENT, REQUEST, HTTP_REQUEST, REPLY, HTTP_RESPONSE, ERROR})
# What a function runs its handler for. The decoder accepts any non-empty kind (forward
# compatibility); a function dead-letters a kind not in this set (docs/protocol.md, 5).
SERVED_KINDS = frozenset({EVENT, REQUEST, HTTP_REQUEST})

MSGPACK = "application/msgpack"

_MAX_BODY_BYTES = limits.MAX_BODY_BYTES
MAX_DEPTH = limits.MAX_DEPTH
MAX_ELEMENTS = limits.MAX_ELEMENTS


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


# Positional constructors that skip the generated __init__ (keyword handling and a guarded
# setattr per field): the same objects at about a third of the cost, for the decode and
# reply paths every message takes. tests/test_wire.py checks them against the classes.
_new = object.__new__
_E = tuple(getattr(Envelope, f).__set__ for f in Envelope.__dataclass_fields__)
_Q = tuple(getattr(HttpRequest, f).__set__ for f in HttpRequest.__dataclass_fields__)
_R = tuple(getattr(HttpResponse, f).__set__ for f in HttpResponse.__dataclass_fields__)


def _envelope(
    id: str,
    topic: str,
    kind: str,
    payload: Any,
    time_ms: int,
    content_type: str,
    reply_to: str | None,
    correlation_id: str | None,
    deadline_ms: int | None,
    headers: Mapping[str, str],
) -> Envelope:
    env: Envelope = _new(Envelope)
    _E[0](env, id)
    _E[1](env, topic)
    _E[2](env, kind)
    _E[3](env, payload)
    _E[4](env, time_ms)
    _E[5](env, content_type)
    _E[6](env, reply_to)
    _E[7](env, correlation_id)
    _E[8](env, deadline_ms)
    _E[9](env, headers)
    return env


def _http_request_of(
    method: str, path: str, query: str, headers: Mapping[str, str], body: bytes
) -> HttpRequest:
    request: HttpRequest = _new(HttpRequest)
    _Q[0](request, method)
    _Q[1](request, path)
    _Q[2](request, query)
    _Q[3](request, headers)
    _Q[4](request, body)
    return request


def _http_response_of(status: int, headers: Mapping[str, str], body: bytes) -> HttpResponse:
    response: HttpResponse = _new(HttpResponse)
    _R[0](response, status)
    _R[1](response, headers)
    _R[2](response, body)
    return response


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
    return _envelope(
        id or new_id(),
        topic,
        kind,
        payload,
        now_ms(),
        content_type,
        reply_to,
        correlation_id,
        deadline_ms,
        dict(headers or {}),
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
    """Serialise an envelope to its msgpack body (keys in a fixed order). Raises
    :class:`EncodeError` for what no consumer would decode (docs/protocol.md, "Limits")."""
    message = to_wire(env)
    try:
        _check_tree(from_wire(message), message, scalars=True)
    except DecodeError as e:
        raise EncodeError(f"cannot encode the envelope: {e}") from None
    return _pack(message)


def _pack(message: dict[str, Any]) -> bytes:
    try:
        body: bytes = msgpack.packb(message, use_bin_type=True)
    except (ValueError, OverflowError, TypeError) as e:
        raise _encode_error(message, e) from e
    if len(body) > _MAX_BODY_BYTES:
        raise EncodeError(
            f"cannot encode the envelope: its body would be {len(body)} bytes, over the"
            f" {_MAX_BODY_BYTES} limit (send large data by reference)"
        )
    if len(body) > MAX_ELEMENTS and limits.count_elements(message) > MAX_ELEMENTS:
        raise EncodeError(f"cannot encode the envelope: {limits.too_many_elements()}")
    return body


def _encode_error(message: dict[str, Any], error: Exception) -> EncodeError:
    """Which field msgpack could not write, and why (the error path: packs field by field)."""
    for key, value in message.items():
        try:
            msgpack.packb(value, use_bin_type=True)
        except (ValueError, OverflowError, TypeError) as e:
            why = limits.unpackable(value) or str(e)
            return EncodeError(f"cannot encode envelope field {key!r}: {why}")
    return EncodeError(f"cannot encode the envelope: {error}")


def _check_payload(kind: str, payload: Any) -> None:
    """For the fast encoders, which build every other field themselves."""
    try:
        _payload(kind, payload)
        problem = limits.field_problem("payload", payload, scalars=True)
    except DecodeError as e:
        problem = str(e)
    if problem is not None:
        raise EncodeError(f"cannot encode the envelope: {problem}")


def encode_http_request(
    env_id: str,
    topic: str,
    request: tuple[str, str, str, Mapping[str, str], bytes],
    *,
    time_ms: int,
    reply_to: str | None,
    deadline_ms: int | None,
    headers: Mapping[str, str],
) -> bytes:
    """``encode()`` of an http-request envelope without building the Envelope nor its
    HttpRequest (``request`` is method, path, query, headers and body): the same bytes, for
    the gateway's hot path (tests/test_wire.py checks they are the same)."""
    method, path, query, http_headers, body = request
    return _pack(
        {
            "v": VERSION,
            "id": env_id,
            "topic": topic,
            "kind": HTTP_REQUEST,
            "time": time_ms,
            "content_type": MSGPACK,
            "reply_to": reply_to,
            "correlation_id": None,
            "deadline": deadline_ms,
            "headers": headers,
            "payload": {
                "method": method,
                "path": path,
                "query": query,
                "headers": http_headers,
                "body": body,
            },
        },
    )


def encode_reply(request: Envelope, payload: Any, *, kind: str = REPLY) -> bytes:
    """``encode(reply_for(request, payload, kind=kind))`` without building the Envelope:
    the same bytes, for the runtime's hot path (tests/test_wire.py checks they are the
    same)."""
    wire_payload = payload_to_wire(payload)
    if wire_payload.__class__ is not str and wire_payload.__class__ is not bytes:
        _check_payload(kind, wire_payload)
    return _pack(
        {
            "v": VERSION,
            "id": new_id(),
            "topic": request.reply_to or "",
            "kind": kind,
            "time": now_ms(),
            "content_type": MSGPACK,
            "reply_to": None,
            "correlation_id": request.id,
            "deadline": None,
            "headers": _trace_headers(request.headers),
            "payload": wire_payload,
        },
    )


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
    """Parse and validate a message body. Raises :class:`DecodeError` on anything malformed,
    the limits of docs/protocol.md ("Limits") included."""
    if not isinstance(body, bytes | bytearray | memoryview):
        raise DecodeError(f"message body must be bytes, got {type(body).__name__}")
    if len(body) > _MAX_BODY_BYTES:
        raise DecodeError(f"message body is {len(body)} bytes, over the {_MAX_BODY_BYTES} limit")
    try:
        raw = limits.unpack(body, _refuse_ext)
    except _ExtFound:
        raise _ext_error(body) from None
    except ValueError as e:
        raise _unpack_error(e, body) from e
    except Exception as e:  # msgpack raises several unrelated types for bad input
        raise DecodeError(f"body is not valid msgpack: {e}") from e
    env = from_wire(raw)
    _check_tree(env, raw, scalars=0xFF in body)  # 0xff: the type byte of a timestamp ext
    return env


class _ExtFound(Exception):
    pass


def _refuse_ext(code: int, data: bytes) -> Any:
    raise _ExtFound(code)


def _ext_error(body: bytes) -> DecodeError:
    """The error for a body with an extension type, naming the field it is in."""
    try:
        raw = msgpack.unpackb(body, raw=False, strict_map_key=True)
        _check_tree(from_wire(raw), raw, scalars=True)
    except DecodeError as e:
        return e
    except ValueError as e:
        return _unpack_error(e, body)
    except Exception as e:
        return DecodeError(f"body is not valid msgpack: {e}")
    return DecodeError("body holds a msgpack extension type: the contract has none")


_KEY_ERROR = limits._KEY_ERROR
_STRICT_KEY = " is not allowed for map key when strict_map_key=True"
_MSGPACK_TYPE = {"NoneType": "nil", "list": "array", "dict": "map", "bytes": "bin"}
_MSGPACK_TYPE |= {"ExtType": "ext", "Timestamp": "ext"}


def _unpack_error(e: ValueError, body: bytes) -> DecodeError:
    if isinstance(e, msgpack.StackError):
        return DecodeError(limits.too_deep(limits.deep_field(body)))
    if isinstance(e, limits.TooManyElements) or "exceeds max_" in str(e):
        return DecodeError(limits.too_many_elements())
    if isinstance(e, UnicodeDecodeError):
        field = limits.bad_utf8_field(body)
        where = "a string" if field is None else f"envelope field {field!r}"
        return DecodeError(f"body is not valid msgpack: {where} is not valid UTF-8 ({e.reason})")
    text = str(e)
    if text.endswith(_STRICT_KEY):  # msgpack's words for a non-str map key
        python_type = text[: -len(_STRICT_KEY)]
        where = limits.bad_key_field(body)
        return DecodeError(_KEY_ERROR + _MSGPACK_TYPE.get(python_type, python_type) + where)
    return DecodeError(f"body is not valid msgpack: {text}")


_ENVELOPE_KEYS = frozenset(
    {"v", "id", "topic", "kind", "time", "content_type", "reply_to", "correlation_id"}
    | {"deadline", "headers", "payload"}
)
_STRUCTURED_KEYS = {
    HTTP_REQUEST: frozenset({"method", "path", "query", "headers", "body"}),
    HTTP_RESPONSE: frozenset({"status", "headers", "body"}),
    ERROR: frozenset({"type", "message", "status"}),  # not "retryable": any value
}


def _check_tree(env: Envelope, raw: dict[str, Any], *, scalars: bool) -> None:
    """The rules from_wire does not see: nesting depth, str keys and (``scalars``) no
    extension types, in every field it has not checked whole. Iterative: no RecursionError."""
    for key in _unchecked_fields(raw, env.kind):
        problem = limits.field_problem(key, raw[key], scalars=scalars)
        if problem is not None:
            raise DecodeError(problem)


def _unchecked_fields(raw: dict[str, Any], kind: str) -> list[str]:
    """Fields whose value from_wire has not checked all of: unknown ones and the payload,
    unless it is a structured payload of known keys only (those are all checked)."""
    fields = [] if _ENVELOPE_KEYS.issuperset(raw) else [k for k in raw if k not in _ENVELOPE_KEYS]
    payload = raw.get("payload")
    if payload.__class__ is dict or payload.__class__ is list:
        known = _STRUCTURED_KEYS.get(kind)
        if known is None or not known.issuperset(payload):
            fields.append("payload")
    elif payload is not None and not isinstance(payload, str | bytes | int | float):
        fields.append("payload")  # an extension type
    return fields


def from_wire(raw: Any) -> Envelope:
    """Validate a decoded map and build the envelope (see :func:`decode`)."""
    if not isinstance(raw, dict):
        raise DecodeError(f"envelope must be a msgpack map, got {type(raw).__name__}")
    v = raw.get("v")
    if v.__class__ is not int or v != VERSION:  # not 1.0, not True
        raise DecodeError(
            f"unsupported envelope version {limits.short(v)} in field 'v': this consumer speaks"
            f" v{VERSION} (the integer 1)"
        )
    kind = _required_str(raw, "kind")
    payload = raw.get("payload")
    return _envelope(
        _required_str(raw, "id"),
        _str(raw, "topic") or "",
        kind,
        _payload(kind, payload),
        _int(raw, "time") or 0,
        _str(raw, "content_type") or MSGPACK,
        _str(raw, "reply_to"),
        _str(raw, "correlation_id"),
        _int(raw, "deadline"),
        _str_map(raw.get("headers"), "headers"),
    )


def _required_str(raw: Mapping[str, Any], key: str) -> str:
    value = raw.get(key)
    if value is None:
        raise DecodeError(f"envelope field {key!r} is missing")
    if not isinstance(value, str) or not value:
        raise DecodeError(
            f"envelope field {key!r} must be a non-empty string, got {limits.short(value)}"
        )
    return value


def _str(raw: Mapping[str, Any], key: str) -> str | None:
    value = raw.get(key)
    if value is not None and not isinstance(value, str):
        raise DecodeError(
            f"envelope field {key!r} must be a string or nil, got {limits.short(value)}"
        )
    return value


def _int(raw: Mapping[str, Any], key: str) -> int | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise DecodeError(
            f"envelope field {key!r} must be an integer (unix ms) or nil, got {limits.short(value)}"
        )
    return value


def _str_map(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise DecodeError(f"{where} must be a map of string to string")
    for k, v in value.items():  # a loop, not all(<generator>): this is the hot path
        if not isinstance(k, str) or not isinstance(v, str):
            raise DecodeError(f"{where} must be a map of string to string")
    return value


def _bytes(value: Any, where: str) -> bytes:
    if value is None:
        return b""
    if isinstance(value, str):
        return value.encode()
    if not isinstance(value, bytes):
        if isinstance(value, bytearray | memoryview):  # from an encoder's caller
            return bytes(value)
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
    query = p.get("query")
    query = "" if query is None else query
    if not isinstance(query, str):
        raise DecodeError("http-request 'query' must be the raw query string")
    return _http_request_of(
        method,
        path,
        query,
        _str_map(p.get("headers"), "http-request headers"),
        _bytes(p.get("body"), "http-request body"),
    )


def _http_response(payload: Any) -> HttpResponse:
    p = _require_map(payload, HTTP_RESPONSE)
    status = p.get("status", 200)
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise DecodeError(
            f"http-response 'status' must be an integer 100-599, got {limits.short(status)}"
        )
    return _http_response_of(
        status,
        _str_map(p.get("headers"), "http-response headers"),
        _bytes(p.get("body"), "http-response body"),
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

# Attribute names the envelope's headers never become: the CloudEvents core attributes, the
# JSON format's data_base64, and every name starting with "kf" (kubefuncs's own extensions).
_CE_CORE = frozenset(
    {"specversion", "id", "source", "type", "time", "datacontenttype", "dataschema", "subject"}
    | {"data", "data_base64"}
)
# Headers that carry a core attribute the envelope has no field for.
_CE_HEADER_ATTRS = {
    "ce-source": "source",
    "ce-type": "type",
    "ce-subject": "subject",
    "ce-dataschema": "dataschema",
}
# A header becomes an extension attribute of the same name only when the name is a valid
# one that is also short (CloudEvents: a-z and 0-9; SHOULD NOT exceed 20 characters) ...
_CE_EXT_NAME = re.compile(r"[a-z0-9]{1,20}")
# ... and its value a valid CloudEvents String (no control characters, surrogates or
# noncharacters). Every other header travels in the kfheaders extension, as JSON.
_CE_NOT_STRING = re.compile(
    "[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef"
    + "".join(f"{chr(p + 0xFFFE)}{chr(p + 0xFFFF)}" for p in range(0, 0x110000, 0x10000))
    + "]"
)
_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?"
    r"(?:[Zz]|([+-])([0-9]{2}):([0-9]{2}))"
)
_INTEGER = re.compile(r"-?[0-9]+")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)
_MS = timedelta(milliseconds=1)


def to_cloudevent(env: Envelope, *, source: str | None = None) -> dict[str, Any]:
    """Map an envelope to a CloudEvents 1.0 event (structured form, as a dict).

    Lossless: ``from_cloudevent(to_cloudevent(env)) == env`` for every envelope whose time
    RFC 3339 can express (years 1-9999; ValueError otherwise), when ``source`` is None.
    """
    default = {"source": f"/kubefuncs/topics/{env.topic}", "type": f"io.kubefuncs.{env.kind}"}
    ce: dict[str, Any] = {
        "specversion": "1.0",
        "id": env.id,
        "source": source or default["source"],
        "type": default["type"],
        "time": _rfc3339(env.time_ms),
        "datacontenttype": env.content_type or MSGPACK,
    }
    if isinstance(env.payload, bytes | bytearray):
        ce["data_base64"] = base64.b64encode(env.payload).decode("ascii")
    else:
        ce["data"] = payload_to_wire(env.payload)
    ce["kftopic"] = env.topic
    if env.kind != EVENT:
        ce["kfkind"] = env.kind
    if env.reply_to is not None:
        ce["kfreplyto"] = env.reply_to
    if env.correlation_id is not None:
        ce["kfcorrelationid"] = env.correlation_id
    if env.deadline_ms is not None:
        ce["kfdeadline"] = env.deadline_ms
    _headers_to_ce(env.headers, ce, default, replaced_source=bool(source))
    return ce


def _headers_to_ce(
    headers: Mapping[str, str], ce: dict[str, Any], default: dict[str, str], replaced_source: bool
) -> None:
    rest: dict[str, str] = {}
    for name, value in headers.items():
        attr = _CE_HEADER_ATTRS.get(name)
        if attr is not None:
            # from_cloudevent gives the header back from the attribute unless the attribute
            # has its default value (or the source argument replaced it)
            if (
                value
                and value != default.get(attr)
                and not (attr == "source" and replaced_source)
                and not _CE_NOT_STRING.search(value)
            ):
                ce[attr] = value
                continue
        elif (
            _CE_EXT_NAME.fullmatch(name)
            and name not in _CE_CORE
            and not name.startswith("kf")
            and not _CE_NOT_STRING.search(value)
        ):
            ce[name] = value
            continue
        rest[name] = value
    if rest:
        ce["kfheaders"] = json.dumps(rest, separators=(",", ":"))  # ASCII: a valid String


def from_cloudevent(ce: Mapping[str, Any], *, topic: str | None = None) -> Envelope:
    """Build an envelope from a CloudEvents 1.0 event in structured form (a dict as read from
    the JSON format). The kind is ``kfkind``, else ``event``. Raises :class:`DecodeError`,
    also for an event ``encode`` would refuse (the limits of docs/protocol.md included)."""
    env = _from_cloudevent(ce, topic)
    try:
        encode(env)
    except EncodeError as e:
        raise DecodeError(f"the CloudEvent makes no valid envelope: {e}") from None
    return env


def _from_cloudevent(ce: Mapping[str, Any], topic: str | None) -> Envelope:
    if not isinstance(ce, Mapping):
        raise DecodeError(f"a CloudEvent must be a map, got {type(ce).__name__}")
    for key in ("id", "source", "type"):
        if not isinstance(ce.get(key), str) or not ce[key]:
            raise DecodeError(f"CloudEvent attribute {key!r} is missing or not a non-empty string")
    kftopic = _ce_str(ce, "kftopic")
    kind = _ce_str(ce, "kfkind") or EVENT
    time_ms = now_ms() if ce.get("time") is None else _parse_rfc3339(ce["time"])
    if ce.get("data_base64") is not None:
        if ce.get("data") is not None:
            raise DecodeError("a CloudEvent has either 'data' or 'data_base64', not both")
        payload: Any = _base64(ce["data_base64"])
    else:
        payload = ce.get("data")
    return Envelope(
        id=ce["id"],
        topic=topic or kftopic or "",
        kind=kind,
        payload=_payload(kind, payload),
        time_ms=time_ms,
        content_type=_ce_str(ce, "datacontenttype") or MSGPACK,
        reply_to=_ce_str(ce, "kfreplyto"),
        correlation_id=_ce_str(ce, "kfcorrelationid"),
        deadline_ms=_ce_int(ce, "kfdeadline"),
        headers=_headers_from_ce(ce, kind, kftopic),
    )


def _headers_from_ce(ce: Mapping[str, Any], kind: str, kftopic: str | None) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in ce.items():
        if not isinstance(name, str):
            raise DecodeError(f"CloudEvent attribute names are strings, got {limits.short(name)}")
        if name not in _CE_CORE and not name.startswith("kf") and value is not None:
            headers[name] = _ce_value(name, value)
    default = {"type": f"io.kubefuncs.{kind}"}
    if kftopic is not None:
        default["source"] = f"/kubefuncs/topics/{kftopic}"
    for header, attr in _CE_HEADER_ATTRS.items():
        value = _ce_str(ce, attr)
        if value is not None and value != default.get(attr):
            headers[header] = value
    headers.update(_kfheaders(ce.get("kfheaders")))  # exact names and values: they win
    return headers


def _rfc3339(ms: int) -> str:
    try:
        when = _EPOCH + timedelta(milliseconds=ms)
    except OverflowError:
        raise ValueError(f"time {ms} (unix ms) is outside what RFC 3339 can express") from None
    return when.isoformat().replace("+00:00", "Z")


def _parse_rfc3339(text: Any) -> int:
    """Unix ms of an RFC 3339 date-time; the offset (Z or +hh:mm) is required."""
    m = _RFC3339.fullmatch(text) if isinstance(text, str) else None
    if m is None:
        raise DecodeError(f"CloudEvent 'time' is not RFC 3339 with an offset: {limits.short(text)}")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    fraction, sign, off_h, off_m = m.group(7, 8, 9, 10)
    millis = int((fraction or "").ljust(3, "0")[:3])
    if second == 60:  # a leap second: unix time has none, take the last ms before it
        second, millis = 59, 999
    try:
        ms = (datetime(year, month, day, hour, minute, second) - _NAIVE_EPOCH) // _MS
    except ValueError as e:
        raise DecodeError(f"CloudEvent 'time' is not RFC 3339: {limits.short(text)} ({e})") from e
    if sign is not None:
        if int(off_h) > 23 or int(off_m) > 59:
            raise DecodeError(
                f"CloudEvent 'time' is not RFC 3339: {limits.short(text)} (bad offset)"
            )
        offset = (int(off_h) * 60 + int(off_m)) * 60_000
        ms -= offset if sign == "+" else -offset
    return ms + millis


def _ce_str(ce: Mapping[str, Any], key: str) -> str | None:
    value = ce.get(key)
    if value is not None and not isinstance(value, str):
        raise DecodeError(
            f"CloudEvent attribute {key!r} must be a string, got {limits.short(value)}"
        )
    return value


def _ce_int(ce: Mapping[str, Any], key: str) -> int | None:
    value = ce.get(key)
    if value is None or (value.__class__ is int):
        return value
    if isinstance(value, str) and len(value) <= 21 and _INTEGER.fullmatch(value):
        return int(value)  # a string, e.g. after HTTP binary mode; 21 digits: past 2**64
    raise DecodeError(f"CloudEvent attribute {key!r} must be an integer, got {limits.short(value)}")


def _ce_value(name: str, value: Any) -> str:
    """An extension attribute's value as a header value."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) and -(2**63) <= value < 2**64:
        return str(value)
    raise DecodeError(
        f"CloudEvent attribute {name!r} must be a string, integer or boolean,"
        f" got {limits.short(value)}"
    )


def _kfheaders(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    try:
        headers = json.loads(value) if isinstance(value, str) else None
    except (ValueError, RecursionError):  # json.loads recurses: deep JSON is a RecursionError
        headers = None
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise DecodeError("CloudEvent attribute 'kfheaders' must be a JSON object of strings")
    return headers


def _base64(value: Any) -> bytes:
    try:
        if isinstance(value, str):
            return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        pass
    raise DecodeError("CloudEvent 'data_base64' must be a base64 string")
