"""Decoding limits and hostile field values (docs/protocol.md, "Limits").

Every broken body gives DecodeError naming the field, never another exception; the encoder
refuses what the decoder would refuse, with EncodeError.
"""

from __future__ import annotations

import json
import re
from typing import Any

import msgpack
import pytest
from kubefuncs import wire
from kubefuncs.errors import DecodeError, EncodeError, KubefuncsError


def s(text: str) -> bytes:
    """A msgpack str (fixstr or str8)."""
    data = text.encode()
    return (bytes([0xA0 | len(data)]) if len(data) < 32 else b"\xd9" + bytes([len(data)])) + data


def body_of(fields: dict[str, bytes]) -> bytes:
    """A msgpack map of str keys to raw msgpack values (so values msgpack would not write
    can be put in: bad UTF-8, ext types)."""
    assert len(fields) < 16
    return bytes([0x80 | len(fields)]) + b"".join(s(k) + v for k, v in fields.items())


BASE = {"v": b"\x01", "id": s("a"), "kind": s("event")}


def envelope_with(field: str, value: bytes) -> bytes:
    return body_of(BASE | {field: value})


def deep_array(levels: int) -> bytes:
    return b"\x91" * levels + b"\xc0"


def deep_map(levels: int) -> bytes:
    return (b"\x81" + s("k")) * levels + b"\xc0"


# -- depth ---------------------------------------------------------------------------------


@pytest.mark.parametrize("levels", [65, 1000, 1023, 100_000])
@pytest.mark.parametrize("nest", [deep_array, deep_map], ids=["arrays", "maps"])
def test_a_payload_nested_too_deep_is_a_decode_error(levels: int, nest: Any) -> None:
    # Given a payload nested deeper than the limit (100 000: past msgpack's own stack)
    body = envelope_with("payload", nest(levels))
    # Then decoding says so, naming the field
    with pytest.raises(DecodeError, match="envelope field 'payload' is nested deeper than 64"):
        wire.decode(body)


def test_a_deep_payload_with_bin_bytes_is_a_decode_error_not_a_recursion_error() -> None:
    # Before: the bin-key walk recursed once per level and raised RecursionError at ~1000
    body = body_of(BASE | {"x": b"\xc4\x00", "payload": deep_array(1000)})
    with pytest.raises(DecodeError, match="'payload' is nested deeper than 64 levels"):
        wire.decode(body)


def test_a_payload_64_levels_deep_is_accepted() -> None:
    env = wire.decode(envelope_with("payload", deep_array(64)))
    depth, value = 0, env.payload
    while isinstance(value, list):
        depth, value = depth + 1, value[0]
    assert depth == 64


HTTP = {"method": s("GET"), "path": s("/")}


@pytest.mark.parametrize(
    ("kind", "payload", "field"),
    [
        ("event", {}, "headers"),
        ("http-request", HTTP | {"headers": deep_map(70)}, "http-request headers"),
        ("http-request", HTTP | {"query": deep_array(70)}, "http-request 'query'"),
        ("http-request", HTTP | {"extra": deep_array(2000)}, "envelope field 'payload'"),
        ("error", {"type": s("E"), "details": deep_map(500)}, "envelope field 'payload'"),
        ("error", {"type": s("E"), "retryable": deep_array(100)}, "envelope field 'payload'"),
    ],
    ids=["headers", "http-headers", "http-query", "http-unknown", "error-details", "retryable"],
)
def test_deep_values_anywhere_are_decode_errors_naming_the_field(
    kind: str, payload: dict[str, bytes], field: str
) -> None:
    fields = BASE | {"kind": s(kind)}
    fields |= {"headers": deep_map(100_000)} if field == "headers" else {}
    fields |= {"payload": body_of(payload)} if payload else {}
    with pytest.raises(DecodeError) as caught:
        wire.decode(body_of(fields))
    assert field in str(caught.value)


def test_an_unknown_field_nested_too_deep_is_named() -> None:
    with pytest.raises(DecodeError, match="envelope field 'later' is nested deeper than 64"):
        wire.decode(envelope_with("later", deep_array(100_000)))


def test_a_deep_array_as_the_body_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="body is nested deeper than 64 levels"):
        wire.decode(deep_array(100_000))


# -- elements and size ---------------------------------------------------------------------


def test_a_body_of_too_many_elements_is_refused_before_it_is_built() -> None:
    # Given 1.1 M empty arrays in one payload (1.1 MB that would take ~80 MB as objects)
    n = 1_100_000
    body = envelope_with("payload", b"\xdd" + n.to_bytes(4, "big") + b"\x90" * n)
    with pytest.raises(DecodeError, match="body has more than 1000000 elements"):
        wire.decode(body)


def test_an_array_header_longer_than_the_limit_is_refused() -> None:
    n = 2_000_000  # the header claims it, the body is shorter
    body = envelope_with("payload", b"\xdd" + n.to_bytes(4, "big") + b"\xc0" * 1_000_100)
    with pytest.raises(DecodeError, match="more than 1000000 elements"):
        wire.decode(body)


def test_a_body_just_within_the_element_limit_decodes() -> None:
    n = wire.MAX_ELEMENTS - 2 * len(BASE) - 2  # the envelope's keys and values count
    body = envelope_with("payload", b"\xdd" + n.to_bytes(4, "big") + b"\xc0" * n)
    assert len(wire.decode(body).payload) == n


def test_a_huge_wrong_value_gives_a_short_error_message() -> None:
    # repr() of a 10 MB value (or a deeply nested one) would be slow or recursive
    with pytest.raises(DecodeError) as caught:
        wire.decode(envelope_with("id", b"\xc6" + (10**7).to_bytes(4, "big") + b"x" * 10**7))
    assert len(str(caught.value)) < 200


# -- every field, every type ---------------------------------------------------------------

VALUES = {
    "int": b"\x05",
    "zero": b"\x00",
    "negative": b"\xff",
    "int64 min": b"\xd3\x80" + b"\x00" * 7,
    "uint64 max": b"\xcf" + b"\xff" * 8,
    "float": b"\xcb\x3f\xf8" + b"\x00" * 6,  # 1.5
    "NaN": b"\xcb\x7f\xf8" + b"\x00" * 6,
    "inf": b"\xcb\x7f\xf0" + b"\x00" * 6,
    "true": b"\xc3",
    "false": b"\xc2",
    "bin": b"\xc4\x01x",
    "str": s("x"),
    "empty str": b"\xa0",
    "non-UTF-8 str": b"\xa2\xff\xfe",
    "lone surrogate": b"\xa3\xed\xa0\x80",  # "\ud800" as CESU-8: not UTF-8
    "nil": b"\xc0",
    "array": b"\x91\x01",
    "map": b"\x81" + s("a") + b"\x01",
    "map with int key": b"\x81\x01\x01",
    "map with bin key": b"\x81\xc4\x01k\x01",
    "ext": b"\xd4\x05\x00",
    "timestamp": b"\xd6\xff\x00\x00\x00\x01",
    "deep": deep_array(200),
}
ANY = set(VALUES) - {"non-UTF-8 str", "lone surrogate", "ext", "timestamp", "deep"}
ANY -= {"map with int key", "map with bin key"}
INTS = {"int", "zero", "negative", "int64 min", "uint64 max"}
# What each field accepts (docs/protocol.md, 1 and 2); every other value is malformed.
ACCEPTS: dict[str, set[str]] = {
    "v": set(),
    "id": {"str"},
    "kind": {"str"},
    "topic": {"str", "empty str", "nil"},
    "content_type": {"str", "empty str", "nil"},
    "reply_to": {"str", "empty str", "nil"},
    "correlation_id": {"str", "empty str", "nil"},
    "time": INTS | {"nil"},
    "deadline": INTS | {"nil"},
    "headers": {"nil"},
    "payload": ANY,
    "http-request.method": {"str", "empty str"},
    "http-request.path": {"str", "empty str"},
    "http-request.query": {"str", "empty str", "nil"},
    "http-request.headers": {"nil"},
    "http-request.body": {"bin", "str", "empty str", "nil"},
    "http-response.status": set(),
    "http-response.headers": {"nil"},
    "http-response.body": {"bin", "str", "empty str", "nil"},
    "error.type": {"str", "empty str"},
    "error.message": {"str", "empty str"},
    "error.status": INTS | {"nil"},
    "error.retryable": ANY,
}
STRUCTURED = {
    "http-request": HTTP,
    "http-response": {"status": b"\xcc\xc8"},
    "error": {"type": s("E")},
}


def body_with(field: str, value: bytes) -> bytes:
    if "." not in field:
        return envelope_with(field, value)
    kind, key = field.split(".")
    payload = body_of(STRUCTURED[kind] | {key: value})
    return body_of(BASE | {"kind": s(kind), "payload": payload})


def names_the_field(message: str, field: str) -> bool:
    if "." not in field:
        return f"'{field}'" in message or message.startswith(f"{field} ")
    kind, key = field.split(".")
    return bool(re.search(rf"'{key}'|{kind} {key}|'payload'", message))


CASES = [(f, v) for f in ACCEPTS for v in VALUES]


@pytest.mark.parametrize(("field", "value"), CASES, ids=[f"{f}={v}" for f, v in CASES])
def test_every_field_takes_its_types_and_names_itself_when_it_refuses(
    field: str, value: str
) -> None:
    # Given an envelope whose one field holds a value of some type
    body = body_with(field, VALUES[value])
    # When it is decoded
    try:
        wire.decode(body)
    except DecodeError as e:
        # Then a refused value is a DecodeError naming the field
        assert value not in ACCEPTS[field], f"{field}={value} refused: {e}"
        assert names_the_field(str(e), field), str(e)
    else:
        assert value in ACCEPTS[field], f"{field}={value} accepted"


def test_negative_and_uint64_times_keep_their_values() -> None:
    env = wire.decode(body_of(BASE | {"time": b"\xff", "deadline": b"\xcf" + b"\xff" * 8}))
    assert (env.time_ms, env.deadline_ms) == (-1, 2**64 - 1)
    assert env.expired(at_ms=0) is False
    assert wire.decode(wire.encode(env)) == env


# -- encoding refuses what decoding refuses ------------------------------------------------


def nested(levels: int) -> Any:
    value: Any = None
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (nested(65), "envelope field 'payload' is nested deeper than 64 levels"),
        (nested(600), "envelope field 'payload' is nested deeper than 64 levels"),  # msgpack: 512
        ({"a": [{1: "x"}]}, "string keys (every map key in a message), got a key of type int"),
        ({b"k": 1}, "got a key of type bin"),
        (msgpack.ExtType(5, b""), "holds a msgpack extension type (ext 5)"),
        ([2**64], "envelope field 'payload': the integer 18446744073709551616 is outside"),
        ({"x": -(2**63) - 1}, "is outside msgpack's range"),
        (["\ud800"], "envelope field 'payload': a string holds a lone surrogate"),
        ({1, 2}, "envelope field 'payload': a set has no msgpack form"),
    ],
    ids=["65", "600", "int-key", "bin-key", "ext", "2**64", "-2**63-1", "surrogate", "set"],
)
def test_encode_refuses_what_no_consumer_would_decode(payload: Any, message: str) -> None:
    env = wire.make("t", payload)
    with pytest.raises(EncodeError, match=re.escape(message)):
        wire.encode(env)
    request = wire.make("t", "x", kind=wire.REQUEST, reply_to="r")
    with pytest.raises(EncodeError, match=re.escape(message)):
        wire.encode_reply(request, payload)


def test_encode_error_is_a_kubefuncs_error_and_a_value_error() -> None:
    assert issubclass(EncodeError, KubefuncsError) and issubclass(EncodeError, ValueError)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"id": ""}, "envelope field 'id' must be a non-empty string"),
        ({"headers": {"a": 1}}, "headers must be a map of string to string"),
        ({"headers": {"a": "\udcff"}}, "envelope field 'headers': a string holds a lone"),
        ({"time_ms": 2**64}, "envelope field 'time': the integer 18446744073709551616"),
        ({"deadline_ms": 1.5}, "envelope field 'deadline' must be an integer"),
    ],
    ids=["id", "headers", "header-surrogate", "time", "deadline"],
)
def test_encode_refuses_bad_envelope_fields(change: dict[str, Any], message: str) -> None:
    fields = {"id": "a", "topic": "t", "kind": wire.EVENT} | change
    with pytest.raises(EncodeError, match=re.escape(message)):
        wire.encode(wire.Envelope(**fields))


def test_encode_refuses_a_structured_payload_the_decoder_would_refuse() -> None:
    env = wire.make("r", wire.HttpResponse(200, {"x": 1}), kind=wire.HTTP_RESPONSE)  # type: ignore[dict-item]
    with pytest.raises(EncodeError, match="http-response headers must be a map"):
        wire.encode(env)


def test_the_fast_http_request_encoder_names_a_bad_header() -> None:
    # aiohttp gives non-UTF-8 header bytes as lone surrogates (surrogateescape)
    request = ("GET", "/", "", {"x-bad": "\udcff"}, b"")
    with pytest.raises(EncodeError, match="envelope field 'payload': a string holds a lone"):
        wire.encode_http_request(
            "a", "t", request, time_ms=0, reply_to=None, deadline_ms=None, headers={}
        )


def test_encode_refuses_a_body_over_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wire, "_MAX_BODY_BYTES", 100)
    with pytest.raises(EncodeError, match="over the 100 limit"):
        wire.encode(wire.make("t", b"x" * 100))


def test_encode_refuses_too_many_elements() -> None:
    with pytest.raises(EncodeError, match="more than 1000000 elements"):
        wire.encode(wire.make("t", [[]] * 1_000_001))


# -- CloudEvents ---------------------------------------------------------------------------

CE = {"specversion": "1.0", "id": "a", "source": "/s", "type": "t"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"data": nested(100)}, "envelope field 'payload' is nested deeper than 64"),
        ({"data": [2**64]}, "the integer 18446744073709551616 is outside"),
        ({"kfheaders": "[" * 100_000 + "]" * 100_000}, "'kfheaders' must be a JSON object"),
        ({"kfdeadline": "9" * 5000}, "'kfdeadline' must be an integer"),
        ({"kfdeadline": 2**64}, "envelope field 'deadline': the integer"),
        ({"ext1": 10**5000}, "'ext1' must be a string, integer or boolean"),
        ({"ext1": "\ud800"}, "envelope field 'headers': a string holds a lone surrogate"),
    ],
    ids=["deep", "2**64", "kfheaders", "digits", "deadline", "big-ext", "surrogate"],
)
def test_from_cloudevent_refuses_what_encode_would_refuse(
    change: dict[str, Any], message: str
) -> None:
    with pytest.raises(DecodeError, match=re.escape(message)):
        wire.from_cloudevent(CE | change)


def test_from_cloudevent_of_deep_json_data_is_a_decode_error() -> None:
    ce = json.loads(json.dumps(CE | {"data": nested(500)}))
    with pytest.raises(DecodeError, match="nested deeper than 64 levels"):
        wire.from_cloudevent(ce)
