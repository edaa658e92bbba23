"""The function the fault scenarios run: ``python -m kubefuncs tests.faults.fns:ledger``.

An HTTP request is answered with its path and the SHA-256 of its body, so a caller can
prove the answer belongs to its own request. An event ``{"id": ..., "sleep_s": ...}`` is
noted in the file ``$KF_FAULTS_RECORD`` (``start``/``done <pid> <id> <attempt>`` lines;
a file, so the notes outlive any bus restart), after sleeping ``sleep_s``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from typing import Any

from kubefuncs import Context, HttpRequest, HttpResponse, function


def answer_for(path: str, body: bytes) -> dict[str, str]:
    """What the function answers to a request: the caller computes it too."""
    return {"path": path, "sha256": hashlib.sha256(body).hexdigest()}


def _note(what: str, event_id: str, attempt: int) -> None:
    line = f"{what} {os.getpid()} {event_id} {attempt}\n".encode()
    fd = os.open(os.environ["KF_FAULTS_RECORD"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, line)  # one write on O_APPEND: lines of two replicas never interleave
    finally:
        os.close(fd)


@function("faults")
async def ledger(payload: Any, ctx: Context) -> HttpResponse | None:
    if isinstance(payload, HttpRequest):
        body = json.dumps(answer_for(payload.path, payload.body)).encode()
        return HttpResponse(200, {"content-type": "application/json"}, body)
    if not isinstance(payload, dict) or not isinstance(payload.get("id"), str):
        raise ValueError(f"not a ledger event: {type(payload).__name__}")
    _note("start", payload["id"], ctx.attempt)
    await asyncio.sleep(float(payload.get("sleep_s", 0)))
    _note("done", payload["id"], ctx.attempt)
    return None
