"""Wire-level pieces of the NSQ TCP protocol V2 shared by the nsqd double and its tests."""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

MAGIC_V2 = b"  V2"

FRAME_RESPONSE = 0
FRAME_ERROR = 1
FRAME_MESSAGE = 2

HEARTBEAT = b"_heartbeat_"
OK = b"OK"
CLOSE_WAIT = b"CLOSE_WAIT"

MSG_ID_LENGTH = 16
EPHEMERAL_SUFFIX = "#ephemeral"

# nsqd's internal/protocol/names.go: same rule for topics and channels, byte length 1..64
# (Go's $ is the end of the text; Python's also matches before a final newline: fullmatch)
_NAME_RE = re.compile(r"[.a-zA-Z0-9_-]+(#ephemeral)?")

_FRAME_HEADER = struct.Struct(">ii")
_MESSAGE_HEADER = struct.Struct(">qH")
_INT32 = struct.Struct(">i")


def is_valid_name(name: str) -> bool:
    """Topic/channel name check exactly as nsqd applies it."""
    return 1 <= len(name.encode()) <= 64 and _NAME_RE.fullmatch(name) is not None


def is_ephemeral(name: str) -> bool:
    return name.endswith(EPHEMERAL_SUFFIX)


def go_quote(value: str) -> str:
    """Approximates Go's %q, which nsqd uses when echoing names in error descriptions."""
    return json.dumps(value, ensure_ascii=False)


def encode_frame(frame_type: int, data: bytes) -> bytes:
    # size covers the 4-byte frame type plus the payload
    return _FRAME_HEADER.pack(len(data) + 4, frame_type) + data


def encode_message(timestamp_ns: int, attempts: int, msg_id: bytes, body: bytes) -> bytes:
    return _MESSAGE_HEADER.pack(timestamp_ns, attempts) + msg_id + body


@dataclass(frozen=True)
class DecodedMessage:
    """A message frame's payload as a client sees it."""

    timestamp_ns: int
    attempts: int
    id: bytes
    body: bytes


def decode_message(data: bytes) -> DecodedMessage:
    timestamp_ns, attempts = _MESSAGE_HEADER.unpack_from(data)
    start = _MESSAGE_HEADER.size
    msg_id = data[start : start + MSG_ID_LENGTH]
    return DecodedMessage(timestamp_ns, attempts, msg_id, data[start + MSG_ID_LENGTH :])


def pack_int32(value: int) -> bytes:
    return _INT32.pack(value)


def unpack_int32(data: bytes, offset: int = 0) -> int:
    return int(_INT32.unpack_from(data, offset)[0])


def parse_base10(raw: bytes) -> int:
    """Mirrors nsqd's ByteToBase10: digits only (no sign), empty input parses as 0, and the
    result is a uint64 that silently wraps around (internal/protocol/byte_base10.go)."""
    if any(c < 0x30 or c > 0x39 for c in raw):
        raise ValueError(f"failed to convert {raw!r}")
    return (int(raw) if raw else 0) % 2**64


def go_int64(value: int) -> int:
    """Go's int64(x) conversion (and int64 arithmetic): two's complement wrap-around."""
    value %= 2**64
    return value - 2**64 if value >= 2**63 else value


def millis_duration_ns(millis: int) -> int:
    """``time.Duration(ms) * time.Millisecond`` for a uint64 ``ms``, overflow included."""
    return go_int64(go_int64(millis) * 1_000_000)


class ClientError(Exception):
    """An error nsqd reports to the client as an error frame ``"<code> <description>"``.

    Fatal errors close the connection after the frame is written, like nsqd's FatalClientErr.
    """

    def __init__(self, code: str, description: str, *, fatal: bool = True) -> None:
        super().__init__(f"{code} {description}")
        self.code = code
        self.description = description
        self.fatal = fatal

    @property
    def wire(self) -> bytes:
        return f"{self.code} {self.description}".encode()


def fatal(code: str, description: str) -> ClientError:
    return ClientError(code, description, fatal=True)


def non_fatal(code: str, description: str) -> ClientError:
    return ClientError(code, description, fatal=False)


class Exhausted(Exception):
    """``take`` found fewer bytes than asked for."""


async def parse_mpub_body(body: bytes, max_msg_size: int, max_body_size: int) -> list[bytes]:
    """Decode an MPUB payload (count + size-prefixed bodies) with nsqd's error codes."""
    offset = 0

    async def take(size: int) -> bytes:
        nonlocal offset
        if offset + size > len(body):
            raise Exhausted
        offset += size
        return body[offset - size : offset]

    return await read_mpub(take, max_msg_size, max_body_size)


async def read_mpub(
    take: Callable[[int], Awaitable[bytes]], max_msg_size: int, max_body_size: int
) -> list[bytes]:
    """nsqd's readMPUB over ``take(n)`` (n bytes, or raises when there are not that many).

    Over TCP nsqd reads the messages straight from the connection, not from a buffer of the
    announced body size (protocol_v2.go readMPUB), so ``take`` may read past it."""
    try:
        count = unpack_int32(await take(4))
    except Exhausted:
        raise fatal("E_BAD_BODY", "MPUB failed to read message count") from None
    # each message needs at least 4 bytes of length and 1 byte of body
    if count <= 0 or count > (max_body_size - 4) // 5:
        raise fatal("E_BAD_BODY", f"MPUB invalid message count {count}")
    messages = []
    for index in range(count):
        try:
            size = unpack_int32(await take(4))
        except Exhausted:
            desc = f"MPUB failed to read message({index}) body size"
            raise fatal("E_BAD_MESSAGE", desc) from None
        if size <= 0:
            raise fatal("E_BAD_MESSAGE", f"MPUB invalid message({index}) body size {size}")
        if size > max_msg_size:
            raise fatal("E_BAD_MESSAGE", f"MPUB message too big {size} > {max_msg_size}")
        try:
            messages.append(await take(size))
        except Exhausted:
            raise fatal("E_BAD_MESSAGE", "MPUB failed to read message body") from None
    return messages


def encode_mpub_body(bodies: list[bytes]) -> bytes:
    parts = [pack_int32(len(bodies))]
    for body in bodies:
        parts.append(pack_int32(len(body)))
        parts.append(body)
    return b"".join(parts)
