"""Pure parts of the NSQ backend: URL options, derived names, RDY shares, dead-letter maps."""

from __future__ import annotations

import msgpack
import pytest
from kubefuncs.errors import ConfigError
from kubefuncs.transport import from_url, valid_name
from kubefuncs.transport._nsq_config import (
    Node,
    NsqConfig,
    new_reply_topic,
    parse_reply_address,
    reply_address,
    side_topic,
)
from kubefuncs.transport._nsq_dead import unwrap, wrap
from kubefuncs.transport._nsq_http import Figures, figures
from kubefuncs.transport._nsq_sub import allot
from kubefuncs.transport.nsq import NsqTransport


def test_lookupd_addresses_come_from_the_host_part() -> None:
    config = NsqConfig.from_url("nsq://lookupd-0:4161,lookupd-1:4161?msg_timeout_s=5")
    assert config.lookupd_http == ("lookupd-0:4161", "lookupd-1:4161")
    assert config.nsqd == ()
    assert config.msg_timeout_s == 5.0


def test_direct_nsqd_addresses_default_their_http_port_to_the_next_one() -> None:
    config = NsqConfig.from_url("nsq://?nsqd=a:4150,b:5150")
    assert config.nsqd == (Node("a:4150", "a:4151"), Node("b:5150", "b:5151"))
    explicit = NsqConfig.from_url("nsq://?nsqd=a:4150&nsqd_http=a:9000")
    assert explicit.nsqd == (Node("a:4150", "a:9000"),)


def test_visibility_timeout_is_accepted_as_the_msg_timeout() -> None:
    assert NsqConfig.from_url("nsq://l:4161?visibility_timeout_s=30").msg_timeout_s == 30.0
    assert NsqConfig.from_url("nsq://l:4161").msg_timeout_s is None


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("nsq://", "names no nsqlookupd"),
        ("nsq://lookupd?x=1", "must be HOST:PORT"),
        ("nsq://?nsqd=a:4150,b:4150&nsqd_http=a:4151", "one HTTP address per nsqd"),
        ("nsq://l:4161?msg_timeout_s=0.5", "msg_timeout_s must be at least 1"),
        ("nsq://l:4161?lookupd_poll_interval_s=soon", "must be a number"),
    ],
)
def test_bad_urls_say_what_is_wrong(url: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        NsqConfig.from_url(url)


def test_from_url_routes_nsq_urls_here() -> None:
    assert isinstance(from_url("nsq://127.0.0.1:4161"), NsqTransport)


def test_prefix_is_part_of_the_nsq_name_and_checked() -> None:
    config = NsqConfig.from_url("nsq://l:4161?prefix=staging.")
    assert config.wire("orders") == "staging.orders"
    with pytest.raises(ConfigError, match="not a valid NSQ name"):
        config.wire("x" * 60)


def test_side_topics_are_per_channel_and_always_valid_names() -> None:
    assert side_topic("orders", "email", "dead") == "orders.email.dead"
    assert side_topic("orders", "email", "replay") == "orders.email.replay"
    long = side_topic("t" * 50, "c" * 40, "dead")
    assert valid_name(long) and len(long) <= 64 and long.endswith(".dead")
    assert long != side_topic("t" * 50, "c" * 41, "dead")  # the digest keeps them apart
    assert valid_name(side_topic("replies#ephemeral", "c", "dead"))


def test_reply_addresses_name_the_topic_and_the_nsqd() -> None:
    topic = new_reply_topic()
    assert valid_name(topic) and topic.endswith("#ephemeral")
    address = reply_address(topic, "10.0.0.7:4150")
    assert parse_reply_address(address) == (topic, "10.0.0.7:4150")
    # anything else is refused, so a producer cannot make a function publish to any topic
    assert parse_reply_address("orders@10.0.0.7:4150") is None
    assert parse_reply_address("kf:reply:0123") is None
    # a newline would end the PUB command line early
    assert parse_reply_address(f"{topic}\n@10.0.0.7:4150") is None
    assert parse_reply_address(f"{topic}@10.0.0.7:4150\nPUB x") is None


@pytest.mark.parametrize(
    ("in_flight", "limit", "offset", "primary", "expected"),
    [
        ([0], 16, 0, None, [16]),
        ([3], 16, 0, None, [16]),  # one link: RDY stays at the limit
        ([0, 0], 16, 0, None, [8, 8]),
        ([5, 0], 16, 0, None, [11, 5]),  # 11 free: 6 + 5
        ([0, 0], 1, 0, None, [1, 0]),  # fewer slots than links: the share rotates
        ([0, 0], 1, 1, None, [0, 1]),
        ([1, 0], 1, 0, None, [1, 0]),  # nothing free: each keeps what it holds
        ([1, 0, 1, 0], 4, 1, [True, False, True, False], [2, 0, 2, 0]),  # topic before replay
        ([0, 0], 1, 3, [True, False], [0, 1]),  # but the replay topic has its turn too
        ([], 4, 0, None, []),
    ],
)
def test_rdy_shares_never_exceed_max_in_flight(
    in_flight: list[int], limit: int, offset: int, primary: list[bool] | None, expected: list[int]
) -> None:
    assert allot(in_flight, limit, offset, primary) == expected
    assert sum(expected) - sum(in_flight) <= max(0, limit - sum(in_flight))


def test_dead_letter_map_round_trips() -> None:
    raw = wrap(b"\x81\xa1v\x01", "ValueError: bad", 3, "orders", "email")
    data = msgpack.unpackb(raw)
    assert {"v", "id", "body", "reason", "attempt", "time", "topic", "channel"} == set(data)
    letter = unwrap(raw, b"0123456789abcdef", 0)
    assert (letter.id, letter.body, letter.reason, letter.attempt) == (
        data["id"],
        b"\x81\xa1v\x01",
        "ValueError: bad",
        3,
    )


def test_foreign_messages_on_a_dead_topic_are_kept_as_they_are() -> None:
    letter = unwrap(b"not msgpack \xc1", b"0123456789abcdef", 5_000_000)
    assert (letter.id, letter.body, letter.reason, letter.time_ms) == (
        "nsq-0123456789abcdef",
        b"not msgpack \xc1",
        "",
        5,
    )


def test_figures_pick_one_channel_from_nsqd_stats() -> None:
    doc = {
        "topics": [
            {
                "topic_name": "t",
                "depth": 2,
                "channels": [
                    {"channel_name": "other", "depth": 9},
                    {"channel_name": "c", "depth": 3, "in_flight_count": 1, "deferred_count": 4},
                ],
            }
        ]
    }
    assert figures(doc, "t", "c") == Figures(2, 3, 1, 4)
    assert figures(doc, "t", "missing") == Figures(topic_depth=2)
    assert figures({"topics": []}, "t", "c") == Figures()
    # a topic with no channel at all hands what it holds to the first one created
    lonely = {"topics": [{"topic_name": "t", "depth": 5, "channels": None}]}
    assert figures(lonely, "t", "c") == Figures(depth=5)


async def test_a_channel_name_with_a_final_newline_is_refused() -> None:
    # Python's $ matches before a final newline: "ch\n" passed, and split the SUB command
    transport = NsqTransport("nsq://?nsqd=127.0.0.1:9&dial_timeout_s=0.2")
    try:
        with pytest.raises(ConfigError, match="channel"):
            await transport.subscribe("t", "ch\n", max_in_flight=1)
        with pytest.raises(ConfigError, match="channel"):
            await transport.ensure_channel("t", "ch\n")
    finally:
        await transport.close()
