"""The function the conformance suite drives in CI: ``python -m kubefuncs
tests.conformance.conformance_fn:serve`` (the same conventions as example/node)."""

from __future__ import annotations

import asyncio
from typing import Any

from kubefuncs import Context, HttpRequest, function


@function("conformance")
async def serve(payload: Any, ctx: Context) -> Any:
    if isinstance(payload, dict) and "conformance" in payload:
        return await conformance(payload, ctx)
    if isinstance(payload, HttpRequest):
        return payload.text().upper()
    return payload


async def conformance(payload: dict[str, Any], ctx: Context) -> Any:
    if payload["conformance"] == "fail":
        raise ValueError("conformance: asked to fail")
    if payload["conformance"] != "echo":
        raise ValueError(f"unknown conformance {payload['conformance']!r}")
    if payload.get("sleep_ms"):
        await asyncio.sleep(payload["sleep_ms"] / 1000)
    return {"value": payload.get("value"), "attempt": ctx.attempt}
