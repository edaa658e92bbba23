"""HTTP APIs, lookupd discovery and the pynsq client library against the nsqd double.

Like test_double.py, these run against a real nsqd/nsqlookupd when NSQD_TCP_ADDRESS,
NSQD_HTTP_ADDRESS and NSQLOOKUPD_HTTP_ADDRESS are set.
"""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import nsq
import pytest

from . import protocol as p
from .harness import nsqd_in_thread, running_nsqd
from .process import NsqdProcess
from .rawclient import ClientFactory, RawClient
from .server import NsqdDouble
from .support import (
    Http,
    NsqTarget,
    close_pynsq_reader,
    close_pynsq_writer,
    eventually,
    pynsq_publish,
    pynsq_writer,
)


async def test_http_publish_and_stats(
    connect: ClientFactory, topic: str, http: Http, target: NsqTarget
) -> None:
    address = target.http_address
    assert await http.request("GET", address, "/ping") == (200, b"OK")
    assert await http.request("POST", address, "/pub", b"one", topic=topic) == (200, b"OK")
    text = b"two\n\nthree\n"
    assert await http.request("POST", address, "/mpub", text, topic=topic) == (200, b"OK")
    binary = p.encode_mpub_body([b"four", b"five\nsix"])
    status, _ = await http.request("POST", address, "/mpub", binary, topic=topic, binary="true")
    assert status == 200

    doc = await http.stats(target, topic)
    assert doc["health"] == "OK" and {"version", "start_time", "producers"} <= doc.keys()
    (topic_doc,) = doc["topics"]
    assert topic_doc["topic_name"] == topic and topic_doc["channels"] == []
    assert topic_doc["depth"] == topic_doc["message_count"] == 5

    sub = await connect()
    await sub.identify(msg_timeout=60_000)
    await sub.subscribe(topic, "ch", rdy=10)
    bodies = [m.body for m in await sub.messages_for(5)]
    assert bodies == [b"one", b"two", b"three", b"four", b"five\nsix"]

    channel = (await http.stats(target, topic, channel="ch"))["topics"][0]["channels"][0]
    expected = {
        "channel_name",
        "depth",
        "in_flight_count",
        "deferred_count",
        "requeue_count",
        "timeout_count",
        "message_count",
        "clients",
    }
    assert expected <= channel.keys() and channel["in_flight_count"] == 5
    client = channel["clients"][0]
    assert client["ready_count"] == 10 and client["in_flight_count"] == 5
    assert client["message_count"] == 5 and client["version"] == "V2"


async def test_http_pub_defer(
    connect: ClientFactory, topic: str, http: Http, target: NsqTarget
) -> None:
    sub = await connect()
    await sub.subscribe(topic, "ch", rdy=1)
    started = asyncio.get_running_loop().time()
    status, _ = await http.request(
        "POST", target.http_address, "/pub", b"deferred", topic=topic, defer="300"
    )
    assert status == 200
    msg = await sub.message(within=0.3 + target.scan_late_s + 1)
    assert msg.body == b"deferred" and asyncio.get_running_loop().time() - started >= 0.3


@pytest.mark.parametrize(
    ("method", "path", "body", "params", "status", "message"),
    [
        ("POST", "/pub", b"x", {}, 400, "MISSING_ARG_TOPIC"),
        ("POST", "/pub", b"x", {"topic": "bad!"}, 400, "INVALID_TOPIC"),
        ("POST", "/pub", b"", {"topic": "t"}, 400, "MSG_EMPTY"),
        ("POST", "/pub", b"x", {"topic": "t", "defer": "soon"}, 400, "INVALID_DEFER"),
        ("GET", "/pub", None, {"topic": "t"}, 405, "METHOD_NOT_ALLOWED"),
        ("GET", "/nope", None, {}, 404, "NOT_FOUND"),
        ("POST", "/topic/delete", None, {"topic": "never-created"}, 404, "TOPIC_NOT_FOUND"),
        (
            "POST",
            "/channel/create",
            None,
            {"topic": "never-created", "channel": "c"},
            404,
            "TOPIC_NOT_FOUND",
        ),
        ("POST", "/channel/create", None, {"topic": "t"}, 400, "MISSING_ARG_CHANNEL"),
    ],
)
async def test_http_errors(
    http: Http,
    target: NsqTarget,
    method: str,
    path: str,
    body: bytes | None,
    params: dict[str, str],
    status: int,
    message: str,
) -> None:
    got_status, got_body = await http.request(method, target.http_address, path, body, **params)
    assert got_status == status
    assert json.loads(got_body) == {"message": message}


async def test_http_topic_and_channel_admin(topic: str, http: Http, target: NsqTarget) -> None:
    address = target.http_address

    async def post(path: str, **params: str) -> int:
        return (await http.request("POST", address, path, None, **params))[0]

    assert await post("/topic/create", topic=topic) == 200
    assert await post("/channel/create", topic=topic, channel="admin") == 200
    assert await http.request("POST", address, "/pub", b"x", topic=topic) == (200, b"OK")
    channel = await http.channel_stats(target, topic, "admin")
    assert channel["depth"] == 1 and channel["message_count"] == 1
    assert await post("/channel/delete", topic=topic, channel="admin") == 200
    assert (await http.stats(target, topic))["topics"][0]["channels"] == []
    assert await post("/channel/delete", topic=topic, channel="admin") == 404
    assert await post("/topic/delete", topic=topic) == 200
    # GetStats returns its zero value for an unknown topic: Go marshals the nil slices as null
    doc = await http.stats(target, topic)
    assert doc["topics"] is None and doc["producers"] is None


async def test_lookupd_announces_topics_and_channels(
    connect: ClientFactory, topic: str, http: Http, target: NsqTarget
) -> None:
    lookupd = target.lookupd_http_address
    if lookupd is None:
        pytest.skip("NSQLOOKUPD_HTTP_ADDRESS not set for the real nsqd")
    assert await http.request("GET", lookupd, "/ping") == (200, b"OK")
    assert await http.get_json(lookupd, "/lookup", topic=topic) == (
        404,
        {"message": "TOPIC_NOT_FOUND"},
    )
    await (await connect()).subscribe(topic, "watchers")

    async def looked_up() -> Any:
        status, doc = await http.get_json(lookupd, "/lookup", topic=topic)
        return doc if status == 200 and doc["channels"] == ["watchers"] else None

    doc = await eventually(looked_up)
    (producer,) = doc["producers"]
    assert producer.keys() == {
        "remote_address",
        "hostname",
        "broadcast_address",
        "tcp_port",
        "http_port",
        "version",
    }
    assert producer["tcp_port"] == int(target.tcp_address.rsplit(":", 1)[1])
    assert producer["http_port"] == int(target.http_address.rsplit(":", 1)[1])
    assert topic in (await http.get_json(lookupd, "/topics"))[1]["topics"]
    assert (await http.get_json(lookupd, "/channels", topic=topic))[1] == {"channels": ["watchers"]}
    nodes = (await http.get_json(lookupd, "/nodes"))[1]["producers"]
    assert any(topic in node["topics"] for node in nodes)


async def test_pynsq_writer_and_reader(topic: str, http: Http, target: NsqTarget) -> None:
    writer = await pynsq_writer(target.tcp_address)
    received: asyncio.Queue[bytes] = asyncio.Queue()

    def handler(message: nsq.Message) -> bool:
        received.put_nowait(message.body)
        return True

    reader = None
    try:
        assert await pynsq_publish(writer, "pub", topic, b"a") == p.OK
        assert await pynsq_publish(writer, "mpub", topic, [b"b", b"c"]) == p.OK
        assert await pynsq_publish(writer, "dpub", topic, 200, b"d") == p.OK
        reader = nsq.Reader(
            topic=topic,
            channel="pynsq",
            nsqd_tcp_addresses=[target.tcp_address],
            message_handler=handler,
            max_in_flight=10,
        )
        within = 0.2 + target.scan_late_s + 1  # the DPUB waits for nsqd's queue scan
        bodies = [await asyncio.wait_for(received.get(), within) for _ in range(4)]
        assert sorted(bodies) == [b"a", b"b", b"c", b"d"]

        async def all_finished() -> bool:
            stats = await http.channel_stats(target, topic, "pynsq")
            return bool(stats["in_flight_count"] == 0 and stats["clients"][0]["finish_count"] == 4)

        await eventually(all_finished)
    finally:
        if reader is not None:
            close_pynsq_reader(reader)
        close_pynsq_writer(writer)


async def test_pynsq_requeue_increments_attempts(topic: str, target: NsqTarget) -> None:
    writer = await pynsq_writer(target.tcp_address)
    attempts: list[int] = []
    done = asyncio.Event()

    def handler(message: nsq.Message) -> bool | None:
        attempts.append(message.attempts)
        if message.attempts < 3:
            message.enable_async()
            message.requeue(backoff=False, delay=0)
            return None
        done.set()
        return True

    reader = nsq.Reader(
        topic=topic,
        channel="retry",
        nsqd_tcp_addresses=[target.tcp_address],
        message_handler=handler,
        max_in_flight=1,
    )
    try:
        assert await pynsq_publish(writer, "pub", topic, b"flaky") == p.OK
        await asyncio.wait_for(done.wait(), 5)
        assert attempts == [1, 2, 3]
    finally:
        close_pynsq_reader(reader)
        close_pynsq_writer(writer)


async def test_pynsq_reader_discovers_nsqd_through_lookupd(
    topic: str, http: Http, target: NsqTarget
) -> None:
    lookupd = target.lookupd_http_address
    if lookupd is None:
        pytest.skip("NSQLOOKUPD_HTTP_ADDRESS not set for the real nsqd")
    writer = await pynsq_writer(target.tcp_address)
    received: asyncio.Queue[bytes] = asyncio.Queue()
    reader = None
    try:
        assert await pynsq_publish(writer, "pub", topic, b"found me") == p.OK

        async def registered() -> bool:
            return (await http.get_json(lookupd, "/lookup", topic=topic))[0] == 200

        await eventually(registered)

        def handler(message: nsq.Message) -> bool:
            received.put_nowait(message.body)
            return True

        reader = nsq.Reader(
            topic=topic,
            channel="discovery",
            lookupd_http_addresses=[f"http://{lookupd}"],
            message_handler=handler,
            lookupd_poll_interval=1,
        )
        assert await asyncio.wait_for(received.get(), 5) == b"found me"
    finally:
        if reader is not None:
            close_pynsq_reader(reader)
        close_pynsq_writer(writer)


async def test_subprocess_can_be_killed_and_restarted(http: Http) -> None:
    proc = NsqdProcess(lookupd_http_port=0, extra_args=["--msg-timeout", "1"])
    await asyncio.to_thread(proc.start)
    try:
        first = dict(proc.addresses)
        assert await http.request("POST", proc.http_address, "/pub", b"x", topic="t") == (
            200,
            b"OK",
        )
        await asyncio.to_thread(proc.restart)
        assert proc.addresses == first
        assert await http.request("GET", proc.http_address, "/ping") == (200, b"OK")
        status, doc = await http.get_json(proc.http_address, "/stats", format="json")
        assert status == 200 and doc["topics"] == []  # in-memory state died with the process
        assert proc.lookupd_http_address is not None
        assert (await http.get_json(proc.lookupd_http_address, "/nodes"))[0] == 200
    finally:
        await asyncio.to_thread(proc.stop)


def test_background_thread_serves_synchronous_code() -> None:
    with nsqd_in_thread(with_lookupd=True) as background:
        host, port = background.tcp_address.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=2) as sock:
            sock.sendall(p.MAGIC_V2 + b"PUB sync\n" + p.pack_int32(2) + b"hi")
            frame = sock.recv(64)
        assert frame == p.encode_frame(p.FRAME_RESPONSE, p.OK)
        assert background.call(lambda: background.nsqd.topics["sync"].message_count) == 1
        assert background.lookupd_http_address is not None


async def test_new_topic_precreates_channels_known_to_lookupd() -> None:
    async with running_nsqd(with_lookupd=True) as first:
        second = NsqdDouble(lookupd=first.lookupd)
        await second.start()
        clients = [await RawClient.connect(first.tcp_address) for _ in range(2)]
        try:
            await clients[0].subscribe("shared", "archive")
            await clients[1].subscribe("shared", "live#ephemeral")
            second.publish("shared", [b"x"])
            channels = second.topics["shared"].channels
            assert list(channels) == ["archive"] and channels["archive"].depth == 1
            assert first.lookupd is not None
            assert len(first.lookupd.db.producers("topic", "shared", "")) == 2
        finally:
            for client in clients:
                await client.close()
            await second.stop()
