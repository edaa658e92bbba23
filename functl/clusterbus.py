"""functl's own bus calls on a Valkey Cluster, for as long as
:func:`kubefuncs.transport.from_url` does not take ``valkey+cluster://`` URLs.

The Valkey transport run on a redis-py :class:`~redis.asyncio.cluster.RedisCluster` client
with the cluster's key names: the topic is the hash tag of its stream
(``<prefix>:topic:{T}``), of each channel's retry stream (``<prefix>:retry:{T}:C``) and dead
letters (``<prefix>:dead:{T}:C``), so one topic lives in one slot and every script and
transaction of it runs on one shard. Enough for prepare-bus, publish, status, stats and
the dead-letter commands; delayed publishing (which spans slots in the standalone layout)
is refused with a reason.
"""

from __future__ import annotations

from typing import Any

from kubefuncs.errors import ConfigError, TransportError
from kubefuncs.transport.valkey import Keys, ValkeyTransport
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.exceptions import RedisClusterException

from . import busurl
from .errors import UsageError


class ClusterKeys(Keys):
    """Key names on a cluster: the topic is the hash tag."""

    def topic(self, topic: str) -> str:
        return f"{self.prefix}:topic:{{{topic}}}"

    def retry(self, topic: str, channel: str) -> str:
        return f"{self.prefix}:retry:{{{topic}}}:{channel}"

    def dead(self, topic: str, channel: str) -> str:
        return f"{self.prefix}:dead:{{{topic}}}:{channel}"


def is_cluster(url: str) -> bool:
    return url.partition("://")[0].lower() in busurl.CLUSTER_SCHEMES


def client(bus: busurl.BusTarget, password: str | None) -> RedisCluster:
    nodes = [_node(address) for address in bus.nodes]
    return RedisCluster(
        startup_nodes=nodes,
        password=password,
        ssl=bus.tls,
        socket_connect_timeout=5,
        require_full_coverage=True,
    )


def _node(address: str) -> ClusterNode:
    host, _, port = address.rpartition(":")
    return ClusterNode(host.strip("[]"), int(port))


class ClusterOps(ValkeyTransport):
    """The transport's operations, on a cluster (see the module docstring)."""

    def __init__(self, url: str, *, password: str | None = None) -> None:
        try:
            bus = busurl.parse(url)
        except ValueError as e:
            problem = str(e).removeprefix(f"bus URL {url!r}").lstrip(": ")
            raise ConfigError("bus URL", f"{problem}: write it as {busurl.CLUSTER_FORM}") from e
        self.cluster_url = url
        # the standalone transport parses the options (prefix, ...) from this URL's query
        query = url.partition("?")[2]
        redis: Any = client(bus, password)  # RedisCluster speaks the Redis client's commands
        super().__init__(f"valkey://{bus.address}/?{query}", password=password, redis=redis)
        self.keys = ClusterKeys(bus.prefix)

    @property
    def safe_url(self) -> str:
        head, sep, tail = self.cluster_url.partition("@")
        return f"{head.partition('://')[0]}://{tail}" if sep else self.cluster_url

    async def connect(self) -> None:
        try:
            await super().connect()
        except RedisClusterException as e:  # no seed node answered (not a RedisError)
            self.mark(False)
            raise TransportError(f"cannot reach the bus at {self.safe_url}: {e}") from e

    async def publish(self, topic: str, body: bytes, *, delay_s: float = 0.0) -> None:
        if delay_s > 0:
            raise UsageError(
                "--delay: a delayed publish on a cluster bus needs the client library's "
                "cluster transport\n    fix: publish without --delay"
            )
        await super().publish(topic, body)
