"""A deliberately small NSQ V2 client over raw sockets, used to pin down wire behaviour in tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

from . import protocol as p


class FrameError(AssertionError):
    """The server answered with an error frame where a response was expected."""


class RawClient:
    """Reads frames in the background: responses, errors and messages land in separate queues.

    ``auto_nop`` answers each ``_heartbeat_`` with NOP like a well-behaved client.
    """

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, auto_nop: bool
    ) -> None:
        self._reader = reader
        self._writer = writer
        self.auto_nop = auto_nop
        self.responses: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue()
        self.messages: asyncio.Queue[p.DecodedMessage] = asyncio.Queue()
        self.heartbeats = 0
        self.closed = asyncio.Event()
        self._task = asyncio.create_task(self._read_frames())

    @classmethod
    async def connect(cls, address: str, *, auto_nop: bool = True) -> RawClient:
        host, port = address.rsplit(":", 1)
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(p.MAGIC_V2)
        return cls(reader, writer, auto_nop)

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    # --- sending ---

    def send(self, line: str, body: bytes | None = None) -> None:
        data = line.encode() + b"\n"
        if body is not None:
            data += p.pack_int32(len(body)) + body
        self._writer.write(data)

    def write(self, data: bytes) -> None:
        """Raw bytes, for framing the helpers above would not produce."""
        self._writer.write(data)

    async def command(self, line: str, body: bytes | None = None, within: float = 2.0) -> bytes:
        """Send a command that answers with a response frame and return its payload."""
        self.send(line, body)
        return await self.response(within)

    async def identify(self, **data: Any) -> dict[str, Any]:
        data.setdefault("feature_negotiation", True)
        raw = await self.command("IDENTIFY", json.dumps(data).encode())
        return dict(json.loads(raw)) if data["feature_negotiation"] else {"raw": raw}

    async def subscribe(self, topic: str, channel: str, rdy: int | None = None) -> None:
        assert await self.command(f"SUB {topic} {channel}") == p.OK
        if rdy is not None:
            self.send(f"RDY {rdy}")

    async def pub(self, topic: str, body: bytes) -> bytes:
        return await self.command(f"PUB {topic}", body)

    async def mpub(self, topic: str, bodies: list[bytes]) -> bytes:
        return await self.command(f"MPUB {topic}", p.encode_mpub_body(bodies))

    async def dpub(self, topic: str, defer_ms: int, body: bytes) -> bytes:
        return await self.command(f"DPUB {topic} {defer_ms}", body)

    def fin(self, msg: p.DecodedMessage) -> None:
        self.send(f"FIN {msg.id.decode()}")

    def req(self, msg: p.DecodedMessage, delay_ms: int = 0) -> None:
        self.send(f"REQ {msg.id.decode()} {delay_ms}")

    def touch(self, msg: p.DecodedMessage) -> None:
        self.send(f"TOUCH {msg.id.decode()}")

    # --- receiving ---

    async def frame(self, within: float = 2.0) -> tuple[int, bytes]:
        """Next response or error frame (heartbeats are counted, not returned)."""
        return await asyncio.wait_for(self.responses.get(), within)

    async def response(self, within: float = 2.0) -> bytes:
        frame_type, data = await self.frame(within)
        if frame_type == p.FRAME_ERROR:
            raise FrameError(data.decode())
        return data

    async def error(self, within: float = 2.0) -> str:
        frame_type, data = await self.frame(within)
        assert frame_type == p.FRAME_ERROR, f"expected an error frame, got {data!r}"
        return data.decode()

    async def message(self, within: float = 2.0) -> p.DecodedMessage:
        return await asyncio.wait_for(self.messages.get(), within)

    async def messages_for(self, count: int, within: float = 2.0) -> list[p.DecodedMessage]:
        return [await self.message(within) for _ in range(count)]

    async def assert_no_message(self, within: float) -> None:
        try:
            msg = await asyncio.wait_for(self.messages.get(), within)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected message {msg}")

    async def wait_closed(self, within: float) -> None:
        await asyncio.wait_for(self.closed.wait(), within)

    async def _read_frames(self) -> None:
        try:
            while True:
                size = p.unpack_int32(await self._reader.readexactly(4))
                payload = await self._reader.readexactly(size)
                self._dispatch(p.unpack_int32(payload), payload[4:])
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.closed.set()

    def _dispatch(self, frame_type: int, data: bytes) -> None:
        if frame_type == p.FRAME_MESSAGE:
            self.messages.put_nowait(p.decode_message(data))
        elif frame_type == p.FRAME_RESPONSE and data == p.HEARTBEAT:
            self.heartbeats += 1
            if self.auto_nop and not self._writer.is_closing():
                self.send("NOP")
        else:
            self.responses.put_nowait((frame_type, data))


ClientFactory = Callable[..., Awaitable[RawClient]]
"""Signature of the ``connect`` fixture: ``await connect(auto_nop=True, address=None)``."""
