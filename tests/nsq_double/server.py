"""The nsqd double: TCP protocol V2 and HTTP API over an in-memory topic/channel broker."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

from aiohttp import web

from .broker import Channel, Message, Topic
from .http_util import start_site
from .lookupd import LookupdDouble, PeerInfo
from .nsqd_http import build_nsqd_app
from .options import NsqdOptions
from .protocol import is_ephemeral
from .scan import queue_scan_loop
from .stats import stats_document
from .tcp import V2Connection

_READ_LIMIT = 16 * 1024  # nsqd's client bufio reader (client_v2.go defaultBufferSize)


class NsqdDouble:
    """In-memory stand-in for one nsqd, faithful to what NSQ client libraries rely on.

    Keyword options are :class:`NsqdOptions` fields (``msg_timeout_s``, ``max_req_timeout_s``,
    ``heartbeat_interval_s``, ``max_rdy_count``, ...). With ``lookupd=`` the double registers
    its topics and channels with that :class:`LookupdDouble` while running.
    """

    def __init__(self, *, lookupd: LookupdDouble | None = None, **options: Any) -> None:
        self.options = NsqdOptions(**options)
        self.lookupd = lookupd
        self.topics: dict[str, Topic] = {}
        self.clients: dict[int, V2Connection] = {}
        self.host = ""
        self.tcp_port = 0
        self.http_port = 0
        self.start_time = 0
        self._client_ids = itertools.count(1)
        self._message_ids = itertools.count(time.time_ns() // 1000)
        self._tcp_server: asyncio.Server | None = None
        self._http_runner: web.AppRunner | None = None
        self._connection_tasks: set[asyncio.Task[Any]] = set()
        self._scan_task: asyncio.Task[None] | None = None
        self._registered = False

    @property
    def tcp_address(self) -> str:
        return f"{self.host}:{self.tcp_port}"

    @property
    def http_address(self) -> str:
        return f"{self.host}:{self.http_port}"

    @property
    def broadcast_address(self) -> str:
        return self.options.broadcast_address or self.host

    @property
    def peer_info(self) -> PeerInfo:
        return PeerInfo(
            remote_address=self.tcp_address,
            hostname=self.options.hostname,
            broadcast_address=self.broadcast_address,
            tcp_port=self.tcp_port,
            http_port=self.http_port,
            version=self.options.version,
        )

    async def start(self, host: str = "127.0.0.1", tcp_port: int = 0, http_port: int = 0) -> None:
        if self._tcp_server is not None:
            raise RuntimeError("already started")
        self.host = host
        self._tcp_server = await asyncio.start_server(
            self._on_client, host, tcp_port, limit=_READ_LIMIT
        )
        self.tcp_port = int(self._tcp_server.sockets[0].getsockname()[1])
        self._http_runner, self.http_port = await start_site(build_nsqd_app(self), host, http_port)
        self.start_time = int(time.time())
        self._scan_task = asyncio.create_task(queue_scan_loop(self.options, self.channels))
        self._connect_lookupd()

    async def stop(self) -> None:
        """Close every connection and forget all topics (there is no data-path persistence)."""
        self._disconnect_lookupd()
        if self._scan_task is not None:
            self._scan_task.cancel()
            await asyncio.gather(self._scan_task, return_exceptions=True)
            self._scan_task = None
        if self._tcp_server is not None:
            self._tcp_server.close()
        for conn in list(self.clients.values()):
            conn.close()
        if self._connection_tasks:
            await asyncio.gather(*self._connection_tasks, return_exceptions=True)
        if self._tcp_server is not None:
            await self._tcp_server.wait_closed()
            self._tcp_server = None
        if self._http_runner is not None:
            await self._http_runner.cleanup()
            self._http_runner = None
        for topic in self.topics.values():
            topic.delete()
        self.topics.clear()

    async def __aenter__(self) -> NsqdDouble:
        if self._tcp_server is None:
            await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # --- broker operations (shared by TCP, HTTP and in-process callers) ---

    def get_topic(self, name: str) -> Topic:
        topic = self.topics.get(name)
        if topic is not None:
            return topic
        topic = Topic(
            name,
            self,
            max_msg_timeout_s=self.options.max_msg_timeout_s,
            mem_queue_size=self.options.mem_queue_size,
        )
        self.topics[name] = topic
        if self._registered and self.lookupd is not None:
            self.lookupd.register(self.peer_info, name)
            # nsqd pre-creates the channels lookupd knows so they get every published message
            for channel in self.lookupd.topic_channels(name):
                if not is_ephemeral(channel):
                    topic.get_channel(channel)
        return topic

    def delete_topic(self, name: str) -> bool:
        topic = self.topics.pop(name, None)
        if topic is None:
            return False
        topic.delete()
        if self._registered and self.lookupd is not None:
            self.lookupd.unregister(self.peer_info.id, name)
        return True

    def publish(self, topic_name: str, bodies: list[bytes], defer_s: float = 0.0) -> None:
        topic = self.get_topic(topic_name)
        for body in bodies:
            msg_id = f"{next(self._message_ids) & 0xFFFF_FFFF_FFFF_FFFF:016x}".encode()
            topic.put(Message(msg_id, body, time.time_ns(), defer_s=defer_s))

    def channels(self) -> list[Channel]:
        """Every channel of every topic (what nsqd's queue scan loop refreshes its list from)."""
        return [ch for topic in self.topics.values() for ch in topic.channels.values()]

    def stats(self, topic: str = "", channel: str = "") -> dict[str, Any]:
        """The ``/stats?format=json`` document, for in-process assertions."""
        return stats_document(
            version=self.options.version,
            start_time=self.start_time,
            topics=list(self.topics.values()),
            clients=list(self.clients.values()),
            topic_filter=topic,
            channel_filter=channel,
        )

    def client_gone(self, conn: V2Connection) -> None:
        self.clients.pop(conn.client_id, None)

    # --- topic hooks (lookupd registration and ephemeral topic cleanup) ---

    def channel_created(self, topic: Topic, channel: Channel) -> None:
        if self._registered and self.lookupd is not None:
            self.lookupd.register(self.peer_info, topic.name, channel.name)

    def channel_deleted(self, topic: Topic, channel: Channel) -> None:
        if self._registered and self.lookupd is not None:
            self.lookupd.unregister(self.peer_info.id, topic.name, channel.name)

    def topic_emptied(self, topic: Topic) -> None:
        if self.topics.get(topic.name) is topic:
            self.delete_topic(topic.name)

    # --- internals ---

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connection_tasks.add(task)
        conn = V2Connection(self, reader, writer, next(self._client_ids))
        self.clients[conn.client_id] = conn
        try:
            await conn.serve()
        finally:
            self._connection_tasks.discard(task)

    def _connect_lookupd(self) -> None:
        if self.lookupd is None:
            return
        peer = self.peer_info
        self.lookupd.connect_producer(peer)
        for topic in self.topics.values():
            self.lookupd.register(peer, topic.name)
            for channel in topic.channels:
                self.lookupd.register(peer, topic.name, channel)
        self._registered = True

    def _disconnect_lookupd(self) -> None:
        if self._registered and self.lookupd is not None:
            self.lookupd.disconnect_producer(self.peer_info.id)
        self._registered = False
