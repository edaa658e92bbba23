"""Publishing side of the NSQ backend: one connection per nsqd, opened on demand.

A topic goes to one nsqd chosen by a stable hash (so one producer's messages of a topic
usually keep their order), the next one when it fails; an nsqd that failed is skipped for
an exponential backoff.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable

from ..errors import TransportError
from ._flow import backoff_s
from ._nsq_config import Node, NsqConfig
from ._nsq_conn import NsqdConn, NsqdRefused

log = logging.getLogger("kubefuncs.transport.nsq")


class Publishers:
    """The publishing connections of one transport."""

    def __init__(self, config: NsqConfig, on_open: Callable[[NsqdConn], None]) -> None:
        self.config = config
        self.conns: dict[str, NsqdConn] = {}
        self._on_open = on_open
        self._dialing: dict[str, asyncio.Future[NsqdConn]] = {}
        self._down_until: dict[str, float] = {}
        self._failures: dict[str, int] = {}
        self._closed = False

    @property
    def alive(self) -> bool:
        return any(conn.alive for conn in self.conns.values())

    @property
    def dialing(self) -> bool:
        return bool(self._dialing)

    def up(self, node: Node) -> bool:
        """Not in its backoff after a failed connection."""
        return self._down_until.get(node.tcp, 0.0) <= time.monotonic()

    def ranked(self, nodes: list[Node], topic: str, prefer: str | None = None) -> list[Node]:
        """Nodes by a stable hash of the topic, ``prefer`` first, nodes in backoff last."""

        def rank(node: Node) -> tuple[bool, bool, bytes]:
            digest = hashlib.sha1(f"{node.tcp}/{topic}".encode()).digest()
            return (node.tcp != prefer, not self.up(node), digest)

        return sorted(nodes, key=rank)

    async def publish(
        self, nodes: list[Node], topic: str, body: bytes, delay_ms: int, prefer: str | None
    ) -> None:
        errors = []
        for node in self.ranked(nodes, topic, prefer):
            try:
                conn = await self.conn(node)
                await conn.publish(topic, body, delay_ms)
                return
            except NsqdRefused:
                raise  # the message itself is refused: any other nsqd would refuse it too
            except TransportError as e:
                errors.append(str(e))
        raise TransportError(f"no nsqd took the message for {topic}: {'; '.join(errors)}")

    async def conn(self, node: Node) -> NsqdConn:
        """The open connection to ``node``, dialled if needed (one dial at a time)."""
        conn = self.conns.get(node.tcp)
        if conn is not None and conn.alive:
            return conn
        dialing = self._dialing.get(node.tcp)
        if dialing is None:
            dialing = asyncio.ensure_future(self._dial(node))
            self._dialing[node.tcp] = dialing
            dialing.add_done_callback(lambda _: self._dialing.pop(node.tcp, None))
        return await asyncio.shield(dialing)

    async def redial(self, node: Node) -> None:
        try:
            await self.conn(node)
        except TransportError as e:
            log.debug("nsqd %s still unreachable: %s", node.tcp, e)

    async def _dial(self, node: Node) -> NsqdConn:
        conn = NsqdConn(node.tcp, self.config, on_close=self._lost)
        try:
            await conn.open(self.config.dial_timeout_s)
        except TransportError:
            failures = self._failures.get(node.tcp, 0) + 1
            self._failures[node.tcp] = failures
            self._down_until[node.tcp] = time.monotonic() + backoff_s(failures)
            raise
        if self._closed:
            conn.close()
            raise TransportError("the transport is closed")
        self._failures.pop(node.tcp, None)
        self._down_until.pop(node.tcp, None)
        self.conns[node.tcp] = conn
        self._on_open(conn)
        return conn

    def _lost(self, conn: NsqdConn) -> None:
        if self.conns.get(conn.address) is conn:
            del self.conns[conn.address]

    def close(self) -> None:
        self._closed = True
        for dialing in list(self._dialing.values()):
            dialing.cancel()
        for conn in list(self.conns.values()):
            conn.close()
