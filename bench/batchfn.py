"""The batch handler ``bench/runtime.py`` runs (``python -m kubefuncs batchfn:noop_batch``);
apart from runtime:noop, so older trees without batch handlers still import that one."""

from __future__ import annotations

from typing import Any

from kubefuncs import function


@function(batch=100, batch_wait_s=0.005)
async def noop_batch(payloads: list[Any]) -> list[None]:
    """Does nothing, for ``--batch`` messages per call."""
    return [None] * len(payloads)
