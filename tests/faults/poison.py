"""Poison entries: every field of a stream entry and of the envelope, broken every way.

Each case is a name and the entry's fields (Valkey: ``m``, ``a``, anything else; NSQ
carries the body ``m`` alone). Every ``m`` is unique (a ``nonce`` key, which decoders
ignore, or random bytes), so its dead letter can be found by its body. A case whose
envelope would otherwise pass names an event id ``poison-...``: if the handler ever runs
it, the function notes it and the scenario sees it (requests with a bad ``reply_to`` are
``reply-to-...``: running the handler is right for them, the reply is what must fail).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgpack
from kubefuncs import wire

from tests.faults.stack import TOPIC

DEEP = 1000  # levels: beyond Python's recursion limit, within msgpack's own stack (1024)
HUGE_BYTES = 64 * 1024 * 1024 + 1  # one byte over the contract's body limit
Fields = dict[str, bytes]
_DROP = object()  # a key to leave out


def envelope(*, label: str = "poison", **changes: Any) -> dict[str, Any]:
    """A valid event envelope as a plain map, with ``changes`` (``_DROP`` drops a key)."""
    raw = wire.to_wire(wire.make(TOPIC, {"id": f"{label}-{wire.new_id()}"}))
    raw["nonce"] = wire.new_id()
    for key, value in changes.items():
        if value is _DROP:
            raw.pop(key, None)
        else:
            raw[key] = value
    return raw


def pack(raw: Any) -> bytes:
    return bytes(msgpack.packb(raw, use_bin_type=True))


def _with_raw_payload(raw_payload: bytes) -> bytes:
    """An envelope whose payload is ``raw_payload``, msgpack bytes written by hand."""
    raw = envelope(payload=_DROP)
    head = pack(raw)
    assert head[0] & 0xF0 == 0x80  # a fixmap: the payload is one more entry
    return bytes([head[0] + 1]) + head[1:] + pack("payload") + raw_payload


PLACEHOLDER = "QQQQQQQQ"


def _with_bad_utf8(**changes: Any) -> bytes:
    """An envelope with ``changes``, where the string PLACEHOLDER becomes invalid UTF-8."""
    body = pack(envelope(**changes))
    assert pack(PLACEHOLDER) in body
    return body.replace(pack(PLACEHOLDER), b"\xa8" + b"\xff\xfe" * 4, 1)


def _good(**changes: Any) -> Fields:
    return {"m": pack(envelope(**changes))}


def _request(reply_to: str) -> Fields:
    # the handler runs these (the reply is what fails): their events are not "poison-"
    return {"m": pack(envelope(label="reply-to", kind="request", reply_to=reply_to))}


def _entry_field_cases() -> Iterator[tuple[str, Fields]]:
    """Broken stream entries around a valid envelope (Valkey only)."""
    for value in (b"x", b"", b"1.5", b"\xff\xfe", b"1e3", b"0x10"):
        yield f"a={value!r}", {**_good(), "a": value}
    yield "no m", {"x": wire.new_id().encode()}
    yield "m empty", {"m": b"", "nonce": wire.new_id().encode()}


def _body_cases() -> Iterator[tuple[str, bytes]]:
    """Bodies that are not an envelope at all."""
    yield "never-used msgpack byte", b"\xc1" + wire.new_id().encode()
    yield "not msgpack", b"GET / HTTP/1.1\r\n" + wire.new_id().encode()
    valid = pack(envelope())
    yield "truncated", valid[:-3]
    yield "trailing bytes", valid + b"\x00"
    for name, value in (("list", [wire.new_id()]), ("int", 7), ("str", wire.new_id())):
        yield f"top level {name}", pack(value)
    yield "top level bin", pack(wire.new_id().encode())
    yield "ext type", pack(msgpack.ExtType(5, wire.new_id().encode()))


def _field_type_cases() -> Iterator[tuple[str, dict[str, Any]]]:
    """Every envelope field with a value of the wrong type, or missing."""
    wrong: dict[str, list[Any]] = {
        "v": ["1", 2, 1.0, True, None, _DROP],
        "id": [5, "", None, [], _DROP],
        "kind": [5, "", None, _DROP],
        "topic": [5, ["t"]],
        "time": ["x", 1.5, True, {}],
        "deadline": ["x", 1.5, []],
        "content_type": [5, b"x"],
        "reply_to": [5, ["a"]],
        "correlation_id": [5, {}],
        "headers": [[1], {"a": 1}, "x", {"a": None}],
    }
    for key, values in wrong.items():
        for value in values:
            shown = "missing" if value is _DROP else repr(value)
            yield f"{key}={shown}", {key: value}


def _payload_cases(huge: bool) -> Iterator[tuple[str, bytes]]:
    deep_list = b"\x91" * DEEP + b"\xc0"
    yield f"payload nested {DEEP} deep", _with_raw_payload(deep_list)
    yield "payload nested past msgpack's stack", _with_raw_payload(b"\x91" * 100_000 + b"\xc0")
    yield "payload int key", pack(envelope(payload={1: 2}))
    yield "payload bin key", pack(envelope(payload={b"k": 2}))
    yield "non-UTF-8 id", _with_bad_utf8(id=PLACEHOLDER)
    yield "non-UTF-8 kind", _with_bad_utf8(kind=PLACEHOLDER)
    yield "non-UTF-8 header value", _with_bad_utf8(headers={"h": PLACEHOLDER})
    yield "non-UTF-8 header name", _with_bad_utf8(headers={PLACEHOLDER: "h"})
    yield "non-UTF-8 payload string", _with_bad_utf8(payload={"id": "x", "s": PLACEHOLDER})
    if huge:
        yield "body over 64 MiB", pack(envelope(payload=b"\x00" * HUGE_BYTES))


def _kind_cases() -> Iterator[tuple[str, dict[str, Any]]]:
    for kind in ("reply", "http-response", "error", "no-such-kind"):
        yield f"kind={kind}", {"kind": kind}
    request = {"method": "GET", "path": "/p"}
    for name, payload in (
        ("not a map", 5),
        ("method int", {**request, "method": 5}),
        ("no path", {"method": "GET"}),
        ("headers not str", {**request, "headers": {"a": 1}}),
        ("body int", {**request, "body": 5}),
        ("query int", {**request, "query": 5}),
    ):
        yield f"http-request {name}", {"kind": "http-request", "payload": payload}


def cases(*, entry_fields: bool, huge: bool) -> list[tuple[str, Fields]]:
    """Every poison case; ``entry_fields`` adds broken stream fields (Valkey), ``huge`` a
    body over the size limit (NSQ refuses those at publish)."""
    out: list[tuple[str, Fields]] = list(_entry_field_cases()) if entry_fields else []
    out += [(name, {"m": body}) for name, body in _body_cases()]
    out += [(name, _good(**changes)) for name, changes in _field_type_cases()]
    out += [(name, _good(**changes)) for name, changes in _kind_cases()]
    out += [(name, {"m": body}) for name, body in _payload_cases(huge)]
    return out


def reply_to_cases(addresses: dict[str, str]) -> list[tuple[str, Fields]]:
    """Requests whose ``reply_to`` the function must refuse or cannot reach."""
    return [(f"reply_to {name}", _request(address)) for name, address in addresses.items()]
