"""The asyncio face of pynsq's ``AsyncConn``: one TCP connection (protocol V2) to one nsqd.

pynsq does the framing, IDENTIFY negotiation, heartbeats and message decoding on tornado,
which runs on the asyncio loop (tornado >= 5); this module turns its events into awaitables.
Connections must be created inside the running loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
from collections import deque
from collections.abc import Callable
from typing import Any

import nsq
from nsq import protocol
from tornado.iostream import StreamClosedError

from ..errors import TransportError, Undeliverable
from ._nsq_config import NsqConfig, split_address

log = logging.getLogger("kubefuncs.transport.nsq")

USER_AGENT = f"kubefuncs-pynsq/{nsq.__version__}"
CLS = b"CLS\n"
# error frames that answer a FIN/REQ/TOUCH (which have no success response), not a command
_SETTLE_ERRORS = (b"E_FIN_FAILED", b"E_REQ_FAILED", b"E_TOUCH_FAILED")
# the largest frame read: beyond it the peer is not an nsqd we can talk to (nsqd's own limit
# is its --max-msg-size, 1 MiB by default, plus the 30 bytes of message header)
MAX_FRAME_BYTES = 64 * 1024 * 1024
_MESSAGE_HEADER_BYTES = 8 + 2 + 16
_FRAME_TYPES = (
    protocol.FRAME_TYPE_RESPONSE,
    protocol.FRAME_TYPE_ERROR,
    protocol.FRAME_TYPE_MESSAGE,
)
_MAX_MSG_TIMEOUT_MS = 24 * 3600 * 1000


class ProtocolViolation(Exception):
    """What the peer sent is not NSQ protocol V2 as nsqd speaks it."""


def check_frame(data: bytes) -> None:
    """Raise ProtocolViolation unless ``data`` (a frame without its size) is one nsqd sends."""
    if len(data) < 4:
        raise ProtocolViolation(f"frame of {len(data)} bytes has no frame type")
    (frame_type,) = struct.unpack_from(">l", data)
    if frame_type not in _FRAME_TYPES:
        raise ProtocolViolation(f"unknown frame type {frame_type}")
    if frame_type == protocol.FRAME_TYPE_MESSAGE and len(data) < 4 + _MESSAGE_HEADER_BYTES:
        raise ProtocolViolation(f"message frame of {len(data)} bytes is shorter than a header")


def check_identify(data: object) -> dict[str, Any]:
    """The IDENTIFY answer as a dict with sane ``max_rdy_count``/``msg_timeout``."""
    if not isinstance(data, dict):
        raise ProtocolViolation(f"IDENTIFY answer is not a JSON object: {data!r:.80}")
    for key, high in (("max_rdy_count", 1_000_000), ("msg_timeout", _MAX_MSG_TIMEOUT_MS)):
        value = data.get(key)
        if value is not None and not (type(value) is int and 0 < value <= high):
            raise ProtocolViolation(f"IDENTIFY answer has {key} {value!r:.40}, not 1..{high}")
    return data


class NsqdRefused(Undeliverable):
    """nsqd answered a command with an error frame (E_BAD_TOPIC, E_BAD_MESSAGE, ...)."""


class _AsyncConn(nsq.AsyncConn):  # type: ignore[misc]
    """pynsq's connection, closed (then redialled by its owner, with backoff) on anything
    that is not nsqd's protocol: pynsq itself logs such input and reads on, out of step."""

    def _connect_callback(self, fut: Any) -> None:
        # pynsq re-raises a failed connect inside a loop callback (an "Exception in
        # callback" log); the stream's close callback reports the failure to us anyway
        if fut.exception() is None:
            super()._connect_callback(fut)

    def _read_size(self, fut: Any) -> None:
        if fut.exception() is None and len(fut.result()) == 4:
            (size,) = struct.unpack(">l", fut.result())
            if not 4 <= size <= MAX_FRAME_BYTES:
                self._violation(f"frame size {size} out of range 4..{MAX_FRAME_BYTES}")
                return
        super()._read_size(fut)

    def _on_data(self, data: bytes, **kwargs: Any) -> None:
        try:
            check_frame(data)
        except ProtocolViolation as e:
            self._violation(str(e))
            return
        super()._on_data(data, **kwargs)

    def _on_identify_response(self, data: bytes, **kwargs: Any) -> None:
        if data != b"OK":
            try:
                check_identify(json.loads(data.decode("utf-8")))
            except (ValueError, ProtocolViolation) as e:
                self.off(nsq.event.RESPONSE, self._on_identify_response)
                self._violation(f"bad IDENTIFY answer: {e}")
                return
        super()._on_identify_response(data, **kwargs)

    def _violation(self, why: str) -> None:
        log.warning(
            "nsqd %s:%s broke the protocol (%s): closing, will reconnect", self.host, self.port, why
        )
        if self.stream is not None and not self.stream.closed():
            self.stream.close()


class NsqdConn:
    """One connection. ``on_message``/``on_close`` are called from the loop, synchronously."""

    def __init__(
        self,
        address: str,
        config: NsqConfig,
        *,
        on_message: Callable[[Any], None] | None = None,
        on_close: Callable[[NsqdConn], None] | None = None,
    ) -> None:
        self.address = address
        self.on_message = on_message
        self.on_close = on_close
        self.msg_timeout_s: float | None = None  # as negotiated in IDENTIFY
        self.closed = False
        host, port = split_address(address)
        self.raw = _AsyncConn(
            host,
            port,
            timeout=float(config.dial_timeout_s),
            heartbeat_interval=config.heartbeat_interval_s,
            msg_timeout=config.msg_timeout_s,
            output_buffer_timeout=config.output_buffer_timeout_ms,
            user_agent=USER_AGENT,
        )
        self._pending: deque[asyncio.Future[bytes]] = deque()
        self._ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.raw.on("identify_response", self._on_identify_response)
        self.raw.on("ready", self._on_ready)
        self.raw.on("error", self._on_error)
        self.raw.on("close", self._on_close)
        self.raw.on("message", self._on_message)

    @property
    def alive(self) -> bool:
        stream = self.raw.stream
        return not self.closed and self.raw.connected() and not (stream and stream.closed())

    async def open(self, timeout_s: float) -> NsqdConn:
        """Connect and IDENTIFY; TransportError when nsqd cannot be reached in time."""
        self.raw.connect()
        try:
            async with asyncio.timeout(timeout_s):
                await asyncio.shield(self._ready)
        except TimeoutError:
            self.close()
            raise TransportError(
                f"nsqd {self.address} did not answer within {timeout_s:g}s"
            ) from None
        return self

    def stale(self, now: float) -> bool:
        """Silent for more than two heartbeat intervals: the peer is gone without a FIN."""
        limit_s = 2 * self.raw.heartbeat_interval / 1000 + 1
        return self.alive and now - self.raw.last_recv_timestamp > limit_s

    def send(self, data: bytes) -> None:
        """Write a command that nsqd does not answer (RDY, FIN, REQ, TOUCH, NOP)."""
        if not self.alive:
            raise TransportError(f"connection to nsqd {self.address} is closed")
        try:
            self.raw.send(data)
        except StreamClosedError as e:
            self.close()
            raise TransportError(f"connection to nsqd {self.address} lost: {e}") from e

    async def command(self, data: bytes, timeout_s: float = 5.0) -> bytes:
        """Write a command that nsqd answers (SUB, PUB, DPUB, CLS) and return the answer."""
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending.append(future)
        try:
            self.send(data)
        except TransportError:
            self._pending.remove(future)
            raise
        try:
            async with asyncio.timeout(timeout_s):
                return await future
        except TimeoutError:
            self.close()
            raise TransportError(
                f"nsqd {self.address} did not answer within {timeout_s:g}s"
            ) from None

    async def publish(self, topic: str, body: bytes, delay_ms: int = 0) -> None:
        if delay_ms > 0:
            await self.command(protocol.dpub(topic, delay_ms, body))
        else:
            await self.command(protocol.pub(topic, body))

    def close(self) -> None:
        if self.raw.stream is not None and not self.raw.closed():
            self.raw.close()
        self._closed()

    # -- pynsq events ----------------------------------------------------------------------

    def _on_identify_response(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("msg_timeout"):  # checked by _AsyncConn: a positive number of ms
            self.msg_timeout_s = int(data["msg_timeout"]) / 1000

    def _on_ready(self, **_: Any) -> None:
        # registered only now: pynsq consumes the IDENTIFY answer itself
        self.raw.on("response", self._on_response)
        if not self._ready.done():
            self._ready.set_result(None)

    def _on_response(self, data: bytes, **_: Any) -> None:
        if self._pending:
            future = self._pending.popleft()
            if not future.done():
                future.set_result(data)

    def _on_error(self, error: Exception, **_: Any) -> None:
        text = _text(error)
        if not self.alive:  # pynsq reports a read on the closed socket; the close says it all
            log.debug("nsqd %s: %s", self.address, text)
            return
        if text.encode().startswith(_SETTLE_ERRORS):
            log.info("nsqd %s: %s", self.address, text)  # e.g. FIN after the msg_timeout
            return
        log.warning("nsqd %s: %s", self.address, text)
        failure = NsqdRefused(f"nsqd {self.address}: {text}")
        if not self._ready.done():
            self._ready.set_exception(failure)
        elif self._pending:
            future = self._pending.popleft()
            if not future.done():
                future.set_exception(failure)
        # every other error is fatal in nsqd (FatalClientErr): it closes the connection
        # right after, so nothing more may be sent on this one
        self.close()

    def _on_message(self, message: Any, **_: Any) -> None:
        if self.on_message is not None:
            self.on_message(message)

    def _on_close(self, **_: Any) -> None:
        self._closed()

    def _closed(self) -> None:
        if self.closed:
            return
        self.closed = True
        lost = TransportError(f"connection to nsqd {self.address} closed")
        if not self._ready.done():
            self._ready.set_exception(lost)
        while self._pending:
            future = self._pending.popleft()
            if not future.done():
                future.set_exception(lost)
        if self.on_close is not None:
            self.on_close(self)


def _text(error: Exception) -> str:
    first = error.args[0] if error.args else None
    if isinstance(first, bytes):  # nsq.Error(frame data) from an error frame
        return first.decode(errors="replace")
    return str(error) or type(error).__name__
