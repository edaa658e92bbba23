"""nsqd 1.3.0 rules the double once got wrong, each with the nsqd source it follows.

Like test_double.py these run against a real nsqd when NSQD_TCP_ADDRESS/NSQD_HTTP_ADDRESS
are set, except the ones that need a specially configured server (marked in their names).
"""

from __future__ import annotations

import asyncio
import json
import time

from . import protocol as p
from .broker import Message
from .harness import running_nsqd
from .rawclient import ClientFactory, RawClient
from .support import FAST_SCAN, Http, NsqTarget


async def test_mpub_reads_messages_from_the_stream_not_the_announced_size(
    connect: ClientFactory, topic: str
) -> None:
    # protocol_v2.go MPUB: readMPUB(client.Reader, ...) after checking only the size's range
    client = await connect()
    payload = p.encode_mpub_body([b"a", b"b"])
    client.send(f"MPUB {topic}")  # the line, then a body size that overstates the body
    client.write(p.pack_int32(len(payload) + 1000) + payload)
    assert await client.response() == p.OK
    assert await client.pub(topic, b"c") == p.OK  # the connection is still in step


async def test_identify_booleans_must_be_booleans(connect: ClientFactory) -> None:
    # identifyDataV2.FeatureNegotiation is a bool: json.Unmarshal fails on a string
    client = await connect()
    client.send("IDENTIFY", json.dumps({"feature_negotiation": "yes"}).encode())
    assert await client.error() == "E_BAD_BODY IDENTIFY failed to decode JSON body"
    await client.wait_closed(2)


async def test_identify_keys_match_case_insensitively(connect: ClientFactory) -> None:
    # encoding/json matches struct tags case-insensitively
    client = await connect()
    info = await client.identify(MSG_TIMEOUT=5000)
    assert info["msg_timeout"] == 5000


async def test_identify_answers_the_default_deflate_level(connect: ClientFactory) -> None:
    # protocol_v2.go IDENTIFY: deflateLevel starts at 6, the client's level only with deflate
    client = await connect()
    info = await client.identify(deflate_level=3)
    assert info["deflate"] is False and info["deflate_level"] == 6


async def test_http_pub_defer_parses_like_go(
    connect: ClientFactory, topic: str, http: Http, target: NsqTarget
) -> None:
    # http.go doPUB: strconv.ParseInt(defer, 10, 64), then 0 <= defer <= max-req-timeout
    address = target.http_address
    for raw, status in (("+100", 200), ("-1", 400), (" 100", 400), ("1_0", 400), ("", 400)):
        got, _ = await http.request("POST", address, "/pub", b"x", topic=topic, defer=raw)
        assert got == status, raw
    assert await http.request("POST", address, "/pub", b"x", topic=topic, defer="3600001") == (
        400,
        b'{"message":"INVALID_DEFER"}',
    )


async def test_stats_nulls_and_filters(
    connect: ClientFactory, topic: str, http: Http, target: NsqTarget
) -> None:
    # stats.go GetStats + http.go doStats: nil slices are null in the JSON
    pub = await connect()
    assert await pub.pub(topic, b"x") == p.OK
    sub = await connect()
    await sub.subscribe(topic, "ch")
    unknown = await http.stats(target, f"{topic}-none")
    assert unknown["topics"] is None and unknown["producers"] is None
    no_channel = await http.stats(target, topic, channel="none")
    assert no_channel["topics"] == []  # the topic is skipped when the channel is missing
    quiet = await http.stats(target, topic, include_clients="false")
    (channel,) = quiet["topics"][0]["channels"]
    assert quiet["producers"] is None and channel["clients"] is None
    assert channel["client_count"] == 1
    assert channel["e2e_processing_latency"] == {"count": 0, "percentiles": None}
    full = await http.stats(target, topic)
    assert any(pc.get("pub_counts") == [{"topic": topic, "count": 1}] for pc in full["producers"])


async def test_double_with_nsqd_defaults_defers_until_the_scan_list_refresh() -> None:
    # nsqd.go queueScanLoop: a channel is scanned only once the list (refreshed every
    # QueueScanRefreshInterval) holds it; a short refresh keeps this test short
    async with running_nsqd(queue_scan_refresh_interval_s=1.0) as nsqd:
        loop = asyncio.get_running_loop()
        client = await RawClient.connect(nsqd.tcp_address)
        try:
            await client.identify(msg_timeout=60_000)
            await client.subscribe("scan", "ch", rdy=5)
            started = loop.time()
            assert await client.dpub("scan", 50, b"first") == p.OK
            await client.message(within=2)
            assert loop.time() - started >= 0.5  # not 50 ms: it waited for the refresh
            started = loop.time()
            assert await client.dpub("scan", 50, b"second") == p.OK
            await client.message(within=1)
            assert loop.time() - started < 0.5  # the channel is on the list now
        finally:
            await client.close()


async def test_double_attempts_wrap_like_a_uint16() -> None:
    # message.go: Attempts uint16, incremented on every delivery (protocol_v2.go messagePump)
    async with running_nsqd(**FAST_SCAN) as nsqd:
        client = await RawClient.connect(nsqd.tcp_address)
        try:
            await client.subscribe("worn", "ch", rdy=1)
            channel = nsqd.get_topic("worn").get_channel("ch")
            channel.put(Message(b"0" * 16, b"old", time.time_ns(), attempts=0xFFFE))
            msg = await client.message()
            assert msg.attempts == 0xFFFF
            client.req(msg, 0)
            assert (await client.message()).attempts == 0
        finally:
            await client.close()


async def test_double_ephemeral_queues_drop_beyond_mem_queue_size() -> None:
    # topic.go / channel.go put(): a full memory queue spills to the backend, which for
    # #ephemeral topics and channels is a dummy queue that drops the message
    async with running_nsqd(mem_queue_size=3, **FAST_SCAN) as nsqd:
        nsqd.publish("kept", [b"%d" % i for i in range(5)])
        nsqd.publish("lost#ephemeral", [b"%d" % i for i in range(5)])
        assert nsqd.topics["kept"].depth == 5 and nsqd.topics["kept"].backend_depth == 2
        assert nsqd.topics["lost#ephemeral"].depth == 3
        client = await RawClient.connect(nsqd.tcp_address)
        try:
            await client.subscribe("lost#ephemeral", "c#ephemeral", rdy=0)
            channel = nsqd.topics["lost#ephemeral"].channels["c#ephemeral"]
            assert channel.depth == 3  # the backlog went to the first channel
            nsqd.publish("lost#ephemeral", [b"x", b"y"])
            assert channel.depth == 3 and channel.dropped_count == 2
        finally:
            await client.close()


async def test_a_topic_name_with_a_final_newline_is_invalid_over_http(
    http: Http, target: NsqTarget
) -> None:
    # internal/protocol/names.go: Go's regexp $ matches only at the very end
    status, body = await http.request("POST", target.http_address, "/pub", b"x", topic="t\n")
    assert (status, body) == (400, b'{"message":"INVALID_TOPIC"}')
