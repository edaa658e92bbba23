"""Hostile or broken peers never stop an NSQ loop: an nsqlookupd answering garbage, an
"nsqd" sending frames that are not NSQ protocol. The transport logs the cause, drops the
connection, retries with backoff, and carries on once the peer is sane again."""

from __future__ import annotations

import asyncio
import json
import logging
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest
from aiohttp import web
from kubefuncs.errors import TransportError
from kubefuncs.transport import from_url
from kubefuncs.transport.nsq import NsqTransport

from tests.nsq.support import DOUBLE, Pump, eventually
from tests.nsq_double import running_nsqd
from tests.servers import free_port

OPTIONS = "lookupd_poll_interval_s=0.2&dial_timeout_s=0.5"

GARBAGE_NODES: list[tuple[str, str | bytes]] = [
    ("text/html", b"<html><body>502 Bad Gateway</body></html>"),
    ("application/json", b"{not json"),
    ("application/json", b"[1, 2, 3]"),
    ("application/json", b'{"producers": [{"tcp_port": "x", "http_port": 4151}]}'),
    ("application/json", b'{"producers": [7]}'),
    ("application/json", b'{"producers": "everyone"}'),
]


class SwitchableLookupd:
    """An nsqlookupd that answers /nodes like ``real`` until told to answer garbage."""

    def __init__(self, real: str) -> None:
        self.real = real
        self.port = free_port()
        self.body: bytes | None = None
        self.content_type = ""

    def say(self, body: bytes | None, content_type: str = "application/json") -> None:
        self.body, self.content_type = body, content_type

    async def _nodes(self, request: web.Request) -> web.Response:
        if self.body is None:
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"http://{self.real}/nodes") as resp,
            ):
                return web.Response(body=await resp.read(), content_type="application/json")
        return web.Response(body=self.body, content_type=self.content_type)

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[SwitchableLookupd]:
        app = web.Application()
        app.router.add_get("/nodes", self._nodes)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        try:
            yield self
        finally:
            await runner.cleanup()


@pytest.mark.parametrize(("content_type", "body"), GARBAGE_NODES)
async def test_a_lookupd_answering_garbage_is_an_error_not_a_crash(
    content_type: str, body: bytes
) -> None:
    # Given an nsqlookupd that answers /nodes with something that is not a node list
    async with running_nsqd(with_lookupd=True, **DOUBLE) as nsqd:
        assert nsqd.lookupd is not None
        async with SwitchableLookupd(nsqd.lookupd.http_address).serving() as lookupd:
            lookupd.say(body, content_type)
            transport = from_url(f"nsq://127.0.0.1:{lookupd.port}?{OPTIONS}")
            try:
                # When the transport connects: Then a TransportError says why
                with pytest.raises(TransportError, match=r"nsqlookupd|nsqd"):
                    await transport.connect()
            finally:
                await transport.close()


async def test_a_lookupd_turning_to_garbage_keeps_the_known_nodes_and_the_loops(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a transport consuming through a healthy nsqlookupd
    async with running_nsqd(with_lookupd=True, **DOUBLE) as nsqd:
        assert nsqd.lookupd is not None
        async with SwitchableLookupd(nsqd.lookupd.http_address).serving() as lookupd:
            transport = from_url(f"nsq://127.0.0.1:{lookupd.port}?{OPTIONS}")
            assert isinstance(transport, NsqTransport)
            try:
                await transport.connect()
                pump = Pump(await transport.subscribe("faulty", "ch", max_in_flight=4))
                # When it answers garbage for several polls
                for content_type, body in GARBAGE_NODES:
                    lookupd.say(body, content_type)
                    await asyncio.sleep(0.3)
                # Then nothing died: the nodes are kept, messages still flow
                assert transport._supervisor is not None and not transport._supervisor.done()
                assert [n.tcp for n in transport.nodes] == [nsqd.tcp_address]
                await transport.publish("faulty", b"still here")
                (delivery,) = await pump.take(1)
                assert delivery.body == b"still here"
                await delivery.ack()
                assert "no nsqlookupd answered" in caplog.text
                # And once it is sane again, polls go on as before
                lookupd.say(None)
                await eventually(lambda: "no nsqlookupd" not in _last_warning(caplog))
                await pump.stop()
            finally:
                await transport.close()


def _last_warning(caplog: pytest.LogCaptureFixture) -> str:
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    caplog.clear()
    return warnings[-1] if warnings else ""


def _frame(frame_type: int, data: bytes) -> bytes:
    return struct.pack(">ll", len(data) + 4, frame_type) + data


BAD_NSQD = {
    "huge frame size": struct.pack(">l", 2**31 - 1) + b"xxxx",
    "negative frame size": struct.pack(">l", -8),
    "unknown frame type": _frame(9, b"{}"),
    "identify not json": _frame(0, b"\xff\xfe garbage"),
    "identify a list": _frame(0, b"[1]"),
    "identify bad max_rdy_count": _frame(0, json.dumps({"max_rdy_count": "lots"}).encode()),
    "identify zero msg_timeout": _frame(0, json.dumps({"msg_timeout": 0}).encode()),
}


class BadNsqd:
    """Accepts NSQ connections and answers the IDENTIFY with ``answer``; counts them."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def start(self, port: int) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", port)

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await reader.readexactly(4)  # magic
            await reader.readuntil(b"\n")  # IDENTIFY
            size = struct.unpack(">l", await reader.readexactly(4))[0]
            await reader.readexactly(size)
            writer.write(self.answer)
            await writer.drain()
            await reader.read()  # until the client hangs up
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.mark.parametrize("answer", list(BAD_NSQD.values()), ids=list(BAD_NSQD))
async def test_an_nsqd_breaking_the_protocol_is_dropped_and_redialled(
    answer: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a consumer of an "nsqd" that answers IDENTIFY with garbage
    tcp_port, http_port = free_port(), free_port()
    bad = BadNsqd(answer)
    await bad.start(tcp_port)
    nsqd = f"127.0.0.1:{tcp_port}"
    url = f"nsq://?nsqd={nsqd}&nsqd_http=127.0.0.1:{http_port}&{OPTIONS}"
    transport = from_url(url)
    assert isinstance(transport, NsqTransport)
    pump = None
    try:
        pump = Pump(await transport.subscribe("broken", "ch", max_in_flight=2))
        # When it keeps doing so: Then the link is dropped and redialled with backoff
        await eventually(lambda: bad.connections >= 3, within_s=5)
        assert "broke the protocol" in caplog.text or "IDENTIFY" in caplog.text
        assert transport._supervisor is not None and not transport._supervisor.done()
        # And when a real nsqd takes the port over, messages flow
        await bad.stop()
        async with running_nsqd(tcp_port=tcp_port, http_port=http_port, **DOUBLE):
            await transport.publish("broken", b"finally")
            (delivery,) = await pump.take(1, timeout_s=10)
            assert delivery.body == b"finally"
            await delivery.ack()
            await pump.stop()
    finally:
        await transport.close()
