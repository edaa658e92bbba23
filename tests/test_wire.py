"""Wire contract v1: the frozen test vectors (tests/vectors/envelopes.json) and wire.py.

The vectors are the contract other languages check too (example/node/test/); never
regenerate them to make a failing test pass: a change here is a change of the protocol.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import msgpack
import pytest
from kubefuncs import wire
from kubefuncs.errors import DecodeError

VECTORS_PATH = Path(__file__).parent / "vectors" / "envelopes.json"
VECTORS: list[dict[str, Any]] = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))
VALID = [v for v in VECTORS if v["valid"]]
INVALID = [v for v in VECTORS if not v["valid"]]
TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def from_json(value: Any) -> Any:
    """The vectors' JSON form back to Python values: {"$bin": base64} is bytes."""
    if isinstance(value, dict):
        if set(value) == {"$bin"}:
            return base64.b64decode(value["$bin"])
        return {k: from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_json(v) for v in value]
    return value


def names(vectors: list[dict[str, Any]]) -> list[str]:
    return [v["name"] for v in vectors]


# -- the vector file itself ----------------------------------------------------------------


def test_vector_names_are_unique() -> None:
    assert len(set(names(VECTORS))) == len(VECTORS)


def test_vectors_cover_every_kind() -> None:
    kinds = {v["json"]["kind"] for v in VALID}
    assert kinds == wire.KINDS


# -- valid vectors -------------------------------------------------------------------------


@pytest.mark.parametrize("vector", VALID, ids=names(VALID))
def test_valid_vector_is_the_documented_msgpack_map(vector: dict[str, Any]) -> None:
    # Given the bytes of a valid vector
    body = bytes.fromhex(vector["hex"])
    # When any msgpack library reads them
    # Then it sees exactly the map the vector's JSON shows
    assert msgpack.unpackb(body) == from_json(vector["json"])


@pytest.mark.parametrize("vector", VALID, ids=names(VALID))
def test_valid_vector_decodes_to_its_envelope(vector: dict[str, Any]) -> None:
    env = wire.decode(bytes.fromhex(vector["hex"]))
    assert wire.to_wire(env) == from_json(vector["envelope"])


@pytest.mark.parametrize("vector", VALID, ids=names(VALID))
def test_valid_vector_survives_an_encode_round_trip(vector: dict[str, Any]) -> None:
    body = bytes.fromhex(vector["hex"])
    env = wire.decode(body)
    again = wire.encode(env)
    assert wire.decode(again) == env
    if vector["canonical"]:
        assert again == body


# -- invalid vectors -----------------------------------------------------------------------


@pytest.mark.parametrize("vector", INVALID, ids=names(INVALID))
def test_invalid_vector_raises_decode_error(vector: dict[str, Any]) -> None:
    with pytest.raises(DecodeError) as caught:
        wire.decode(bytes.fromhex(vector["hex"]))
    assert vector["error"] in str(caught.value)


@pytest.mark.parametrize("v", [1.0, 1.5, True, "1", None], ids=repr)
def test_version_must_be_the_integer_1(v: Any) -> None:
    # 1.0 is not in the vectors: JavaScript cannot tell it from 1 (docs/protocol.md, 1)
    raw = {"v": v, "id": "a", "kind": wire.EVENT}
    with pytest.raises(DecodeError, match="unsupported envelope version"):
        wire.decode(msgpack.packb(raw))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("topic", 5, "envelope field 'topic' must be a string or nil, got 5"),
        ("reply_to", b"x", "envelope field 'reply_to' must be a string or nil, got b'x'"),
        ("id", "", "envelope field 'id' must be a non-empty string, got ''"),
        ("kind", 3, "envelope field 'kind' must be a non-empty string, got 3"),
        ("time", 1.5, "envelope field 'time' must be an integer (unix ms) or nil, got 1.5"),
    ],
)
def test_field_errors_say_what_is_accepted(field: str, value: Any, message: str) -> None:
    raw = {"v": 1, "id": "a", "kind": wire.EVENT, field: value}
    with pytest.raises(DecodeError) as caught:
        wire.decode(msgpack.packb(raw, use_bin_type=True))
    assert str(caught.value) == message


def test_optional_string_fields_accept_empty_strings() -> None:
    raw = {"v": 1, "id": "a", "kind": wire.REQUEST, "topic": "", "reply_to": ""}
    raw |= {"correlation_id": "", "content_type": ""}
    env = wire.decode(msgpack.packb(raw))
    assert (env.topic, env.reply_to, env.correlation_id, env.content_type) == (
        "",
        "",
        "",
        wire.MSGPACK,
    )


def test_an_unknown_kind_is_decoded_and_its_payload_passed_through() -> None:
    # forward compatibility: the decoder accepts it; a function dead-letters it
    raw = {"v": 1, "id": "a", "kind": "x-future", "payload": {"any": ["thing"]}}
    env = wire.decode(msgpack.packb(raw))
    assert (env.kind, env.payload) == ("x-future", {"any": ["thing"]})
    assert env.kind not in wire.SERVED_KINDS


def test_a_function_serves_events_requests_and_http_requests() -> None:
    assert wire.SERVED_KINDS == {wire.EVENT, wire.REQUEST, wire.HTTP_REQUEST} < wire.KINDS


@pytest.mark.parametrize(
    ("payload", "key_type"),
    [({1: "x"}, "int"), ({None: "x"}, "nil"), ({1.5: "x"}, "float"), ({b"k": "x"}, "bin")],
    ids=repr,
)
def test_a_non_string_map_key_is_named_in_the_error(payload: Any, key_type: str) -> None:
    body = msgpack.packb(
        {"v": 1, "id": "a", "kind": wire.EVENT, "payload": payload}, use_bin_type=True
    )
    with pytest.raises(DecodeError) as caught:
        wire.decode(body)
    assert str(caught.value) == (
        "payload maps must have string keys (every map key in a message), got a key of type "
        + key_type
        + ", in envelope field 'payload'"
    )


@pytest.mark.parametrize(
    "payload",
    [
        {"bin": b"\xc4\xc5\xc6", "list": [b"x", {"b": b"y"}]},  # bin values, str keys
        wire.HttpRequest("POST", "/", headers={"a": "b"}, body=b"\xc4" * 300),
    ],
    ids=["map", "http-request"],
)
def test_bin_values_are_not_bin_keys(payload: Any) -> None:
    kind = wire.HTTP_REQUEST if isinstance(payload, wire.HttpRequest) else wire.EVENT
    env = wire.make("t", payload, kind=kind)
    assert wire.decode(wire.encode(env)) == env


def test_decode_rejects_what_is_not_bytes() -> None:
    with pytest.raises(DecodeError, match="must be bytes"):
        wire.decode("not bytes")  # type: ignore[arg-type]


def test_decode_rejects_a_body_over_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    body = wire.encode(wire.make("t", "x" * 20))
    monkeypatch.setattr(wire, "_MAX_BODY_BYTES", 16)
    with pytest.raises(DecodeError, match="over the 16 limit"):
        wire.decode(body)


# -- building envelopes --------------------------------------------------------------------


def test_make_fills_id_and_time() -> None:
    before = wire.now_ms()
    env = wire.make("orders", {"n": 1})
    assert len(env.id) == 32 and int(env.id, 16) >= 0
    assert before <= env.time_ms <= wire.now_ms()
    assert (env.kind, env.content_type, env.reply_to, env.deadline_ms) == (
        wire.EVENT,
        wire.MSGPACK,
        None,
        None,
    )


def test_ids_are_unique() -> None:
    assert len({wire.new_id() for _ in range(1000)}) == 1000


def test_encode_writes_every_field_in_a_fixed_order() -> None:
    raw = msgpack.unpackb(wire.encode(wire.make("t", None)))
    assert list(raw) == [
        "v", "id", "topic", "kind", "time", "content_type",
        "reply_to", "correlation_id", "deadline", "headers", "payload",
    ]  # fmt: skip


def test_encode_omits_a_missing_error_status() -> None:
    env = wire.make("r", wire.ErrorInfo("E", "m"), kind=wire.ERROR)
    assert msgpack.unpackb(wire.encode(env))["payload"] == {
        "type": "E",
        "message": "m",
        "retryable": False,
    }


# -- deadlines -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("deadline_ms", "at_ms", "expired"),
    [(None, 10**15, False), (1000, 999, False), (1000, 1000, False), (1000, 1001, True)],
)
def test_expired_only_strictly_after_the_deadline(
    deadline_ms: int | None, at_ms: int, expired: bool
) -> None:
    env = wire.make("t", None, deadline_ms=deadline_ms)
    assert env.expired(at_ms) is expired


def test_expired_uses_the_clock_by_default() -> None:
    assert wire.make("t", None, deadline_ms=wire.now_ms() - 1).expired()
    assert not wire.make("t", None, deadline_ms=wire.now_ms() + 60_000).expired()


# -- replies -------------------------------------------------------------------------------


def request() -> wire.Envelope:
    return wire.make(
        "upper",
        "hi",
        kind=wire.REQUEST,
        reply_to="kf:reply:abc",
        deadline_ms=wire.now_ms() + 1000,
        headers={"traceparent": TP, "tracestate": "v=1", "x-tenant": "acme"},
    )


def test_reply_for_addresses_and_correlates() -> None:
    req = request()
    reply = wire.reply_for(req, "HI")
    assert (reply.topic, reply.correlation_id, reply.kind, reply.payload) == (
        "kf:reply:abc",
        req.id,
        wire.REPLY,
        "HI",
    )
    assert reply.id != req.id
    assert reply.reply_to is None and reply.deadline_ms is None


def test_reply_for_carries_only_the_trace_context() -> None:
    reply = wire.reply_for(request(), None)
    assert dict(reply.headers) == {"traceparent": TP, "tracestate": "v=1"}


def test_reply_for_takes_the_reply_kind() -> None:
    info = wire.ErrorInfo("ValueError", "bad", status=400)
    reply = wire.decode(wire.encode(wire.reply_for(request(), info, kind=wire.ERROR)))
    assert reply.kind == wire.ERROR and reply.payload == info


# -- CloudEvents ---------------------------------------------------------------------------


def test_to_cloudevent_maps_the_core_attributes() -> None:
    env = wire.make("orders", {"n": 1}, headers={"traceparent": TP, "x-tenant": "acme"})
    env = wire.Envelope(**{**_fields(env), "time_ms": 1_700_000_000_123})
    ce = wire.to_cloudevent(env)
    assert ce == {
        "specversion": "1.0",
        "id": env.id,
        "source": "/kubefuncs/topics/orders",
        "type": "io.kubefuncs.event",
        "time": "2023-11-14T22:13:20.123000Z",
        "datacontenttype": wire.MSGPACK,
        "data": {"n": 1},
        "kftopic": "orders",
        "traceparent": TP,
        # not a valid attribute name: kept, exactly, in the kfheaders extension
        "kfheaders": '{"x-tenant":"acme"}',
    }


def test_to_cloudevent_maps_reply_fields_to_extensions() -> None:
    ce = wire.to_cloudevent(request(), source="/my/app")
    assert ce["source"] == "/my/app"
    assert ce["type"] == "io.kubefuncs.request"
    assert ce["kfreplyto"] == "kf:reply:abc"
    assert isinstance(ce["kfdeadline"], int)
    reply = wire.to_cloudevent(wire.reply_for(request(), 1))
    assert reply["kfcorrelationid"]


def test_to_cloudevent_writes_payload_types_as_their_wire_maps() -> None:
    env = wire.make("h", wire.HttpResponse(201, {"a": "b"}, b"x"), kind=wire.HTTP_RESPONSE)
    assert wire.to_cloudevent(env)["data"] == {"status": 201, "headers": {"a": "b"}, "body": b"x"}


def test_from_cloudevent_builds_an_event() -> None:
    ce = {
        "specversion": "1.0",
        "id": "A234-1234-1234",
        "source": "/mycontext",
        "type": "com.example.someevent",
        "time": "2018-04-05T17:31:00Z",
        "datacontenttype": "application/json",
        "data": {"appinfoA": "abc"},
        "traceparent": TP,
        "comexampleextension1": "value",
    }
    env = wire.from_cloudevent(ce, topic="orders")
    assert (env.id, env.topic, env.kind, env.content_type) == (
        "A234-1234-1234",
        "orders",
        wire.EVENT,
        "application/json",
    )
    assert env.payload == {"appinfoA": "abc"}
    assert env.time_ms == 1_522_949_460_000
    assert dict(env.headers) == {
        "ce-source": "/mycontext",
        "ce-type": "com.example.someevent",
        "traceparent": TP,
        "comexampleextension1": "value",
    }


def test_cloudevent_round_trip_keeps_source_type_and_extensions() -> None:
    ce = {
        "specversion": "1.0",
        "id": "e1",
        "source": "urn:x",
        "type": "t.created",
        "time": "2024-01-02T03:04:05.678000Z",
        "datacontenttype": "application/json",
        "data": [1, 2],
        "kftopic": "things",
        "traceparent": TP,
    }
    assert wire.to_cloudevent(wire.from_cloudevent(ce)) == ce


def test_from_cloudevent_takes_the_topic_from_kftopic() -> None:
    env = wire.from_cloudevent({"id": "1", "source": "s", "type": "t", "kftopic": "x"})
    assert env.topic == "x" and env.content_type == wire.MSGPACK


@pytest.mark.parametrize(
    ("ce", "error"),
    [
        ({"source": "s", "type": "t"}, "'id' is missing"),
        ({"id": "1", "type": "t"}, "'source' is missing"),
        ({"id": "1", "source": "s", "type": 5}, "'type' is missing or not a non-empty string"),
        ({"id": "", "source": "s", "type": "t"}, "'id' is missing or not a non-empty string"),
        ({"id": "1", "source": "s", "type": "t", "time": "yesterday"}, "not RFC 3339"),
        ({"id": "1", "source": "s", "type": "t", "time": 1700000000}, "not RFC 3339"),
        # RFC 3339 requires an offset: no guessing at local time
        ({"id": "1", "source": "s", "type": "t", "time": "2024-01-02T03:04:05"}, "offset"),
        ({"id": "1", "source": "s", "type": "t", "time": "2024-01-02 03:04:05Z"}, "RFC 3339"),
        ({"id": "1", "source": "s", "type": "t", "time": "2024-13-02T03:04:05Z"}, "RFC 3339"),
        ({"id": "1", "source": "s", "type": "t", "time": "2024-01-02T03:04:05+24:00"}, "offset"),
        ({"id": "1", "source": "s", "type": "t", "kfdeadline": "soon"}, "'kfdeadline'"),
        ({"id": "1", "source": "s", "type": "t", "kfdeadline": True}, "'kfdeadline'"),
        ({"id": "1", "source": "s", "type": "t", "kfreplyto": 5}, "'kfreplyto'"),
        ({"id": "1", "source": "s", "type": "t", "kfheaders": "{"}, "'kfheaders'"),
        ({"id": "1", "source": "s", "type": "t", "kfheaders": '{"a":1}'}, "'kfheaders'"),
        ({"id": "1", "source": "s", "type": "t", "xmap": {"a": 1}}, "'xmap' must be a string"),
        ({"id": "1", "source": "s", "type": "t", "data_base64": "!!"}, "base64"),
        ({"id": "1", "source": "s", "type": "t", "data": 1, "data_base64": "AA=="}, "not both"),
        (
            {"id": "1", "source": "s", "type": "t", "kfkind": "http-request", "data": {}},
            "http-request payload needs",
        ),
    ],
)
def test_from_cloudevent_rejects_a_bad_event(ce: dict[str, Any], error: str) -> None:
    with pytest.raises(DecodeError, match=error):
        wire.from_cloudevent(ce)


def test_to_cloudevent_keeps_core_attributes_over_headers() -> None:
    env = wire.make("t", 1, headers={"id": "forged", "type": "forged"})
    ce = wire.to_cloudevent(env)
    assert ce["id"] == env.id and ce["type"] == "io.kubefuncs.event"
    assert wire.from_cloudevent(ce) == env


def test_from_cloudevent_reads_data_base64() -> None:
    env = wire.from_cloudevent({"id": "1", "source": "s", "type": "t", "data_base64": "AAE="})
    assert env.payload == b"\x00\x01"
    assert "data_base64" not in env.headers


def test_to_cloudevent_writes_bytes_as_data_base64() -> None:
    ce = wire.to_cloudevent(wire.make("t", b"\x00\x01", content_type="application/octet-stream"))
    assert ce["data_base64"] == "AAE=" and "data" not in ce


@pytest.mark.parametrize("vector", VALID, ids=names(VALID))
def test_every_envelope_survives_a_cloudevent_round_trip(vector: dict[str, Any]) -> None:
    env = wire.decode(bytes.fromhex(vector["hex"]))
    ce = wire.to_cloudevent(env)
    assert wire.from_cloudevent(ce) == env
    if not _has_nested_bytes(ce.get("data")):  # http payloads keep their body as bytes
        assert wire.from_cloudevent(json.loads(json.dumps(ce))) == env


@pytest.mark.parametrize(
    ("name", "value", "attribute"),
    [
        ("traceparent", TP, "traceparent"),  # the Distributed Tracing extension
        ("tenant", "acme", "tenant"),
        ("abcdefghij0123456789", "x", "abcdefghij0123456789"),  # 20 characters
        ("ce-source", "urn:x", "source"),
        ("ce-type", "com.example.done", "type"),
        ("ce-subject", "orders/1", "subject"),
        ("ce-dataschema", "https://example.com/s", "dataschema"),
    ],
)
def test_headers_that_fit_become_attributes(name: str, value: str, attribute: str) -> None:
    env = wire.make("t", 1, headers={name: value})
    ce = wire.to_cloudevent(env)
    assert ce[attribute] == value and "kfheaders" not in ce
    assert wire.from_cloudevent(ce) == env


@pytest.mark.parametrize(
    ("name", "value"),
    [
        *[(core, "forged") for core in ("id", "source", "type", "time", "specversion")],
        *[(core, "forged") for core in ("datacontenttype", "data", "subject", "dataschema")],
        ("data_base64", "AAE="),
        *[(kf, "forged") for kf in ("kftopic", "kfkind", "kfreplyto", "kfdeadline", "kfheaders")],
        ("kfanything", "x"),  # the kf prefix is kubefuncs's
        ("x-tenant", "acme"),
        ("x.tenant", "acme"),
        ("x_tenant", "acme"),
        ("Tenant", "acme"),
        ("", "empty name"),
        ("abcdefghij0123456789x", "21 characters"),
        ("tenant", "line\nbreak"),  # not a valid CloudEvents String
        ("tenant", "\x85"),
        ("tenant", "\ufffe"),
        ("ce-source", "/kubefuncs/topics/t"),  # the value the source has anyway
        ("ce-type", "io.kubefuncs.event"),
        ("ce-source", ""),
        ("ce-subject", ""),
    ],
)
def test_other_headers_travel_in_kfheaders(name: str, value: str) -> None:
    env = wire.make("t", 1, headers={name: value, "traceparent": TP})
    ce = wire.to_cloudevent(env)
    assert json.loads(ce["kfheaders"]) == {name: value}
    assert ce["kfheaders"].isascii() and ce["traceparent"] == TP
    assert ce["id"] == env.id and ce["type"] == "io.kubefuncs.event"
    assert all(n.isalnum() and n.islower() for n in ce if n not in ("data", "data_base64"))
    assert wire.from_cloudevent(ce) == env


def test_a_source_argument_keeps_the_ce_source_header() -> None:
    env = wire.make("t", 1, headers={"ce-source": "urn:original"})
    ce = wire.to_cloudevent(env, source="/my/app")
    assert ce["source"] == "/my/app"
    assert wire.from_cloudevent(ce) == env


def test_to_cloudevent_marks_kinds_other_than_event() -> None:
    assert "kfkind" not in wire.to_cloudevent(wire.make("t", 1))
    ce = wire.to_cloudevent(request())
    assert ce["kfkind"] == wire.REQUEST
    assert wire.from_cloudevent(ce).kind == wire.REQUEST


def test_from_cloudevent_restores_the_reply_fields() -> None:
    ce: dict[str, Any] = {"id": "1", "source": "s", "type": "t", "kfreplyto": "kf:reply:abc"}
    ce |= {"kfcorrelationid": "c1", "kfdeadline": 1_700_000_030_123}
    env = wire.from_cloudevent(ce)
    assert (env.reply_to, env.correlation_id, env.deadline_ms) == (
        "kf:reply:abc",
        "c1",
        1_700_000_030_123,
    )
    # an integer attribute that went through an HTTP header arrives as a string
    assert (
        wire.from_cloudevent(ce | {"kfdeadline": "1700000030123"}).deadline_ms == 1_700_000_030_123
    )


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("2018-04-05T17:31:00Z", 1_522_949_460_000),
        ("2018-04-05t17:31:00z", 1_522_949_460_000),
        ("2018-04-05T19:31:00+02:00", 1_522_949_460_000),
        ("2018-04-05T12:01:00-05:30", 1_522_949_460_000),
        ("2018-04-05T17:31:00.1Z", 1_522_949_460_100),
        ("2018-04-05T17:31:00.123999999Z", 1_522_949_460_123),  # truncated to the ms
        ("1969-12-31T23:59:59.999Z", -1),
        ("2016-12-31T23:59:60Z", 1_483_228_799_999),  # a leap second
    ],
)
def test_from_cloudevent_reads_rfc3339_times(text: str, ms: int) -> None:
    assert wire.from_cloudevent({"id": "1", "source": "s", "type": "t", "time": text}).time_ms == ms


@pytest.mark.parametrize("ms", [0, 1, 999, 1_700_000_000_001, -1, -86_400_001, 253402300799999])
def test_times_survive_a_cloudevent_round_trip(ms: int) -> None:
    env = wire.Envelope(**{**_fields(wire.make("t", 1)), "time_ms": ms})
    assert wire.from_cloudevent(wire.to_cloudevent(env)).time_ms == ms


def test_to_cloudevent_refuses_a_time_rfc3339_cannot_write() -> None:
    env = wire.Envelope(**{**_fields(wire.make("t", 1)), "time_ms": 2**63})
    with pytest.raises(ValueError, match="RFC 3339"):
        wire.to_cloudevent(env)


def test_from_cloudevent_headers_from_extension_values() -> None:
    ce: dict[str, Any] = {"id": "1", "source": "s", "type": "t", "xcount": 3, "xflag": True}
    ce |= {"kfheaders": '{"x-tenant":"acme","xcount":"exact"}', "kffuture": "x", "xnull": None}
    assert dict(wire.from_cloudevent(ce).headers) == {
        "ce-source": "s",
        "ce-type": "t",
        "xcount": "exact",  # kfheaders holds exact names and values: it wins
        "xflag": "true",
        "x-tenant": "acme",
    }


def test_from_cloudevent_needs_a_map() -> None:
    with pytest.raises(DecodeError, match="must be a map"):
        wire.from_cloudevent([])  # type: ignore[arg-type]


def _has_nested_bytes(value: Any) -> bool:
    if isinstance(value, bytes):
        return True
    if isinstance(value, dict):
        return any(_has_nested_bytes(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_nested_bytes(v) for v in value)
    return False


def _fields(env: wire.Envelope) -> dict[str, Any]:
    return {name: getattr(env, name) for name in wire.Envelope.__slots__}


@pytest.mark.parametrize(
    ("headers", "query", "body", "deadline"),
    [
        ({"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"}, "", b"", 5),
        ({"traceparent": "t", "tracestate": "k=v"}, "q=1&é=2", "ünï".encode(), None),
        ({}, "x", bytes(range(256)) * 10, 1 << 40),
    ],
)
def test_the_fast_http_request_encoder_writes_the_same_bytes(
    headers: dict[str, str], query: str, body: bytes, deadline: int | None
) -> None:
    request = wire.HttpRequest("POST", "/p/ä", query, {"content-type": "x/y", **headers}, body)
    env = wire.Envelope(
        id="c" * 32,
        topic="t",
        kind=wire.HTTP_REQUEST,
        payload=request,
        time_ms=123,
        reply_to="kf:reply:1",
        deadline_ms=deadline,
        headers=headers,
    )
    fast = wire.encode_http_request(
        env.id,
        env.topic,
        (request.method, request.path, request.query, request.headers, request.body),
        time_ms=123,
        reply_to="kf:reply:1",
        deadline_ms=deadline,
        headers=headers,
    )
    assert fast == wire.encode(env)
    assert wire.decode(fast) == env


def test_the_fast_constructors_build_the_same_objects() -> None:
    # they set slots by position: a field added, removed or reordered must show up here
    values = ("i", "t", "k", {"p": 1}, 5, "c", "r", "x", 9, {"h": "v"})
    assert wire._envelope(*values) == wire.Envelope(*values)
    assert len(wire.Envelope.__dataclass_fields__) == len(values)
    request = ("GET", "/p", "q", {"h": "v"}, b"b")
    assert wire._http_request_of(*request) == wire.HttpRequest(*request)
    assert len(wire.HttpRequest.__dataclass_fields__) == len(request)
    response = (201, {"h": "v"}, b"b")
    assert wire._http_response_of(*response) == wire.HttpResponse(*response)
    assert len(wire.HttpResponse.__dataclass_fields__) == len(response)


@pytest.mark.parametrize(
    "result",
    ["pong", b"\x00raw", None, {"n": 1, "x": [1, "y"]}, wire.HttpResponse(201, {"a": "b"}, b"z")],
    ids=["str", "bytes", "none", "json", "http-response"],
)
@pytest.mark.parametrize("kind", [wire.HTTP_REQUEST, wire.REQUEST])
def test_the_fast_reply_encoder_writes_the_same_bytes(
    monkeypatch: pytest.MonkeyPatch, result: object, kind: str
) -> None:
    from kubefuncs.function import reply_body, to_reply

    monkeypatch.setattr(wire, "new_id", lambda: "r" * 32)
    monkeypatch.setattr(wire, "now_ms", lambda: 1234)
    payload = wire.HttpRequest("GET", "/", "", {}, b"") if kind == wire.HTTP_REQUEST else 1
    request = wire.make(
        "t",
        payload,
        kind=kind,
        reply_to="kf:reply:1",
        headers={"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01", "other": "no"},
    )
    assert reply_body(request, result) == wire.encode(to_reply(request, result))
