"""KEDA's external scaler against a real gateway process on real Valkey: a gRPC client
plays KEDA (StreamIsActive, IsActive, GetMetricSpec, GetMetrics), requests come over HTTP,
and the function process starts late, as a pod scaled from zero does."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import aiohttp
import pytest
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError
from kubefuncs import wire
from kubefuncs.gateway.externalscaler import externalscaler_pb2 as pb
from kubefuncs.gateway.externalscaler.externalscaler_grpc import ExternalScalerStub

from tests.procs import Proc
from tests.servers import ServerProcess, free_port

pytestmark = pytest.mark.real

ROUTES = """
routes:
  /wake/: {topic: wake, timeout_s: 1, cold_start_timeout_s: 30}
  /idle/: idle
publish: {topics: [events], auth: none}
"""
PUSH_WITHIN_S = 5.0  # generous: the benchmark measures it (bench/push.py); this is a bound


@dataclass(frozen=True)
class Stack:
    bus: str
    http: str
    grpc_port: int


def ref(topic: str = "wake", channel: str = "fn", **extra: str) -> pb.ScaledObjectRef:
    metadata = {"topic": topic, "channel": channel, **extra}
    return pb.ScaledObjectRef(name="wake", namespace="fns", scalerMetadata=metadata)


def function(bus: str, topic: str) -> Proc:
    env = {
        "KF_BUS_URL": bus,
        "KF_TOPIC": topic,
        "KF_CHANNEL": "fn",
        "KF_HEALTH_ADDR": "",
        "KF_LOG_LEVEL": "WARNING",
    }
    return Proc(["kubefuncs", "tests.gateway.fns:behave"], env)


@pytest.fixture(scope="module")
def stack(
    valkey_server: ServerProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    routes = tmp_path_factory.mktemp("scaler") / "routes.yaml"
    routes.write_text(ROUTES)
    bus = f"valkey://127.0.0.1:{valkey_server.port}/0?prefix=sc{wire.new_id()[:8]}"
    http_port, grpc_port = free_port(), free_port()
    env = {
        "KF_BUS_URL": bus,
        "KF_GATEWAY_ADDR": f"127.0.0.1:{http_port}",
        "KF_GATEWAY_SCALER_ADDR": f"127.0.0.1:{grpc_port}",
        "KF_GATEWAY_SCALER_POLL_S": "0.2",
        "KF_GATEWAY_SCALER_IDLE_S": "5",
        "KF_GATEWAY_SCALER_ACTIVE_S": "2",
        "KF_LOG_LEVEL": "WARNING",
    }
    gateway = Proc(["kubefuncs.gateway", str(routes)], env)
    try:
        gateway.wait_http(f"http://127.0.0.1:{http_port}/readyz")
        yield Stack(bus, f"http://127.0.0.1:{http_port}", grpc_port)
    finally:
        code = gateway.stop()
        assert code == 0, gateway.output()


@contextlib.asynccontextmanager
async def scaler(stack: Stack) -> AsyncIterator[ExternalScalerStub]:
    channel = Channel("127.0.0.1", stack.grpc_port)
    try:
        yield ExternalScalerStub(channel)
    finally:
        channel.close()


async def test_a_request_for_a_function_at_zero_is_pushed_and_answered_once_it_starts(
    stack: Stack,
) -> None:
    # Given KEDA watching the function 'wake', which has no consumer running
    async with scaler(stack) as keda, keda.StreamIsActive.open() as stream:
        await stream.send_message(ref(), end=True)
        await asyncio.sleep(0.3)  # the stream is registered (a push that comes later still counts)
        async with aiohttp.ClientSession() as http:
            # When requests arrive for it
            sent = time.monotonic()
            replies = [
                asyncio.ensure_future(http.post(f"{stack.http}/wake/{i}", data=f"hello {i}"))
                for i in range(3)
            ]
            # Then KEDA is told at once that it is active
            pushed = await asyncio.wait_for(stream.recv_message(), PUSH_WITHIN_S)
            assert pushed is not None and pushed.result is True
            async with http.get(f"{stack.http}/metrics") as r:
                metrics = await r.text()
            # one push for the three (a second may come from the poll a second later)
            assert re.search(
                r'kubefuncs_gateway_scaler_pushes_total\{topic="wake"\} [12]\.0', metrics
            )
            assert "kubefuncs_gateway_scaler_streams 1.0" in metrics
            # And the requests wait in the topic, past their normal 1 s timeout, for the
            # function that starts late (a pod scaled from zero)
            await asyncio.sleep(1.5)
            assert not any(r.done() for r in replies)
            worker = function(stack.bus, "wake")
            try:
                for i, reply in enumerate(replies):
                    response = await asyncio.wait_for(reply, 25)
                    assert response.status == 200, await response.text()
                    assert (await response.json())["body"] == f"hello {i}"
                assert time.monotonic() - sent > 1.5
            finally:
                worker.stop()
        await stream.cancel()  # KEDA's side of the stream ends it (the server never does)


async def test_is_active_and_metrics_answer_from_traffic_and_the_queue(stack: Stack) -> None:
    async with scaler(stack) as keda, aiohttp.ClientSession() as http:
        # Given a function nobody called: not active, nothing waiting
        idle = await keda.IsActive(ref("idle"))
        assert idle.result is False
        # When three events wait for 'events' with no consumer
        for i in range(3):
            async with http.post(f"{stack.http}/topics/events", json={"n": i}) as r:
                assert r.status == 202
        # Then it is active, and the metric is the number waiting against the target
        assert (await keda.IsActive(ref("events"))).result is True
        spec = await keda.GetMetricSpec(ref("events", targetSize="5"))
        assert [(s.metricName, s.targetSize) for s in spec.metricSpecs] == [("kf-waiting", 5)]
        request = pb.GetMetricsRequest(scaledObjectRef=ref("events"), metricName="s0-kf-waiting")
        metrics = await keda.GetMetrics(request)
        assert [(m.metricName, m.metricValue) for m in metrics.metricValues] == [
            ("s0-kf-waiting", 3)
        ]


@pytest.mark.parametrize(
    ("message", "status", "reason"),
    [
        (
            pb.ScaledObjectRef(name="x", scalerMetadata={"topic": "wake"}),
            Status.INVALID_ARGUMENT,
            "channel",
        ),
        (pb.ScaledObjectRef(name="x"), Status.INVALID_ARGUMENT, "topic, channel"),
        (ref("nope"), Status.NOT_FOUND, "'nope' is not routed"),
        (ref("wake", "bad channel"), Status.INVALID_ARGUMENT, "channel 'bad channel'"),
        (ref(targetSize="many"), Status.INVALID_ARGUMENT, "targetSize"),
    ],
)
async def test_bad_scaler_metadata_is_a_grpc_error_with_the_reason(
    stack: Stack, message: pb.ScaledObjectRef, status: Status, reason: str
) -> None:
    async with scaler(stack) as keda:
        for call in (keda.IsActive, keda.GetMetricSpec):
            with pytest.raises(GRPCError) as refused:
                await call(message)
            assert refused.value.status == status
            assert reason in str(refused.value.message)
        async with keda.StreamIsActive.open() as stream:
            await stream.send_message(message, end=True)
            with pytest.raises(GRPCError) as refused:
                await stream.recv_message()
            assert refused.value.status == status
        # and the scaler still serves
        assert (await keda.IsActive(ref("idle"))).result is False
