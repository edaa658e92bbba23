"""Commands packed by hiredis: the same bytes redis-py's own packer sends."""

from __future__ import annotations

import pytest
from kubefuncs.transport._valkey_pack import hiredis_packing
from kubefuncs.transport.valkey import ValkeyTransport
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.exceptions import DataError

COMMANDS = [
    ("PING",),
    ("CLIENT SETNAME", "kf"),  # several words in the first argument
    (b"CONFIG GET", b"maxmemory"),
    ("XADD", "kf:topic:t", "*", "m", b"\x00\xff body", "a", 3),
    ("EVAL", "return 1", 1, "k", 60_000, 1.5, 10**20, "é"),
    ("SET", "k", memoryview(b"view"), bytearray(b"array")),
    ("XACK", "s", "g", *[b"1795348010894-%d" % i for i in range(600)]),  # past the buffer cutoff
]


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: str(a[0]))
def test_packs_the_bytes_redis_py_packs(args: tuple[object, ...]) -> None:
    ours = hiredis_packing(Connection)()
    assert b"".join(ours.pack_command(*args)) == b"".join(Connection().pack_command(*args))


@pytest.mark.parametrize("bad", [None, True, object()])
def test_refuses_what_redis_py_refuses(bad: object) -> None:
    with pytest.raises(DataError, match="Invalid input of type"):
        hiredis_packing(Connection)().pack_command("SET", "k", bad)


def test_every_connection_kind_keeps_its_class() -> None:
    for cls in (Connection, SSLConnection, UnixDomainSocketConnection):
        packed = hiredis_packing(cls)
        assert issubclass(packed, cls) and hiredis_packing(cls) is packed
    for url in ("valkey://h:1/0", "valkeys://h:1/0", "unix:///tmp/valkey.sock"):
        pool = ValkeyTransport(url).redis.connection_pool
        assert pool.connection_class.__name__.startswith("Packed"), url
