"""A slow job reached asynchronously: ``POST /jobs/`` answers 202 with a call id, the
result is fetched from ``/calls/{id}`` (or POSTed to ``X-Callback-Url``)."""

import asyncio
from typing import Any

from kubefuncs import HttpRequest, function


@function("jobs", concurrency=1, timeout_s=300)
async def handle(request: HttpRequest) -> dict[str, Any]:
    job = request.json() or {}
    seconds = float(job.get("seconds", 1)) if isinstance(job, dict) else 1.0
    await asyncio.sleep(min(seconds, 60.0))
    return {"done": True, "slept_s": seconds}
