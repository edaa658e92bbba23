"""The HTTP side of NSQ: nsqlookupd ``/nodes``, nsqd ``/stats`` and topic/channel creation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp

from ..errors import TransportError
from ._nsq_config import Node

ACCEPT = {"Accept": "application/vnd.nsq; version=1.0"}  # unwrapped JSON on nsq < 1.0 too


@dataclass(frozen=True, slots=True)
class Figures:
    """One channel's counters on one nsqd (zeros when the channel does not exist)."""

    topic_depth: int = 0
    depth: int = 0
    in_flight: int = 0
    deferred: int = 0

    def __add__(self, other: Figures) -> Figures:
        return Figures(
            self.topic_depth + other.topic_depth,
            self.depth + other.depth,
            self.in_flight + other.in_flight,
            self.deferred + other.deferred,
        )


class NsqHttp:
    """One aiohttp session for every NSQ HTTP call of a transport."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout, headers=ACCEPT)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(self, method: str, address: str, path: str, **params: str) -> Any:
        url = f"http://{address}{path}"
        try:
            async with self.session.request(method, url, params=params) as resp:
                body = await resp.read()
                if resp.status != 200:
                    raise TransportError(f"{method} {url}: {resp.status} {body[:200]!r}")
                if not body or resp.content_type != "application/json":
                    return None
                data = await resp.json()
        except (aiohttp.ClientError, TimeoutError) as e:
            raise TransportError(f"{method} {url} failed: {e or type(e).__name__}") from e
        except ValueError as e:  # a JSON content type on something that is not JSON
            raise TransportError(f"{method} {url} answered invalid JSON: {e}") from e
        # nsq < 1.0 wraps answers in {"status_code", "data"}
        return data.get("data", data) if isinstance(data, dict) else data

    async def nodes(self, lookupd: str) -> list[Node]:
        """The nsqd nodes registered with one nsqlookupd."""
        data = await self.request("GET", lookupd, "/nodes")
        if data is None:  # not JSON at all (an HTML page, an empty body)
            raise TransportError(f"nsqlookupd {lookupd} answered /nodes with no JSON")
        try:
            return [_node(p) for p in data.get("producers") or []]
        except (AttributeError, KeyError, TypeError, ValueError) as e:
            raise TransportError(
                f"nsqlookupd {lookupd} answered /nodes with no node list ({e!r}): {data!r:.200}"
            ) from e

    async def figures(self, node: Node, topic: str, channel: str) -> Figures:
        doc = await self.request("GET", node.http, "/stats", format="json", topic=topic)
        try:
            return figures(doc or {}, topic, channel)
        except (AttributeError, KeyError, TypeError, ValueError) as e:
            raise TransportError(
                f"nsqd {node.http} answered /stats with no stats document ({e!r}): {doc!r:.200}"
            ) from e

    async def create_channel(self, node: Node, topic: str, channel: str) -> None:
        await self.request("POST", node.http, "/topic/create", topic=topic)
        await self.request("POST", node.http, "/channel/create", topic=topic, channel=channel)

    async def register_channel(self, lookupd: str, topic: str, channel: str) -> None:
        """Tell nsqlookupd about the channel: an nsqd creating the topic later creates the
        channel with it, so no message published there is lost to the channel."""
        await self.request("POST", lookupd, "/channel/create", topic=topic, channel=channel)


def _node(producer: dict[str, Any]) -> Node:
    host = producer.get("broadcast_address") or producer.get("address") or "127.0.0.1"
    if not isinstance(host, str):
        raise TypeError(f"broadcast_address {host!r}")
    tcp, http = producer["tcp_port"], producer["http_port"]
    if not all(type(port) is int and 0 < port < 65536 for port in (tcp, http)):
        raise ValueError(f"ports {tcp!r}, {http!r}")
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return Node(f"{host}:{tcp}", f"{host}:{http}")


def figures(doc: dict[str, Any], topic: str, channel: str) -> Figures:
    """Pick one channel's counters out of an nsqd ``/stats?format=json`` document."""
    for topic_doc in doc.get("topics") or []:
        if topic_doc.get("topic_name") != topic:
            continue
        for ch in topic_doc.get("channels") or []:
            if ch.get("channel_name") == channel:
                return Figures(
                    int(topic_doc.get("depth", 0)),
                    int(ch.get("depth", 0)),
                    int(ch.get("in_flight_count", 0)),
                    int(ch.get("deferred_count", 0)),
                )
        if not topic_doc.get("channels"):
            # nsqd holds a topic's messages until its first channel exists, then hands them
            # all to it (after a restart that lost the channels, say): they wait for us
            return Figures(depth=int(topic_doc.get("depth", 0)))
        return Figures(topic_depth=int(topic_doc.get("depth", 0)))
    return Figures()
