"""The scaler's decisions without a network: presence on the memory bus, the metadata
checks, the settings and route options, and the committed stubs being current."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from kubefuncs.errors import ConfigError, TransportError
from kubefuncs.gateway import routes
from kubefuncs.gateway.presence import Presence, PresenceSettings
from kubefuncs.gateway.scaler import Ref, parse_ref
from kubefuncs.gateway.settings import GatewaySettings
from kubefuncs.transport import from_url

ROOT = Path(__file__).resolve().parents[2]
TOPICS = frozenset({"orders", "events"})


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_work_for_a_channel_with_no_consumer_wakes_its_watchers_once_per_interval() -> None:
    # Given KEDA watching orders/fn (twice: two KEDA operator replicas) and orders/audit
    async with from_url("memory://") as bus:
        clock = Clock()
        presence = Presence(bus, PresenceSettings(push_interval_s=1.0), ["orders"], clock=clock)
        fn, fn_again, audit = (presence.watch("orders", c) for c in ("fn", "fn", "audit"))
        audit_sub = await bus.subscribe("orders", "audit", max_in_flight=1)
        await presence.refresh()  # audit runs, fn does not
        # When a request arrives for orders
        cold = presence.arrived("orders")
        # Then both watchers of fn are woken, audit's is not, and the topic is not cold
        # (a consumer of it runs)
        assert (fn.wake.is_set(), fn_again.wake.is_set(), audit.wake.is_set()) == (
            True,
            True,
            False,
        )
        assert cold is False
        # And a second arrival within the interval pushes nothing more
        fn.wake.clear()
        clock.now += 0.5
        presence.arrived("orders")
        assert not fn.wake.is_set()
        clock.now += 1.0
        presence.arrived("orders")
        assert fn.wake.is_set()
        await audit_sub.close()


async def test_a_topic_is_cold_until_a_consumer_is_seen_and_again_after_it_left() -> None:
    async with from_url("memory://") as bus:
        presence = Presence(bus, PresenceSettings(), ["orders"])
        assert presence.arrived("orders") is True  # not polled yet: unknown counts as cold
        sub = await bus.subscribe("orders", "fn", max_in_flight=1)
        await presence.refresh()
        assert presence.arrived("orders") is False
        await sub.close()
        await presence.refresh()
        assert presence.arrived("orders") is True


async def test_waiting_work_wakes_a_watcher_on_the_next_poll() -> None:
    # Given a watcher of events/fn and an event published by someone else than the gateway
    async with from_url("memory://") as bus:
        await bus.ensure_channel("events", "fn")
        presence = Presence(bus, PresenceSettings())
        watcher = presence.watch("events", "fn")
        await presence.refresh()
        assert not watcher.wake.is_set()
        await bus.publish("events", b"x")
        # When the poll runs, Then the watcher is woken
        await presence.refresh()
        assert watcher.wake.is_set()
        presence.unwatch(watcher)
        assert (presence.watchers, presence.live) == ({}, {})


def test_recent_arrivals_keep_a_topic_active_for_active_s() -> None:
    clock = Clock()
    presence = Presence(from_url("memory://"), PresenceSettings(active_s=30), clock=clock)
    assert not presence.recently_active("orders")
    presence.arrived("orders")
    clock.now += 29
    assert presence.recently_active("orders")
    clock.now += 2
    assert not presence.recently_active("orders")


@pytest.mark.parametrize(
    ("metadata", "status", "reason"),
    [
        ({}, Status.INVALID_ARGUMENT, "lacks topic, channel"),
        ({"topic": "orders"}, Status.INVALID_ARGUMENT, "lacks channel"),
        ({"topic": "orders", "channel": ""}, Status.INVALID_ARGUMENT, "lacks channel"),
        ({"topic": "a b", "channel": "fn"}, Status.INVALID_ARGUMENT, "topic 'a b' is not a name"),
        ({"topic": "other", "channel": "fn"}, Status.NOT_FOUND, "'other' is not routed"),
        ({"topic": "orders", "channel": "fn", "targetSize": "0"}, Status.INVALID_ARGUMENT, ">= 1"),
        ({"topic": "orders", "channel": "fn", "targetSize": "x"}, Status.INVALID_ARGUMENT, "'x'"),
    ],
)
def test_bad_metadata_is_refused_with_the_reason(
    metadata: dict[str, str], status: Status, reason: str
) -> None:
    with pytest.raises(GRPCError) as refused:
        parse_ref(metadata, TOPICS)
    assert refused.value.status == status
    assert reason in str(refused.value.message)


def test_good_metadata_names_the_function() -> None:
    meta = {"topic": "orders", "channel": "fn", "targetSize": "7"}
    assert parse_ref(meta, TOPICS) == Ref("orders", "fn", 7)
    assert parse_ref({"topic": "events", "channel": "fn"}, TOPICS).target == 1


def test_scaler_settings_default_off_and_name_the_variable() -> None:
    assert GatewaySettings.from_env({}).scaler_addr == ""
    on = GatewaySettings.from_env(
        {"KF_GATEWAY_SCALER_ADDR": "0.0.0.0:9090", "KF_GATEWAY_SCALER_POLL_S": "0.5"}
    )
    assert (on.scaler_addr, on.presence.poll_s) == ("0.0.0.0:9090", 0.5)
    with pytest.raises(ConfigError, match="KF_GATEWAY_SCALER_ADDR"):
        GatewaySettings.from_env({"KF_GATEWAY_SCALER_ADDR": "9090"})
    with pytest.raises(ConfigError, match="KF_GATEWAY_SCALER_IDLE_S"):
        GatewaySettings.from_env({"KF_GATEWAY_SCALER_IDLE_S": "soon"})


def test_a_route_takes_a_cold_start_timeout() -> None:
    table = routes.loads("/a/: {topic: a, timeout_s: 2, cold_start_timeout_s: 60}\n/b/: b\n")
    assert [(r.prefix, r.cold_start_timeout_s) for r in table.routes] == [
        ("/a/", 60),
        ("/b/", None),
    ]
    with pytest.raises(ConfigError, match=r"routes\./a/\.cold_start_timeout_s"):
        routes.loads("/a/: {topic: a, cold_start_timeout_s: -1}\n")


def test_the_committed_stubs_are_generated_from_the_proto(tmp_path: Path) -> None:
    subprocess.run(["bash", ".ci/protos", str(tmp_path)], cwd=ROOT, check=True, timeout=60)
    here = ROOT / "gateway" / "externalscaler"
    for name in ("externalscaler_pb2.py", "externalscaler_pb2.pyi", "externalscaler_grpc.py"):
        assert (tmp_path / name).read_text() == (here / name).read_text(), (
            f"run make protos: {name}"
        )


class Failing:
    """A bus whose consumer counts fail: unreachable, or an answer nobody can read."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def consumers(self, topic: str, channel: str | None, *, idle_s: float) -> int | None:
        raise self.error


@pytest.mark.parametrize("error", [TransportError("down"), ValueError("idle is not a number")])
async def test_a_bus_that_fails_leaves_the_state_unknown_and_the_poll_alive(
    error: Exception,
) -> None:
    presence = Presence(Failing(error), PresenceSettings(), ["orders"])  # type: ignore[arg-type]
    presence.live[("orders", None)] = 1
    await presence.refresh()  # does not raise
    assert presence.live == {("orders", None): None}
    assert presence.arrived("orders") is True  # unknown counts as cold


async def test_a_request_waits_the_cold_start_timeout_only_while_no_consumer_runs() -> None:
    async with from_url("memory://") as bus:
        table = routes.loads("/a/: {topic: a, timeout_s: 2, cold_start_timeout_s: 60}\n/b/: b\n")
        cold_route, plain = table.match("/a/x"), table.match("/b/")
        assert cold_route is not None and plain is not None
        presence = Presence(bus, PresenceSettings(), ["a"])
        assert presence.route_for(cold_route).timeout_s == 60  # nobody consumes a
        assert presence.route_for(plain) is plain  # no cold-start timeout: unchanged
        sub = await bus.subscribe("a", "fn", max_in_flight=1)
        await presence.refresh()
        assert presence.route_for(cold_route).timeout_s == 2  # a runs
        await sub.close()
