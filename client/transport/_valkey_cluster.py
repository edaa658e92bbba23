"""The Valkey backend on a Valkey Cluster (or Redis Cluster 7+).

URL: ``valkey+cluster://[user:password@]host:port,host:port[/][?prefix=kf&...]`` (also
``valkeys+cluster://`` with TLS, ``redis+cluster://``, ``rediss+cluster://``). Every listed
node is a seed; the client learns the rest from the cluster. A cluster has no database
index, so a path other than ``/`` or ``/0`` is refused.

Layout (docs/protocol.md, "On a cluster"): the topic name is the hash tag, so a topic's
stream, its channels' retry and dead-letter streams and their delay sets share one slot:
``kf:topic:{T}``, ``kf:retry:{T}:C``, ``kf:dead:{T}:C``, ``kf:delayed:kf:topic:{T}``,
de-duplication keys ``kf:dedupe:{T}:<sha256>``. A reply inbox is ``kf:reply:{<id>}``, its
own slot. The registries ``kf:streams`` and ``kf:delayed`` are single keys, only ever
touched by single-key commands. Every script names its keys in KEYS, all of one slot.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import unquote, urlsplit

from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import EqualJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..errors import ConfigError
from ..wire import new_id
from . import _valkey_scripts as scripts
from ._valkey_pack import hiredis_packing
from ._valkey_sub import ValkeyDelivery
from .base import Delivery
from .valkey import Keys, ValkeyTransport, delayed_member

DEFAULT_PORT = 6379
SCHEMES = {
    "valkey+cluster": False,
    "redis+cluster": False,
    "valkeys+cluster": True,
    "rediss+cluster": True,
}


class ClusterKeys(Keys):
    """Key names of one prefix on a cluster: the topic is the hash tag of its keys."""

    def __init__(self, prefix: str) -> None:
        if "{" in prefix or "}" in prefix:
            raise ConfigError(
                "bus URL", f"prefix {prefix!r} must not contain braces on a cluster (hash tags)"
            )
        super().__init__(prefix)

    def topic(self, topic: str) -> str:
        return f"{self.prefix}:topic:{{{topic}}}"

    def retry(self, topic: str, channel: str) -> str:
        return f"{self.prefix}:retry:{{{topic}}}:{channel}"

    def dead(self, topic: str, channel: str) -> str:
        return f"{self.prefix}:dead:{{{topic}}}:{channel}"

    def reply(self) -> str:
        return f"{self.reply_prefix}{{{new_id()}}}"

    def dedupe(self, topic: str, key: str) -> str:
        return f"{self.prefix}:dedupe:{{{topic}}}:{self.digest(f'{topic}|{key}')}"


def seeds(url: str) -> list[tuple[str, int]]:
    """The ``(host, port)`` seeds of a cluster URL (``host``, ``host:port`` or
    ``[v6]:port``, port 6379 when left out); ConfigError when there are none, a node is
    not of that form, or the URL names a database."""
    parts = urlsplit(url)
    if parts.path not in ("", "/", "/0"):
        raise ConfigError(
            "bus URL", f"{parts.path!r} in {_shown(url)}: a cluster has no database index"
        )
    items = [i.strip() for i in parts.netloc.rpartition("@")[2].split(",") if i.strip()]
    if not items:
        raise ConfigError("bus URL", f"{_shown(url)} names no cluster node (host:port,...)")
    return [_node(url, item) for item in items]


def _node(url: str, item: str) -> tuple[str, int]:
    if item.startswith("["):
        host, _, rest = item[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ("" if not rest else "x")
    else:
        host, _, port = item.partition(":")
    port = port or str(DEFAULT_PORT)
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(
            "bus URL", f"node {item!r} in {_shown(url)} is not host, host:port or [v6]:port"
        )
    return host, int(port)


def _shown(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"


# commands of this transport whose one key (or first of keys of one slot) is the first
# argument: their slot is that key's, found here without redis-py's generic look-up
FIRST_KEY = frozenset(
    b"XACK XADD XAUTOCLAIM XCLAIM XPENDING XRANGE XLEN XDEL XTRIM ZADD ZCARD ZRANGE SADD "
    b"SREM SMEMBERS SCARD GET SET DEL EXISTS LPOP RPUSH PEXPIRE TYPE".split()
)
SLOT_CACHE_SIZE = 10_000


class _Cluster(RedisCluster):
    """RedisCluster that finds the slot of this transport's commands itself: redis-py asks
    a node (COMMAND GETKEYS, one more round trip) for every command with movable keys
    (XREADGROUP, BLMPOP), and its generic look-up costs tens of microseconds a command on
    the hot paths (XACK, XADD, EVAL). The key -> slot results are cached (keys repeat)."""

    _slots: dict[Any, int]

    async def _determine_slot(self, command: Any, *args: Any) -> int:
        key = _first_key(command, args)
        if key is None:
            slot_of: int = await super()._determine_slot(command, *args)
            return slot_of
        cache: dict[Any, int] = self.__dict__.setdefault("_slots", {})
        slot = cache.get(key)
        if slot is None:
            if len(cache) >= SLOT_CACHE_SIZE:
                cache.clear()
            slot = cache[key] = self.keyslot(key)
        return slot


def _first_key(command: Any, args: tuple[Any, ...]) -> Any:
    """The key that decides the slot of ``command args``, or None to ask redis-py."""
    name = (command.encode() if isinstance(command, str) else bytes(command)).upper()
    if name in FIRST_KEY and args:
        return args[0]
    if name in (b"EVAL", b"EVALSHA") and len(args) > 2 and int(args[1]) > 0:
        return args[2]  # the scripts' keys share a slot (a server refuses them otherwise)
    if name in (b"XREADGROUP", b"XREAD"):
        words = [a.upper() if isinstance(a, str) else a for a in args]
        if "STREAMS" in words:
            return args[words.index("STREAMS") + 1]
    if name == b"BLMPOP" and len(args) > 2:
        return args[2]
    return None


def cluster_client(url: str, password: str | None) -> RedisCluster:
    parts = urlsplit(url)
    user = unquote(parts.username) if parts.username else None
    secret = password or (unquote(parts.password) if parts.password else None)
    nodes = [ClusterNode(host, port) for host, port in seeds(url)]
    client = _Cluster(
        startup_nodes=nodes,
        username=user,
        password=secret,
        ssl=SCHEMES.get(parts.scheme, False),
        retry=Retry(EqualJitterBackoff(cap=1.0, base=0.05), 3),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        socket_connect_timeout=5,
        socket_timeout=None,
        socket_keepalive=True,
    )
    packed: Any = hiredis_packing(client.connection_kwargs["connection_class"])
    client.connection_kwargs["connection_class"] = packed
    client.nodes_manager.connection_kwargs["connection_class"] = packed
    for node in client.nodes_manager.startup_nodes.values():
        node.connection_class = packed
    return client


class ValkeyClusterTransport(ValkeyTransport):
    """The Valkey transport on a cluster; see the module docstring for the layout."""

    keys: ClusterKeys

    def _make_keys(self, prefix: str) -> Keys:
        return ClusterKeys(prefix)

    def _make_client(self, url: str, password: str | None) -> Any:
        return cluster_client(url, password)

    @property
    def safe_url(self) -> str:
        return _shown(self.url)

    async def publish_once(
        self, topic: str, body: bytes, *, key: str, window_s: float, id: str, delay_s: float = 0.0
    ) -> str:
        target, item, due = await self._once_target(topic, body, delay_s)
        if delay_s > 0:
            await self.call("SADD", self.keys.delayed_index, target)
        keys = (self.keys.dedupe(topic, key), target)
        window_ms = max(1, int(window_s * 1000))
        first = await self.call("EVAL", scripts.PUBLISH_ONCE, 2, *keys, id, window_ms, item, due)
        if delay_s > 0:  # again: maintain() may have dropped it from the index meanwhile
            await self.call("SADD", self.keys.delayed_index, target)
        return first.decode() if isinstance(first, bytes) else str(first)

    async def delay(
        self, stream: str, body: bytes, attempts: int, delay_s: float, *ack: Any
    ) -> None:
        """The delay set and the ack share the topic's slot (one transaction); the index is
        another key, so it is added before and after: :meth:`_move_due` drops a set from it
        only when it finds the set empty after the drop, so no set is ever left out."""
        due_ms = int((time.time() + delay_s) * 1000)
        zkey = self.keys.delayed(stream)
        await self.call("SADD", self.keys.delayed_index, zkey)
        await self.transaction(
            ("ZADD", zkey, due_ms, delayed_member(attempts, body)), *([ack] if ack else [])
        )
        await self.call("SADD", self.keys.delayed_index, zkey)

    async def _move_due(self, zkeys: list[Any]) -> None:
        now_ms = int(time.time() * 1000)
        cut = len(self.keys.delayed_prefix)
        for raw in zkeys:
            zkey = raw.decode() if isinstance(raw, bytes) else str(raw)
            left = await self.call("EVAL", scripts.MOVE_DUE_ONE, 2, zkey, zkey[cut:], now_ms, 1000)
            if int(left) == 0:
                await self.call("SREM", self.keys.delayed_index, zkey)
                if int(await self.call("ZCARD", zkey)) > 0:  # a delay() came in between
                    await self.call("SADD", self.keys.delayed_index, zkey)

    async def reply_and_ack(self, delivery: Delivery, address: str, body: bytes) -> None:
        # the inbox is in another slot than the stream: the reply first, then the ack (a
        # failure between the two redelivers the message, and the caller takes the first
        # reply of a call id); retried as a whole through an outage, the reply goes once
        if not isinstance(delivery, ValkeyDelivery):
            await super().reply_and_ack(delivery, address, body)
            return
        self._check_inbox(address)
        replied = False

        async def reply_then_ack() -> None:
            nonlocal replied
            if not replied:
                await self.send_reply(address, body)
                replied = True
            await self.ack(delivery.stream, delivery.group, delivery.entry_id)

        await delivery.settle_with(reply_then_ack)
