"""Commands packed in C on the asyncio connections.

redis-py's asyncio connection packs a command in Python, argument by argument, joining the
buffer again for each one: about 87 us for one merged reply-and-ack of 16 messages, where
hiredis' ``pack_command`` (the one its synchronous client uses) takes about 15 us. The
batched commands of the hot paths (merged publishes, replies and acks, XREADGROUP) are
exactly those. Same bytes on the wire, same errors for arguments it cannot send.
"""

from __future__ import annotations

from typing import Any

import hiredis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import DataError

_PACKING: dict[type[AbstractConnection], type[AbstractConnection]] = {}


class _HiredisPacking:
    def pack_command(self, *args: Any) -> list[bytes]:
        head = args[0]
        # as redis-py: a first argument like "CLIENT SETNAME" is several words
        if isinstance(head, str):
            args = (*head.encode().split(), *args[1:])
        elif b" " in head:
            args = (*head.split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError:
            pass
        # memoryview / bytearray arguments, or ones it cannot send (bool, None): say which
        args = tuple(bytes(a) if isinstance(a, bytearray | memoryview) else a for a in args)
        for arg in args:
            if arg.__class__ not in (bytes, str, int, float):
                raise DataError(
                    f"Invalid input of type: {type(arg).__name__!r}. "
                    "Convert to a bytes, string, int or float first."
                )
        return [hiredis.pack_command(args)]


def hiredis_packing(cls: type[AbstractConnection]) -> type[AbstractConnection]:
    """``cls`` (TCP, TLS or unix socket connection) with commands packed by hiredis."""
    packing = _PACKING.get(cls)
    if packing is None:
        packing = _PACKING[cls] = type(f"Packed{cls.__name__}", (_HiredisPacking, cls), {})
    return packing
