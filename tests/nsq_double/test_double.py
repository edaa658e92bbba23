"""TCP protocol V2 behaviour of the nsqd double, checked with a raw-socket client.

Set NSQD_TCP_ADDRESS / NSQD_HTTP_ADDRESS (and NSQLOOKUPD_HTTP_ADDRESS) to run the same
assertions against a real nsqd; tests that need a specially configured server build their own
double and always run against it.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from . import protocol as p
from .harness import running_nsqd
from .rawclient import ClientFactory, RawClient
from .support import FAST_SCAN, Http, NsqTarget, eventually

STABLE = {"msg_timeout": 60_000}  # IDENTIFY fields for tests that must not see redeliveries
UNKNOWN_ID = "0" * 16


async def consumer(connect: ClientFactory, topic: str, channel: str, rdy: int) -> RawClient:
    client = await connect()
    await client.identify(**STABLE)
    await client.subscribe(topic, channel, rdy)
    return client


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("orders", True),
        ("a.b_c-D9", True),
        ("x" * 64, True),
        ("x" * 54 + "#ephemeral", True),
        ("x" * 55 + "#ephemeral", False),
        ("x" * 65, False),
        ("", False),
        ("has space", False),
        ("bad!", False),
        ("#ephemeral", False),
        ("a#ephemeral#ephemeral", False),
        ("trailing\n", False),  # Go's $ does not match before a final newline
    ],
)
def test_name_validation_matches_nsqd(name: str, valid: bool) -> None:
    assert p.is_valid_name(name) is valid


async def test_identify_negotiates_features(connect: ClientFactory, target: NsqTarget) -> None:
    client = await connect()
    info = await client.identify(client_id="raw", user_agent="raw/1.0")
    assert info["max_rdy_count"] == 2500
    assert info["tls_v1"] is False and info["snappy"] is False and info["deflate"] is False
    assert info["auth_required"] is False
    expected = {
        "version",
        "max_msg_timeout",
        "msg_timeout",
        "sample_rate",
        "deflate_level",
        "max_deflate_level",
        "output_buffer_size",
        "output_buffer_timeout",
    }
    assert expected <= info.keys()
    if target.double is not None:
        assert info["msg_timeout"] == round(target.msg_timeout_s * 1000)
    assert (await client.identify(msg_timeout=5000))["msg_timeout"] == 5000

    plain = await connect()
    assert (await plain.identify(feature_negotiation=False))["raw"] == p.OK


async def test_invalid_identify_is_fatal(connect: ClientFactory) -> None:
    client = await connect()
    client.send("IDENTIFY", b'{"msg_timeout": 500}')
    assert await client.error() == "E_BAD_BODY IDENTIFY msg timeout (500) is invalid"
    await client.wait_closed(2)


async def test_bad_magic_is_rejected(target: NsqTarget) -> None:
    host, port = target.tcp_address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"  V1")
    size = p.unpack_int32(await reader.readexactly(4))
    assert await reader.readexactly(size) == p.pack_int32(p.FRAME_ERROR) + b"E_BAD_PROTOCOL"
    assert await reader.read() == b""
    writer.close()
    await writer.wait_closed()


@pytest.mark.parametrize(
    ("subscribed", "line", "body", "expected"),
    [
        (False, "RDY 1", None, "E_INVALID cannot RDY in current state"),
        (False, f"FIN {UNKNOWN_ID}", None, "E_INVALID cannot FIN in current state"),
        (False, "BOGUS", None, "E_INVALID invalid command BOGUS"),
        (False, "PUB", None, "E_INVALID PUB insufficient number of parameters"),
        (False, "PUB t", b"", "E_BAD_MESSAGE PUB invalid message body size 0"),
        (False, "SUB bad!topic ch", None, 'E_BAD_TOPIC SUB topic name "bad!topic" is not valid'),
        (False, "SUB t bad!ch", None, 'E_BAD_CHANNEL SUB channel name "bad!ch" is not valid'),
        (False, "DPUB t 3600001", b"x", "E_INVALID DPUB timeout 3600001 out of range 0-3600000"),
        (True, "RDY 2501", None, "E_INVALID RDY count 2501 out of range 0-2500"),
        (True, "FIN short", None, "E_INVALID invalid message ID"),
        (True, "REQ short 0", None, "E_INVALID invalid message ID"),
        (True, "TOUCH short", None, "E_INVALID invalid message ID"),
        (True, f"RDY {2**64 - 1}", None, "E_INVALID RDY count -1 out of range 0-2500"),
        (True, "SUB t other", None, "E_INVALID cannot SUB in current state"),
    ],
)
async def test_fatal_errors_close_the_connection(
    connect: ClientFactory,
    topic: str,
    subscribed: bool,
    line: str,
    body: bytes | None,
    expected: str,
) -> None:
    client = await connect()
    if subscribed:
        await client.subscribe(topic, "ch")
    client.send(line, body)
    assert await client.error() == expected
    await client.wait_closed(2)


async def test_sub_requires_heartbeats(connect: ClientFactory, topic: str) -> None:
    client = await connect()
    await client.identify(heartbeat_interval=-1)
    client.send(f"SUB {topic} ch")
    assert await client.error() == "E_INVALID cannot SUB with heartbeats disabled"
    await client.wait_closed(2)


async def test_fin_req_touch_failures_are_not_fatal(connect: ClientFactory, topic: str) -> None:
    owner = await consumer(connect, topic, "ch", rdy=1)
    other = await consumer(connect, topic, "ch", rdy=0)
    for line, code in (
        ("FIN", "E_FIN_FAILED"),
        ("REQ", "E_REQ_FAILED"),
        ("TOUCH", "E_TOUCH_FAILED"),
    ):
        other.send(f"{line} {UNKNOWN_ID}" + (" 0" if line == "REQ" else ""))
        assert await other.error() == f"{code} {line} {UNKNOWN_ID} failed ID not in flight"
    assert await other.pub(topic, b"x") == p.OK  # still connected and usable
    msg = await owner.message()
    other.fin(msg)
    assert await other.error() == f"E_FIN_FAILED FIN {msg.id.decode()} failed " + (
        "client does not own message"
    )
    owner.fin(msg)


async def test_publish_and_consume(
    connect: ClientFactory, topic: str, http: Http, target: NsqTarget
) -> None:
    pub = await connect()
    assert await pub.pub(topic, b"hello") == p.OK
    assert await pub.mpub(topic, [b"m1", b"m2"]) == p.OK
    sub = await consumer(connect, topic, "ch", rdy=10)
    messages = await sub.messages_for(3)
    assert [m.body for m in messages] == [b"hello", b"m1", b"m2"]
    assert all(m.attempts == 1 and len(m.id) == 16 for m in messages)
    assert len({m.id for m in messages}) == 3
    assert abs(messages[0].timestamp_ns - time.time_ns()) < 5e9
    for msg in messages:
        sub.fin(msg)

    async def all_finished() -> bool:
        stats = await http.channel_stats(target, topic, "ch")
        return bool(stats["in_flight_count"] == 0 and stats["clients"][0]["finish_count"] == 3)

    await eventually(all_finished)


async def test_channels_each_get_every_message(connect: ClientFactory, topic: str) -> None:
    first = await consumer(connect, topic, "first", rdy=10)
    second = await consumer(connect, topic, "second", rdy=10)
    bodies = [b"1", b"2", b"3"]
    assert await (await connect()).mpub(topic, bodies) == p.OK
    for client in (first, second):
        received = await client.messages_for(3)
        assert [m.body for m in received] == bodies
        assert all(m.attempts == 1 for m in received)


async def test_consumers_of_one_channel_share_the_load(connect: ClientFactory, topic: str) -> None:
    clients = [await consumer(connect, topic, "shared", rdy=1) for _ in range(2)]
    assert await (await connect()).mpub(topic, [b"%d" % i for i in range(6)]) == p.OK
    received: dict[int, list[bytes]] = {0: [], 1: []}
    for _ in range(3):
        for index, client in enumerate(clients):
            msg = await client.message()
            received[index].append(msg.body)
            client.fin(msg)
    assert len(received[0]) == len(received[1]) == 3
    assert sorted(received[0] + received[1]) == [b"%d" % i for i in range(6)]


async def test_rdy_bounds_messages_in_flight(connect: ClientFactory, topic: str) -> None:
    sub = await consumer(connect, topic, "ch", rdy=2)
    assert await (await connect()).mpub(topic, [b"%d" % i for i in range(5)]) == p.OK
    first, second = await sub.messages_for(2)
    await sub.assert_no_message(0.2)
    sub.fin(first)
    third = await sub.message()
    await sub.assert_no_message(0.1)
    sub.send("RDY 0")
    sub.fin(second)
    sub.fin(third)
    await sub.assert_no_message(0.2)
    sub.send("RDY 5")
    assert [m.body for m in await sub.messages_for(2)] == [b"3", b"4"]


async def test_req_requeues_with_delay_and_counts_attempts(
    connect: ClientFactory, topic: str, http: Http, target: NsqTarget
) -> None:
    sub = await consumer(connect, topic, "ch", rdy=1)
    assert await (await connect()).pub(topic, b"retry") == p.OK
    msg = await sub.message()
    sub.req(msg, 0)
    msg = await sub.message()
    assert msg.attempts == 2
    started = asyncio.get_running_loop().time()
    sub.req(msg, 300)

    async def deferred() -> bool:
        stats = await http.channel_stats(target, topic, "ch")
        return bool(stats["deferred_count"] == 1 and stats["requeue_count"] == 2)

    await eventually(deferred, within=1)
    msg = await sub.message(within=0.3 + target.scan_late_s + 1)
    assert asyncio.get_running_loop().time() - started >= 0.3
    assert msg.attempts == 3 and msg.body == b"retry"
    sub.fin(msg)


async def test_unfinished_message_is_redelivered_after_msg_timeout(
    connect: ClientFactory, topic: str, http: Http, target: NsqTarget
) -> None:
    sub = await connect()
    await sub.identify(**target.identify)
    await sub.subscribe(topic, "ch", rdy=1)
    assert await (await connect()).pub(topic, b"slow") == p.OK
    first = await sub.message()
    started = asyncio.get_running_loop().time()
    again = await sub.message(within=target.msg_timeout_s + target.scan_late_s + 1)
    assert asyncio.get_running_loop().time() - started >= target.msg_timeout_s * 0.9
    assert again.id == first.id and again.attempts == 2
    assert (await http.channel_stats(target, topic, "ch"))["timeout_count"] == 1
    sub.fin(again)


async def test_touch_postpones_the_timeout(
    connect: ClientFactory, topic: str, target: NsqTarget
) -> None:
    timeout = target.msg_timeout_s
    sub = await connect()
    await sub.identify(**target.identify)
    await sub.subscribe(topic, "ch", rdy=1)
    assert await (await connect()).pub(topic, b"long job") == p.OK
    msg = await sub.message()
    for _ in range(4):
        await asyncio.sleep(timeout * 0.5)
        sub.touch(msg)
    await sub.assert_no_message(timeout * 0.5)
    again = await sub.message(within=timeout + target.scan_late_s + 1)
    assert again.id == msg.id and again.attempts == 2


async def test_disconnect_leaves_in_flight_messages_until_msg_timeout(
    connect: ClientFactory, topic: str, target: NsqTarget
) -> None:
    quitter = await connect()
    await quitter.identify(**target.identify)
    await quitter.subscribe(topic, "ch", rdy=1)
    assert await (await connect()).pub(topic, b"orphan") == p.OK
    msg = await quitter.message()
    delivered = asyncio.get_running_loop().time()
    await quitter.close()
    heir = await consumer(connect, topic, "ch", rdy=1)
    # nsqd does not requeue on disconnect (protocol_v2.go IOLoop only calls RemoveClient):
    # the message stays in flight until the msg_timeout it was delivered with
    await heir.assert_no_message(target.msg_timeout_s * 0.5)
    again = await heir.message(within=target.msg_timeout_s + target.scan_late_s + 1)
    assert asyncio.get_running_loop().time() - delivered >= target.msg_timeout_s * 0.95
    assert again.id == msg.id and again.attempts == 2


async def test_dpub_defers_delivery(
    connect: ClientFactory, topic: str, http: Http, target: NsqTarget
) -> None:
    sub = await consumer(connect, topic, "ch", rdy=1)
    started = asyncio.get_running_loop().time()
    assert await (await connect()).dpub(topic, 300, b"later") == p.OK
    await sub.assert_no_message(0.15)
    assert (await http.channel_stats(target, topic, "ch"))["deferred_count"] == 1
    msg = await sub.message(within=0.3 + target.scan_late_s + 1)
    assert asyncio.get_running_loop().time() - started >= 0.3
    assert msg.body == b"later" and msg.attempts == 1


async def test_first_channel_gets_the_topic_backlog(
    connect: ClientFactory, topic: str, http: Http, target: NsqTarget
) -> None:
    pub = await connect()
    assert await pub.mpub(topic, [b"a", b"b"]) == p.OK
    topic_doc = (await http.stats(target, topic))["topics"][0]
    assert topic_doc["depth"] == 2 and topic_doc["channels"] == []
    first = await consumer(connect, topic, "first", rdy=10)
    assert [m.body for m in await first.messages_for(2)] == [b"a", b"b"]
    second = await consumer(connect, topic, "second", rdy=10)
    await second.assert_no_message(0.2)
    assert await pub.pub(topic, b"c") == p.OK
    assert (await first.message()).body == (await second.message()).body == b"c"


async def test_durable_channel_outlives_its_consumers(
    connect: ClientFactory, topic: str, http: Http, target: NsqTarget
) -> None:
    sub = await consumer(connect, topic, "durable", rdy=0)
    await sub.close()
    assert await (await connect()).mpub(topic, [b"1", b"2"]) == p.OK

    async def accumulated() -> bool:
        stats = await http.channel_stats(target, topic, "durable")
        return bool(stats["depth"] == 2 and stats["clients"] == [])

    await eventually(accumulated)


async def test_ephemeral_channel_and_topic_vanish_with_last_consumer(
    connect: ClientFactory, topic: str, http: Http, target: NsqTarget
) -> None:
    ephemeral = f"{topic}#ephemeral"
    sub = await consumer(connect, ephemeral, "c#ephemeral", rdy=1)
    assert await (await connect()).mpub(ephemeral, [b"x", b"y"]) == p.OK
    await sub.message()
    assert (await http.stats(target, ephemeral))["topics"][0]["channels"]
    await sub.close()

    async def gone() -> bool:
        return not (await http.stats(target, ephemeral))["topics"]

    await eventually(gone)


async def test_cls_stops_delivery_but_leaves_socket_open(
    connect: ClientFactory, topic: str
) -> None:
    sub = await consumer(connect, topic, "ch", rdy=5)
    assert await sub.command("CLS") == p.CLOSE_WAIT
    assert await (await connect()).pub(topic, b"x") == p.OK
    await sub.assert_no_message(0.2)
    assert not sub.closed.is_set()


async def test_heartbeats_keep_clients_and_drop_silent_ones(target: NsqTarget) -> None:
    if target.real:
        await _check_heartbeats(target.tcp_address, {"heartbeat_interval": 1000}, 1.0)
        return
    async with running_nsqd(heartbeat_interval_s=0.1) as nsqd:
        await _check_heartbeats(nsqd.tcp_address, {}, 0.1)


async def _check_heartbeats(address: str, identify: dict[str, int], interval: float) -> None:
    alive = await RawClient.connect(address, auto_nop=True)
    silent = await RawClient.connect(address, auto_nop=False)
    try:
        for client in (alive, silent):
            await client.identify(**identify)
        await asyncio.sleep(interval * 3.5)
        assert alive.heartbeats >= 3 and not alive.closed.is_set()
        assert silent.closed.is_set() and 1 <= silent.heartbeats <= 2
    finally:
        await alive.close()
        await silent.close()


async def test_max_req_timeout_clamps_req_and_bounds_dpub() -> None:
    async with running_nsqd(max_req_timeout_s=0.2, **FAST_SCAN) as nsqd:
        client = await RawClient.connect(nsqd.tcp_address)
        try:
            await client.identify(**STABLE)
            await client.subscribe("clamp", "ch", rdy=1)
            assert await client.pub("clamp", b"x") == p.OK
            msg = await client.message()
            client.req(msg, 60_000)
            assert (await client.message(within=1)).attempts == 2
            client.send("DPUB clamp 201", b"x")
            assert await client.error() == "E_INVALID DPUB timeout 201 out of range 0-200"
        finally:
            await client.close()


async def test_touch_cannot_extend_past_max_msg_timeout() -> None:
    async with running_nsqd(msg_timeout_s=0.2, max_msg_timeout_s=0.35, **FAST_SCAN) as nsqd:
        client = await RawClient.connect(nsqd.tcp_address)
        try:
            await client.subscribe("capped", "ch", rdy=1)
            assert await client.pub("capped", b"x") == p.OK
            msg = await client.message()
            started = asyncio.get_running_loop().time()
            for _ in range(3):
                await asyncio.sleep(0.1)
                client.touch(msg)
            again = await client.message(within=1)
            elapsed = asyncio.get_running_loop().time() - started
            # the cap is 0.35 s after delivery; the scan loop acts on it within ~0.1 s
            assert again.attempts == 2 and 0.34 <= elapsed < 0.8
        finally:
            await client.close()
