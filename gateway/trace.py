"""W3C trace context: accept a caller's ``traceparent`` or start a trace (pure)."""

from __future__ import annotations

import re
from random import getrandbits

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


def child_traceparent(incoming: str | None) -> tuple[str, bool]:
    """The ``traceparent`` to send on: same trace id and flags as a valid ``incoming``
    header with the gateway's own span id as parent, or a new sampled trace. The flag
    says whether the incoming one was accepted (then ``tracestate`` travels on too)."""
    if incoming:
        m = _TRACEPARENT.match(incoming.strip().lower())
        if m and m[1] != "ff" and m[2] != _ZERO_TRACE and m[3] != _ZERO_SPAN:
            return f"00-{m[2]}-{_span_id()}-{m[4]}", True
    return f"00-{getrandbits(128) or 1:032x}-{getrandbits(64) or 1:016x}-01", False


def _span_id() -> str:
    # W3C asks for random ids, not secret ones: no syscall per request for urandom
    return f"{getrandbits(64) or 1:016x}"


def trace_id(traceparent: str) -> str:
    return traceparent[3:35]
