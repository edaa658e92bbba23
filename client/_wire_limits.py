"""The decoding limits of wire contract v1 (docs/protocol.md, "Limits"), checked without
recursion, and the checks the encoder shares with the decoder.

wire.py calls these; nothing else should. Every check returns the problem as text naming
the envelope field (``None`` when there is none), so the caller picks the error type:
DecodeError when decoding, EncodeError when encoding.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

import msgpack

MAX_BODY_BYTES = 64 * 1024 * 1024
# No value sits inside more than this many maps and arrays, counted from the envelope field
# (the envelope map itself does not count: a map payload is level 1, a list in it level 2;
# an empty map or array is a value, so it may be level 65).
MAX_DEPTH = 64
# Array items plus map keys and values in one body, the envelope's own fields included.
# Every element takes at least one byte, so a body of at most this many bytes is within.
MAX_ELEMENTS = 1_000_000

_EXT_TYPES = (msgpack.ExtType, msgpack.Timestamp)
_CONTAINERS = (dict, list, tuple)
_PLAIN = frozenset({str, int, float, bool, bytes, type(None)})  # what most values are
_INT_RANGE = range(-(2**63), 2**64)
_SURROGATE = re.compile("[\ud800-\udfff]")
_KEY_ERROR = "payload maps must have string keys (every map key in a message), got a key of type "


def too_deep(field: str | None) -> str:
    where = "body" if field is None else f"envelope field {field!r}"
    return f"{where} is nested deeper than {MAX_DEPTH} levels of maps and arrays"


def too_many_elements() -> str:
    return f"body has more than {MAX_ELEMENTS} elements (array items, map keys and values)"


def ext_problem(field: str, value: Any) -> str:
    code = -1 if isinstance(value, msgpack.Timestamp) else value.code
    return (
        f"envelope field {field!r} holds a msgpack extension type (ext {code}): "
        "the contract has none"
    )


def field_problem(field: str, value: Any, *, scalars: bool) -> str | None:
    """The first broken rule inside one field's value: maps and arrays nested deeper than
    MAX_DEPTH, a map key that is not a str, and (``scalars``) an extension type."""
    if value.__class__ in _PLAIN:
        return None
    if isinstance(value, _EXT_TYPES):  # before tuple: an ExtType is a namedtuple
        return ext_problem(field, value) if scalars else None
    if not isinstance(value, _CONTAINERS):
        return None
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH and node:  # an empty one holds no value: as in the Node decoder
            return too_deep(field)
        if isinstance(node, dict):
            key = _bad_key(node)
            if key is not None:
                return f"{_KEY_ERROR}{key}, in envelope field {field!r}"
            node = node.values()
        problem = _push_children(node, depth + 1, stack, field, scalars)
        if problem is not None:
            return problem
    return None


def _bad_key(node: dict[Any, Any]) -> str | None:
    try:
        "".join(node)  # the fast way to see that every key is a str
    except TypeError:
        for key in node:
            if not isinstance(key, str):
                return _msgpack_type(key)
    return None


def _push_children(
    children: Iterable[Any], depth: int, stack: list[tuple[Any, int]], field: str, scalars: bool
) -> str | None:
    for child in children:
        cls = child.__class__
        if cls is dict or cls is list:
            stack.append((child, depth))
        elif cls in _PLAIN:
            continue
        elif isinstance(child, _EXT_TYPES):  # before tuple: an ExtType is a namedtuple
            if scalars:
                return ext_problem(field, child)
        elif isinstance(child, _CONTAINERS):
            stack.append((child, depth))
    return None


def _msgpack_type(value: Any) -> str:
    if isinstance(value, _EXT_TYPES):
        return "ext"
    names = {"NoneType": "nil", "list": "array", "dict": "map", "bytes": "bin", "tuple": "array"}
    return names.get(type(value).__name__, type(value).__name__)


# -- encoding: what msgpack cannot carry -----------------------------------------------------


def unpackable(value: Any) -> str | None:
    """Why msgpack cannot write ``value`` (an int out of range, a lone surrogate, a type it
    has no form for), or None. Called on the error path only: it visits every element."""
    for item in _elements(value):
        if isinstance(item, bool) or item is None:
            continue
        if isinstance(item, int) and item not in _INT_RANGE:
            return f"the integer {_short_int(item)} is outside msgpack's range (-2**63 .. 2**64-1)"
        if isinstance(item, str) and _SURROGATE.search(item):
            return "a string holds a lone surrogate (not UTF-8 encodable)"
        if not isinstance(item, (str, bytes, bytearray, memoryview, int, float, *_EXT_TYPES)):
            return f"a {type(item).__name__} has no msgpack form"
    return None


def _elements(value: Any) -> Iterator[Any]:
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, _EXT_TYPES):
            yield node
        elif isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list | tuple):
            stack.extend(node)
        else:
            yield node


def count_elements(value: Any) -> int:
    """Array items plus map keys and values, as the decoder counts them."""
    count = 0
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, _EXT_TYPES):
            continue
        if isinstance(node, dict):
            count += 2 * len(node)
            stack.extend(node.values())
        elif isinstance(node, list | tuple):
            count += len(node)
            stack.extend(node)
    return count


def _short_int(value: int) -> str:
    digits = len(str(value)) if value.bit_length() < 10_000 else None
    if digits is not None and digits <= 30:
        return str(value)
    return f"of {value.bit_length()} bits"


# -- decoding: counting elements of big bodies -----------------------------------------------


class TooManyElements(ValueError):
    """Raised from the unpack hooks: the body is over MAX_ELEMENTS."""


class _Counter:
    """Unpack hooks that add up container sizes as msgpack builds them (inner ones first),
    so a big body stops at the limit instead of building every element first."""

    def __init__(self) -> None:
        self.elements = 0

    def on_map(self, value: dict[str, Any]) -> dict[str, Any]:
        self.elements += 2 * len(value)
        if self.elements > MAX_ELEMENTS:
            raise TooManyElements(too_many_elements())
        return value

    def on_list(self, value: list[Any]) -> list[Any]:
        self.elements += len(value)
        if self.elements > MAX_ELEMENTS:
            raise TooManyElements(too_many_elements())
        return value


def unpack(body: bytes, ext_hook: Any) -> Any:
    """msgpack.unpackb with the contract's options; bodies over MAX_ELEMENTS bytes also
    count their elements (a smaller body cannot have more elements than bytes)."""
    if len(body) <= MAX_ELEMENTS:
        return msgpack.unpackb(body, raw=False, strict_map_key=True, ext_hook=ext_hook)
    counter = _Counter()
    return msgpack.unpackb(
        body,
        raw=False,
        strict_map_key=True,
        ext_hook=ext_hook,
        max_array_len=MAX_ELEMENTS,
        max_map_len=MAX_ELEMENTS // 2,
        object_hook=counter.on_map,
        list_hook=counter.on_list,
    )


def deep_field(body: bytes) -> str | None:
    """The top-level key whose value msgpack's own stack (1024 levels) could not hold, read
    without building it; None when the body is not a map or the key cannot be read."""
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=True, max_buffer_size=len(body))
    unpacker.feed(body)
    try:
        for _ in range(unpacker.read_map_header()):
            key = unpacker.unpack()
            try:
                unpacker.skip()
            except msgpack.StackError:
                return key if isinstance(key, str) else None
    except Exception:  # any other damage: the caller names the body
        return None
    return None


def bad_key_field(body: bytes) -> str:
    """Where the map key that is not a str is: ", in envelope field 'X'" (or "")."""
    try:
        raw = msgpack.unpackb(body, raw=False, strict_map_key=False)
    except Exception:
        return ""
    if not isinstance(raw, dict):
        return ""
    if _bad_key(raw) is not None:
        return ", in the envelope map"
    for key, value in raw.items():
        if field_problem(key, value, scalars=False) is not None:
            return f", in envelope field {key!r}"
    return ""


def bad_utf8_field(body: bytes) -> str | None:
    """The envelope field that holds a str (or a map key) that is not UTF-8, or None."""
    try:
        raw = msgpack.unpackb(body, raw=False, unicode_errors="surrogateescape")
    except Exception:
        return None
    if not isinstance(raw, dict):
        return None
    for key, value in raw.items():
        if isinstance(key, str) and _SURROGATE.search(key):
            return key.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        if any(isinstance(s, str) and _SURROGATE.search(s) for s in _elements(value)):
            return key if isinstance(key, str) else None
    return None


def short(value: Any) -> str:
    """``repr`` of a value for an error message, at most about 60 characters, without
    rendering all of a huge or deeply nested value (repr of those is slow or recursive)."""
    if isinstance(value, dict | list | tuple) and not isinstance(value, _EXT_TYPES):
        return f"a {_msgpack_type(value)} of {len(value)} elements"
    if isinstance(value, str | bytes | bytearray):
        return repr(value[:60]) + ("..." if len(value) > 60 else "")
    if isinstance(value, int) and not isinstance(value, bool):
        return _short_int(value)
    return f"{value!r:.60}"
