"""A function the console tests make fail on purpose (its dead letters are replayed)."""

from __future__ import annotations

from typing import Any

from kubefuncs import function

FAILING = {"on": True}
SEEN: list[Any] = []


@function("flaky", max_attempts=1)
async def flaky(payload: Any) -> str:
    if FAILING["on"]:
        raise ValueError("flaky is failing on purpose")
    SEEN.append(payload)
    return "ok"
