"""Importing redis-py without the OpenTelemetry metrics SDK it pulls in when installed.

redis-py (8.x) imports ``opentelemetry.metrics`` and ``opentelemetry.sdk.metrics`` at
import time whenever they are installed (the ``otel`` extra, as in the image), for its own
opt-in command metrics that kubefuncs never turns on: a third of a function's start-up
time (~0.3 s on the 2-core bench machine) and ~8 MB. :func:`import_redis` imports redis-py
with those two modules hidden, then unhides them, so anything imported later (kubefuncs
tracing, a handler's own OpenTelemetry code) finds them as usual.

A function that wants redis-py's own metrics imports ``opentelemetry.sdk.metrics`` in its
module: the function's module is imported before the transport, and nothing is hidden
once either module is loaded.
"""

from __future__ import annotations

import sys

HIDDEN = ("opentelemetry.metrics", "opentelemetry.sdk.metrics")


def import_redis() -> None:
    """Import ``redis.asyncio`` (once) with the OpenTelemetry metrics modules hidden."""
    if "redis" in sys.modules or any(name in sys.modules for name in HIDDEN):
        return  # already paid for, or wanted: import as is
    for name in HIDDEN:
        sys.modules[name] = None  # type: ignore[assignment]  # import raises ImportError
    try:
        import redis.asyncio  # noqa: F401
    finally:
        for name in HIDDEN:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
