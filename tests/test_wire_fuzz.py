"""Property-based fuzzing of the wire decoders (hypothesis).

The rule: whatever the input, ``wire.decode`` gives an Envelope or raises DecodeError, and
``wire.from_cloudevent`` the same; ``wire.encode`` either writes a body every consumer
decodes or raises EncodeError. Bounded: a few hundred examples per property, no database
(nothing is written into the repository), so the file runs in seconds.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kubefuncs import wire
from kubefuncs.errors import DecodeError, EncodeError

FUZZ = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

FIELDS = ["v", "id", "topic", "kind", "time", "content_type", "reply_to", "correlation_id"]
FIELDS += ["deadline", "headers", "payload", "x-unknown"]
PAYLOAD_KEYS = ["method", "path", "query", "headers", "body", "status", "type", "message"]
PAYLOAD_KEYS += ["retryable", "details"]
KINDS = [*sorted(wire.KINDS), "x-future"]

ints = st.integers(min_value=-(2**63), max_value=2**64 - 1)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    ints,
    st.floats(),
    st.text(max_size=20),
    st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), max_size=2),
    st.binary(max_size=20),
    st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=4)),
    st.builds(msgpack.Timestamp, st.integers(0, 2**34), st.integers(0, 999_999_999)),
)
keys = st.one_of(st.sampled_from(PAYLOAD_KEYS), st.text(max_size=8), st.binary(max_size=4), ints)


def deepen(value: Any, levels: int, as_map: bool) -> Any:
    for _ in range(levels):
        value = {"k": value} if as_map else [value]
    return value


deep = st.builds(
    deepen, scalars, st.sampled_from([0, 1, 63, 64, 65, 600, 1010, 1100]), st.booleans()
)
# what broke decoders before: bin map keys next to deep values, ext types, big headers
nasty = st.sampled_from(
    [
        [b"bin value", deepen(None, 1010, False)],  # RecursionError before the fix
        {"a": deepen(b"", 1010, True)},
        [{b"bin key": 1}, deepen(None, 1010, False)],
        [msgpack.ExtType(1, b"")],
        msgpack.Timestamp(1, 0),
        {1: 2},
        {None: 1},
    ]
)
values = st.recursive(
    st.one_of(nasty, scalars, deep),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)),
    max_leaves=8,
)
# Mostly valid fields, so that the decoder gets past the first check and meets the others.
VALID_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "id": st.text(min_size=1, max_size=8),
    "topic": st.text(max_size=8),
    "time": ints,
    "content_type": st.text(max_size=8),
    "reply_to": st.text(max_size=8),
    "correlation_id": st.text(max_size=8),
    "deadline": ints,
    "headers": st.dictionaries(st.text(max_size=4), st.text(max_size=4), max_size=3),
    "payload": values,
    "x-unknown": values,
}
valid_maps = st.fixed_dictionaries(
    {"v": st.just(1), "kind": st.sampled_from(KINDS), "id": VALID_FIELDS["id"]},
    optional={f: v for f, v in VALID_FIELDS.items() if f != "id"},
)
# a valid map with one or two fields replaced by any msgpack value
envelope_maps = st.builds(
    lambda raw, hostile: raw | hostile,
    valid_maps,
    st.dictionaries(st.sampled_from([*VALID_FIELDS, "v", "kind"]), values, max_size=2),
)


@contextmanager
def production_recursion_limit() -> Iterator[None]:
    """Hypothesis raises the recursion limit while a test runs; processes run with
    Python's default, so the code under test does too (a RecursionError must show)."""
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(PYTHON_DEFAULT_RECURSION_LIMIT)
    try:
        yield
    finally:
        sys.setrecursionlimit(before)


PYTHON_DEFAULT_RECURSION_LIMIT = 1000


def decodes_or_refuses(body: bytes) -> None:
    try:
        with production_recursion_limit():
            env = wire.decode(body)
    except DecodeError:
        return
    assert isinstance(env, wire.Envelope)


@FUZZ
@given(st.binary(max_size=512))
def test_arbitrary_bytes_decode_or_raise_decode_error(body: bytes) -> None:
    decodes_or_refuses(body)


@FUZZ
@given(st.binary(max_size=64), st.sampled_from([b"\x8b", b"\x91" * 2000, b"\x81\xa1k" * 1100]))
def test_arbitrary_bytes_after_a_msgpack_prefix_decode_or_raise_decode_error(
    tail: bytes, head: bytes
) -> None:
    decodes_or_refuses(head + tail)


def packed(raw: Any) -> bytes | None:
    """msgpack's own bytes for raw, or None when msgpack refuses (its stack: 512 levels)."""
    try:
        return msgpack.packb(raw, use_bin_type=True)  # type: ignore[no-any-return]
    except (ValueError, OverflowError):
        return None


@FUZZ
@given(envelope_maps)
def test_arbitrary_msgpack_envelopes_decode_or_raise_decode_error(raw: dict[str, Any]) -> None:
    body = packed(raw)
    if body is not None:
        decodes_or_refuses(body)


@FUZZ
@given(valid_maps, st.sampled_from([*VALID_FIELDS, "v", "kind"]), nasty)
def test_envelopes_with_a_value_that_broke_decoders_decode_or_raise_decode_error(
    raw: dict[str, Any], field: str, value: Any
) -> None:
    body = packed(raw | {field: value})
    if body is not None:
        decodes_or_refuses(body)


@FUZZ
@given(
    st.sampled_from([wire.HTTP_REQUEST, wire.HTTP_RESPONSE, wire.ERROR]),
    st.dictionaries(keys, values, max_size=4),
)
def test_arbitrary_structured_payloads_decode_or_raise_decode_error(
    kind: str, payload: dict[Any, Any]
) -> None:
    body = packed({"v": 1, "id": "a", "kind": kind, "payload": payload})
    if body is not None:
        decodes_or_refuses(body)


@FUZZ
@given(values, st.sampled_from(KINDS))
def test_encode_writes_only_what_decode_takes(payload: Any, kind: str) -> None:
    env = wire.make("t", payload, kind=kind, headers={"traceparent": "x"})
    try:
        with production_recursion_limit():
            body = wire.encode(env)
    except EncodeError:
        return
    decoded = wire.decode(body)
    assert decoded.id == env.id


# -- round trip of valid envelopes -----------------------------------------------------------

json_scalars = st.one_of(
    st.none(), st.booleans(), ints, st.floats(allow_nan=False), st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=30,
)
payloads = st.one_of(
    json_values,
    st.binary(max_size=64),
    st.builds(deepen, json_scalars, st.integers(0, wire.MAX_DEPTH), st.booleans()),
)
str_maps = st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=4)
http_requests = st.builds(
    wire.HttpRequest,
    st.text(max_size=8),
    st.text(max_size=20),
    st.text(max_size=20),
    str_maps,
    st.binary(max_size=32),
)
http_responses = st.builds(wire.HttpResponse, st.integers(100, 599), str_maps, st.binary())
errors = st.builds(
    wire.ErrorInfo,
    st.text(max_size=10),
    st.text(max_size=20),
    st.booleans(),
    st.one_of(st.none(), st.integers(100, 599)),
)
kinds_and_payloads = st.one_of(
    st.tuples(st.sampled_from([wire.EVENT, wire.REQUEST, wire.REPLY, "x-future"]), payloads),
    st.tuples(st.just(wire.HTTP_REQUEST), http_requests),
    st.tuples(st.just(wire.HTTP_RESPONSE), http_responses),
    st.tuples(st.just(wire.ERROR), errors),
)
optional_text = st.one_of(st.none(), st.text(max_size=12))
envelopes = st.builds(
    lambda kp, **fields: wire.Envelope(kind=kp[0], payload=kp[1], **fields),
    kinds_and_payloads,
    id=st.text(min_size=1, max_size=12),
    topic=st.text(max_size=12),
    time_ms=ints,
    content_type=st.text(min_size=1, max_size=12),
    reply_to=optional_text,
    correlation_id=optional_text,
    deadline_ms=st.one_of(st.none(), ints),
    headers=str_maps,
)


@FUZZ
@given(envelopes)
def test_valid_envelopes_survive_an_encode_decode_round_trip(env: wire.Envelope) -> None:
    assert wire.decode(wire.encode(env)) == env


# -- CloudEvents -----------------------------------------------------------------------------

nasty_json = st.sampled_from(
    [
        *("0000-01-01T00:00:00Z", "9" * 5000, "[" * 3000, "]", "-1"),
        *(2**64, -(2**63) - 1, 10**5000),
        *(deepen(None, 1010, False), deepen(1, 65, True), ["\ud800"], {"\udc80": 1}),
    ]
)
raw_json = st.one_of(
    nasty_json,
    json_values,
    st.builds(deepen, json_scalars, st.sampled_from([0, 1, 64, 65, 900, 1010]), st.booleans()),
    st.integers(min_value=-(2**80), max_value=2**80),
)
texts = st.text(max_size=8)
VALID_ATTRS: dict[str, st.SearchStrategy[Any]] = {
    "specversion": st.just("1.0"),
    "time": st.sampled_from(["2023-11-14T22:13:20.123Z", "1969-12-31T23:59:59+01:00"]),
    "datacontenttype": texts,
    "subject": texts,
    "data": json_values,
    "data_base64": st.sampled_from(["AAE=", "", "not base64"]),
    "kftopic": texts,
    "kfkind": st.sampled_from(KINDS),
    "kfreplyto": texts,
    "kfcorrelationid": texts,
    "kfdeadline": st.one_of(ints, ints.map(str)),
    "kfheaders": st.sampled_from(['{"x-a":"b"}', "{}"]),
    "traceparent": texts,
    "ext1": st.one_of(texts, ints, st.booleans()),
    "Bad-Name": texts,
}
valid_cloudevents = st.fixed_dictionaries(
    {"id": st.just("a"), "source": st.just("/s"), "type": st.just("t")},
    optional=VALID_ATTRS,
)
# a valid event with one or two attributes replaced by anything JSON can carry
cloudevents = st.builds(
    lambda ce, hostile: ce | hostile,
    valid_cloudevents,
    st.dictionaries(st.sampled_from([*VALID_ATTRS, "id", "source", "type"]), raw_json, max_size=2),
)


@FUZZ
@given(cloudevents)
def test_arbitrary_cloudevents_give_an_envelope_or_decode_error(ce: dict[str, Any]) -> None:
    try:
        with production_recursion_limit():
            env = wire.from_cloudevent(ce)
    except DecodeError:
        return
    # what from_cloudevent gives, every consumer takes
    decoded = wire.decode(wire.encode(env))
    if not _has_nan(env.payload):
        assert decoded == env


def _has_nan(value: Any) -> bool:
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, float) and math.isnan(node):
            return True
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False
