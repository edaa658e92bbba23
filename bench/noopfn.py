"""The function bench/footprint.py starts (``python -m kubefuncs noopfn:noop``): a module
that imports nothing but kubefuncs, as a small function's does, so the figures are the
runtime's own (bench/runtime.py's ``runtime:noop`` brings the benchmark's imports along)."""

from __future__ import annotations

from typing import Any

from kubefuncs import function


@function("fp")
async def noop(payload: Any) -> None:
    """Does nothing."""
