"""Functions the process tests run with ``python -m kubefuncs tests.runtime.fns:NAME``."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from kubefuncs import Context, function


def _note(event: str, payload: dict[str, Any], attempt: int) -> None:
    with open(os.environ["KF_TEST_RECORD"], "a") as f:
        f.write(f"{event} {os.getpid()} {payload['id']} {attempt}\n")


@function("rt-record")
async def record(payload: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """Notes start and end of every attempt in $KF_TEST_RECORD; sleeps ``sleep_s``."""
    _note("start", payload, ctx.attempt)
    await asyncio.sleep(payload.get("sleep_s", 0))
    _note("done", payload, ctx.attempt)
    return {"id": payload["id"], "attempt": ctx.attempt, "pid": os.getpid()}
