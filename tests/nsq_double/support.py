"""Test support: which server is under test, HTTP calls, polling and pynsq glue."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import nsq

from .server import NsqdDouble


@dataclass
class NsqTarget:
    """Addresses of the nsqd under test plus how to make it time out messages quickly.

    ``identify`` holds IDENTIFY fields giving ``msg_timeout_s``: empty for the double (its
    server default is already short), ``msg_timeout`` = 1000 (nsqd's minimum) for a real nsqd.
    ``scan_late_s`` is how late a timeout or a deferred message may come: nsqd acts on them
    only in its queue scan loop, whose channel list is refreshed every 5 s (a test-only
    option, lowered for the double as nsqd's own tests do).
    """

    tcp_address: str
    http_address: str
    lookupd_http_address: str | None
    msg_timeout_s: float
    scan_late_s: float
    identify: dict[str, Any] = field(default_factory=dict)
    double: NsqdDouble | None = None

    @property
    def real(self) -> bool:
        return self.double is None


FAST_SCAN = {"queue_scan_refresh_interval_s": 0.1}  # for doubles, as nsqd's own tests set it
DOUBLE_SCAN_LATE_S = 0.5
# nsqd's QueueScanRefreshInterval (5 s) + QueueScanInterval (0.1 s) + a loaded machine
REAL_SCAN_LATE_S = 6.5


def real_target_from_env() -> NsqTarget | None:
    tcp, http = os.environ.get("NSQD_TCP_ADDRESS"), os.environ.get("NSQD_HTTP_ADDRESS")
    if not (tcp and http):
        return None
    return NsqTarget(
        tcp_address=tcp,
        http_address=http,
        lookupd_http_address=os.environ.get("NSQLOOKUPD_HTTP_ADDRESS"),
        msg_timeout_s=1.0,
        scan_late_s=REAL_SCAN_LATE_S,
        identify={"msg_timeout": 1000},
    )


def unique_name(prefix: str = "t") -> str:
    """Fresh topic/channel names keep tests independent on a long-lived real nsqd."""
    return f"{prefix}{uuid.uuid4().hex[:12]}"


async def eventually(check: Callable[[], Any], within: float = 3.0, interval: float = 0.02) -> Any:
    """Poll a sync or async ``check`` until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {within}s (last: {result!r})")
        await asyncio.sleep(interval)


class Http:
    """Tiny JSON/text HTTP helper on one aiohttp session."""

    def __init__(self) -> None:
        self.session = aiohttp.ClientSession()

    async def close(self) -> None:
        await self.session.close()

    async def request(
        self, method: str, address: str, path: str, body: bytes | None = None, **params: str
    ) -> tuple[int, bytes]:
        url = f"http://{address}{path}"
        async with self.session.request(method, url, data=body, params=params) as resp:
            return resp.status, await resp.read()

    async def get_json(self, address: str, path: str, **params: str) -> tuple[int, Any]:
        async with self.session.get(f"http://{address}{path}", params=params) as resp:
            return resp.status, await resp.json(content_type=None)

    async def stats(self, target: NsqTarget, topic: str, **params: str) -> dict[str, Any]:
        status, doc = await self.get_json(
            target.http_address, "/stats", format="json", topic=topic, **params
        )
        assert status == 200, doc
        return dict(doc)

    async def channel_stats(self, target: NsqTarget, topic: str, channel: str) -> dict[str, Any]:
        doc = await self.stats(target, topic)
        for topic_doc in doc["topics"]:
            for channel_doc in topic_doc["channels"]:
                if channel_doc["channel_name"] == channel:
                    return dict(channel_doc)
        raise AssertionError(f"no channel {topic}/{channel} in stats")


async def pynsq_writer(address: str) -> nsq.Writer:
    """An nsq.Writer created inside the running loop, returned once its connection is ready."""
    writer = nsq.Writer([address], reconnect_interval=0.2)
    await eventually(lambda: writer.conns)
    return writer


async def pynsq_publish(writer: nsq.Writer, method: str, topic: str, *args: Any) -> bytes:
    """Call Writer.pub/mpub/dpub and wait for nsqd's answer."""
    done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def callback(conn: Any, data: Any) -> None:
        if not done.done():
            done.set_result(data)

    getattr(writer, method)(topic, *args, callback=callback)
    result = await asyncio.wait_for(done, 3)
    if isinstance(result, Exception):
        raise result
    return bytes(result)


def close_pynsq_writer(writer: nsq.Writer) -> None:
    # detach the reconnect handler first so no new socket is opened behind the test's back
    for conn in list(writer.conns.values()):
        conn.off("close", writer._on_connection_close)
        conn.close()


def close_pynsq_reader(reader: nsq.Reader) -> None:
    for conn in list(reader.conns.values()):
        conn.off("close", reader._on_connection_close)
        conn.close()
    if reader.redist_periodic is not None:
        reader.redist_periodic.stop()
    if reader.query_periodic is not None:
        reader.query_periodic.stop()
