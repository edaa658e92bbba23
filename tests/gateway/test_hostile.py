"""Hostile HTTP input on the gateway app (memory bus): every bad request gets a 4xx with a
JSON reason, never a 500 or a dropped connection (issue 12)."""

from __future__ import annotations

import asyncio
import json
import random
import string
from dataclasses import replace

import pytest
from aiohttp.test_utils import TestClient

from .test_app import KEY, SETTINGS, gateway

PUBLISH = {"X-Api-Key": KEY, "Content-Type": "application/json"}


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"[" * 5000 + b"]" * 5000, 400),  # RecursionError in json.loads
        (b"[" * 600 + b"]" * 600, 400),  # parses, but deeper than consumers take
        (str(2**64).encode(), 422),  # msgpack carries at most 64-bit integers
        (b'"\\ud800"', 422),  # a lone surrogate cannot be UTF-8 encoded
    ],
    ids=["nested-parse", "nested-encode", "big-int", "lone-surrogate"],
)
async def test_a_body_that_cannot_be_carried_is_refused_with_a_reason(
    body: bytes, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    async with gateway(replace(SETTINGS, max_body_bytes=1 << 20)) as client:
        # When an event body the wire cannot carry is published
        r = await client.post("/topics/events", data=body, headers=PUBLISH)
        # Then it is a 4xx with a JSON reason, and no traceback is logged
        assert r.status == status, await r.text()
        assert (await r.json())["message"]
        assert not [rec for rec in caplog.records if rec.exc_info]


async def raw(client: TestClient, request: bytes) -> bytes:  # type: ignore[type-arg]
    """Send ``request`` as bytes on a new connection; return all that comes back."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(request)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return data


@pytest.mark.parametrize("path", ["/echo/a", "/topics/events", "/calls/" + "0" * 32])
async def test_a_header_value_that_is_not_utf8_is_a_400(
    path: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with gateway() as client:
        request = (
            f"POST {path} HTTP/1.1\r\nHost: x\r\nX-Api-Key: {KEY}\r\n".encode()
            + b"X-Thing: \x80\xff\xfe\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
        )
        data = await raw(client, request)
        # Then it is a 400 naming the header, not a 500 (nor a dropped connection)
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400"), data[:300]
        assert b"X-Thing" in body
        assert not [rec for rec in caplog.records if rec.exc_info]


@pytest.mark.parametrize(
    ("call_id", "code"),
    [
        ("%0d%0a", "bad_path"),  # control characters are refused for every path
        ("%00", "bad_path"),
        ("a%0d%0aSet-Cookie:%20x=1", "bad_path"),
        ("x" * 40, "bad_call_id"),
        ("0" * 31 + "G", "bad_call_id"),
    ],
)
async def test_a_call_id_that_is_not_one_is_a_400(call_id: str, code: str) -> None:
    async with gateway() as client:
        request = f"GET /calls/{call_id} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        data = await raw(client, request.encode())
        # Then a 400 with a reason comes back, and nothing of the id is in a header
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400"), data[:300]
        assert json.loads(body)["error"] == code
        assert b"X-Call-Id" not in head


async def test_refused_topics_do_not_grow_the_metrics() -> None:
    async with gateway() as client:
        # Given the metrics after a first refused publish to an unknown topic
        await client.post("/topics/warmup", data=b"{}", headers=PUBLISH)
        before = len(await (await client.get("/metrics")).read())
        # When 2000 publishes go to random unknown topics
        rng = random.Random(12)
        for _ in range(2000):
            topic = "".join(rng.choices(string.ascii_letters, k=12))
            r = await client.post(f"/topics/{topic}", data=b"{}", headers=PUBLISH)
            assert r.status == 403
        # Then /metrics is as large as before: one "unmatched" label, not 2000
        after = len(await (await client.get("/metrics")).read())
        assert after <= before + 64, (before, after)
