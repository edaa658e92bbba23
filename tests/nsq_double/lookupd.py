"""An nsqlookupd double: registration database plus nsqlookupd's HTTP API."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from aiohttp import web

from .http_util import (
    ApiError,
    empty_response,
    json_response,
    nsq_errors,
    start_site,
    text_response,
    topic_arg,
    topic_channel_args,
)
from .options import NSQD_VERSION
from .protocol import is_ephemeral

Registration = tuple[str, str, str]  # (category, key, subkey) as in nsqlookupd


@dataclass(frozen=True)
class PeerInfo:
    """What an nsqd announces to nsqlookupd (its IDENTIFY), as returned by ``/lookup``."""

    remote_address: str
    hostname: str
    broadcast_address: str
    tcp_port: int
    http_port: int
    version: str

    @property
    def id(self) -> str:
        return self.remote_address


class RegistrationDB:
    """nsqlookupd's registration map: registration -> producers (by peer id)."""

    def __init__(self) -> None:
        self._map: dict[Registration, dict[str, PeerInfo]] = {}

    def add_registration(self, key: Registration) -> None:
        self._map.setdefault(key, {})

    def add_producer(self, key: Registration, peer: PeerInfo) -> None:
        self._map.setdefault(key, {})[peer.id] = peer

    def remove_producer(self, key: Registration, peer_id: str) -> int:
        """Remove one producer and return how many are left under ``key``."""
        producers = self._map.get(key, {})
        producers.pop(peer_id, None)
        return len(producers)

    def remove_registration(self, key: Registration) -> None:
        self._map.pop(key, None)

    def find(self, category: str, key: str, subkey: str) -> list[Registration]:
        return [
            reg
            for reg in self._map
            if reg[0] == category and key in ("*", reg[1]) and subkey in ("*", reg[2])
        ]

    def producers(self, category: str, key: str, subkey: str) -> list[PeerInfo]:
        found: dict[str, PeerInfo] = {}
        for reg in self.find(category, key, subkey):
            found.update(self._map[reg])
        return list(found.values())

    def registrations_of(self, peer_id: str) -> list[Registration]:
        return [reg for reg, producers in self._map.items() if peer_id in producers]


class LookupdDouble:
    """nsqlookupd stand-in. nsqd doubles register in-process instead of over lookupd's TCP port."""

    def __init__(self, *, version: str = NSQD_VERSION) -> None:
        self.version = version
        self.db = RegistrationDB()
        self._runner: web.AppRunner | None = None
        self._host = ""
        self._http_port = 0

    @property
    def http_address(self) -> str:
        return f"{self._host}:{self._http_port}"

    async def start(self, host: str = "127.0.0.1", http_port: int = 0) -> None:
        self._host = host
        self._runner, self._http_port = await start_site(self._build_app(), host, http_port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> LookupdDouble:
        if self._runner is None:
            await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # --- what nsqd's lookupd connection does (IDENTIFY / REGISTER / UNREGISTER / close) ---

    def connect_producer(self, peer: PeerInfo) -> None:
        self.db.add_producer(("client", "", ""), peer)

    def disconnect_producer(self, peer_id: str) -> None:
        for reg in self.db.registrations_of(peer_id):
            self.db.remove_producer(reg, peer_id)

    def register(self, peer: PeerInfo, topic: str, channel: str = "") -> None:
        if channel:
            self.db.add_producer(("channel", topic, channel), peer)
        self.db.add_producer(("topic", topic, ""), peer)

    def unregister(self, peer_id: str, topic: str, channel: str = "") -> None:
        if channel:
            self._drop(("channel", topic, channel), peer_id, is_ephemeral(channel))
            return
        # a topic unregistration also removes this producer from the topic's channels
        for reg in self.db.find("channel", topic, "*"):
            self.db.remove_producer(reg, peer_id)
        self._drop(("topic", topic, ""), peer_id, is_ephemeral(topic))

    def topic_channels(self, topic: str) -> list[str]:
        return [reg[2] for reg in self.db.find("channel", topic, "*")]

    def _drop(self, key: Registration, peer_id: str, ephemeral: bool) -> None:
        if self.db.remove_producer(key, peer_id) == 0 and ephemeral:
            self.db.remove_registration(key)

    # --- HTTP API ---

    def _build_app(self) -> web.Application:
        app = web.Application(middlewares=[nsq_errors])
        app.router.add_get("/ping", self._ping)
        app.router.add_get("/info", self._info)
        app.router.add_get("/lookup", self._lookup)
        app.router.add_get("/topics", self._topics)
        app.router.add_get("/channels", self._channels)
        app.router.add_get("/nodes", self._nodes)
        app.router.add_post("/topic/create", self._topic_create)
        app.router.add_post("/topic/delete", self._topic_delete)
        app.router.add_post("/channel/create", self._channel_create)
        app.router.add_post("/channel/delete", self._channel_delete)
        return app

    async def _ping(self, request: web.Request) -> web.Response:
        return text_response("OK")

    async def _info(self, request: web.Request) -> web.Response:
        return json_response({"version": self.version})

    async def _lookup(self, request: web.Request) -> web.Response:
        topic = _required_topic(request)
        if not self.db.find("topic", topic, ""):
            raise ApiError(404, "TOPIC_NOT_FOUND")
        return json_response(
            {
                "channels": self.topic_channels(topic),
                "producers": [asdict(peer) for peer in self.db.producers("topic", topic, "")],
            }
        )

    async def _topics(self, request: web.Request) -> web.Response:
        return json_response({"topics": [reg[1] for reg in self.db.find("topic", "*", "")]})

    async def _channels(self, request: web.Request) -> web.Response:
        return json_response({"channels": self.topic_channels(_required_topic(request))})

    async def _nodes(self, request: web.Request) -> web.Response:
        return json_response(
            {"producers": [self._node(peer) for peer in self.db.producers("client", "", "")]}
        )

    def _node(self, peer: PeerInfo) -> dict[str, Any]:
        topics = [reg[1] for reg in self.db.registrations_of(peer.id) if reg[0] == "topic"]
        return {**asdict(peer), "tombstones": [False] * len(topics), "topics": topics}

    async def _topic_create(self, request: web.Request) -> web.Response:
        self.db.add_registration(("topic", topic_arg(request), ""))
        return empty_response()

    async def _topic_delete(self, request: web.Request) -> web.Response:
        topic = _required_topic(request)
        for reg in [*self.db.find("channel", topic, "*"), *self.db.find("topic", topic, "")]:
            self.db.remove_registration(reg)
        return empty_response()

    async def _channel_create(self, request: web.Request) -> web.Response:
        topic, channel = topic_channel_args(request)
        self.db.add_registration(("channel", topic, channel))
        self.db.add_registration(("topic", topic, ""))
        return empty_response()

    async def _channel_delete(self, request: web.Request) -> web.Response:
        topic, channel = topic_channel_args(request)
        registrations = self.db.find("channel", topic, channel)
        if not registrations:
            raise ApiError(404, "CHANNEL_NOT_FOUND")
        for reg in registrations:
            self.db.remove_registration(reg)
        return empty_response()


def _required_topic(request: web.Request) -> str:
    topic = request.query.get("topic")
    if topic is None:
        raise ApiError(400, "MISSING_ARG_TOPIC")
    return topic
