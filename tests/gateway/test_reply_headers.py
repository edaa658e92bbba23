"""A function's reply with headers HTTP cannot carry (CR/LF, NUL, control characters, names
that are not tokens) is answered without them, sync and async, instead of a dropped
connection; a stored async result with such headers reads as an unknown call."""

from __future__ import annotations

import asyncio
import contextlib

import msgpack
import pytest
from kubefuncs import HttpRequest, HttpResponse, function
from kubefuncs.gateway import GatewaySettings
from kubefuncs.gateway.calls import DONE, CallResult

from .test_app import Client, served

BAD_HEADERS = {
    "crlf-value": ("x-bad", "a\r\nSet-Cookie: session=stolen"),
    "lf-name": ("x\nname", "v"),
    "nul": ("x-bad", "a\x00b"),
    "control": ("x-bad", "a\x01b"),
    "del": ("x-bad", "a\x7fb"),
    "space-name": ("x name", "v"),
    "empty-name": ("", "v"),
    "non-ascii-name": ("é", "v"),
    "content-type": ("content-type", "text/plain\r\nX-Injected: 1"),
}


@function("bad-headers")
async def bad_headers(request: HttpRequest) -> HttpResponse:
    name, value = BAD_HEADERS[request.path.rsplit("/", 1)[-1]]
    return HttpResponse(200, {"x-good": "kept", "x-tab": "a\tb", name: value}, b"hi")


def gateway() -> contextlib.AbstractAsyncContextManager[Client]:
    routes = "routes:\n  /s/: bad-headers\n  /a/: {topic: bad-headers, async: true}\n"
    return served(bad_headers, GatewaySettings(bus_url="memory://"), routes)


@pytest.mark.parametrize("case", sorted(BAD_HEADERS))
async def test_reply_headers_http_cannot_carry_are_dropped_sync_and_async(
    case: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with gateway() as client:
        # When the function answers with a header that cannot be sent, sync and async
        sync = await client.get(f"/s/{case}")
        started = await client.get(f"/a/{case}")
        call_id = started.headers["X-Call-Id"]
        async with asyncio.timeout(5):
            while (done := await client.get(f"/calls/{call_id}")).status == 202:
                await asyncio.sleep(0.02)
        # Then both answer with the rest of the reply, and say what was dropped
        for r in (sync, done):
            assert (r.status, await r.read(), r.headers["x-good"]) == (200, b"hi", "kept")
            assert r.headers["x-tab"] == "a\tb"
            assert "Set-Cookie" not in r.headers and "X-Injected" not in r.headers
        assert "dropped reply headers" in caplog.text
        assert not [rec for rec in caplog.records if rec.exc_info]


def test_a_stored_result_with_such_headers_is_malformed() -> None:
    raw = msgpack.packb({"s": DONE, "c": 200, "h": {"x": "a\r\nb"}, "b": b""}, use_bin_type=True)
    with pytest.raises(ValueError, match="h must be a map of header names"):
        CallResult.decode(raw)
