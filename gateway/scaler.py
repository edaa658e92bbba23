"""KEDA's external scaler (``externalscaler.proto``), served by the gateway on
``KF_GATEWAY_SCALER_ADDR`` (grpclib, on the gateway's own event loop).

A ScaledObject's ``external-push`` trigger names one function by its scaler metadata
(functl renders it; the keys are :data:`TOPIC`, :data:`CHANNEL`, :data:`TARGET`):

* ``StreamIsActive``: KEDA keeps the stream open; ``true`` is sent the moment a request or
  event arrives for the topic while the channel has no live consumer (presence.py), so a
  function at zero starts without waiting for KEDA's next poll. Only ``true`` is ever sent:
  scaling down stays the polling triggers' and the cooldown's decision.
* ``IsActive``: messages wait for or are held by the channel, or one arrived lately.
* ``GetMetricSpec`` / ``GetMetrics``: the messages not yet delivered (the channel's lag,
  retries included) against ``targetSize``, the figure the lag triggers read: they stay
  the source of the replica count.

Bad metadata is a gRPC error with the reason (INVALID_ARGUMENT; NOT_FOUND for a topic
this gateway does not publish to); a bus that cannot answer is UNAVAILABLE.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

from grpclib.const import Status
from grpclib.exceptions import GRPCError
from grpclib.server import Server, Stream
from kubefuncs.errors import TransportError
from kubefuncs.transport import valid_name

from .externalscaler import externalscaler_pb2 as pb
from .externalscaler.externalscaler_grpc import ExternalScalerBase
from .presence import Presence

log = logging.getLogger("kubefuncs.gateway.scaler")

TOPIC, CHANNEL, TARGET = "topic", "channel", "targetSize"
METRIC = "kf-waiting"  # the metric's name, before KEDA's own prefix


@dataclass(frozen=True, slots=True)
class Ref:
    """A ScaledObjectRef's metadata, checked."""

    topic: str
    channel: str
    target: int


def parse_ref(metadata: Mapping[str, str], topics: frozenset[str]) -> Ref:
    """The function a ScaledObjectRef names; GRPCError says which key is wrong."""
    missing = [k for k in (TOPIC, CHANNEL) if not metadata.get(k)]
    if missing:
        raise GRPCError(
            Status.INVALID_ARGUMENT,
            f"scalerMetadata lacks {', '.join(missing)}: the external-push trigger needs "
            f"{TOPIC} and {CHANNEL} (functl renders them)",
        )
    topic, channel = metadata[TOPIC], metadata[CHANNEL]
    for key, value in ((TOPIC, topic), (CHANNEL, channel)):
        if not valid_name(value):
            raise GRPCError(
                Status.INVALID_ARGUMENT,
                f"scalerMetadata.{key} {value!r} is not a name (1-64 of A-Z a-z 0-9 . _ -)",
            )
    if topic not in topics:
        raise GRPCError(
            Status.NOT_FOUND,
            f"topic {topic!r} is not routed or published by this gateway, so it cannot see "
            "work arrive for it; add a route or publish: topic, or drop the external-push "
            "trigger",
        )
    return Ref(topic, channel, _target(metadata.get(TARGET, "1")))


def _target(raw: str) -> int:
    try:
        target = int(raw)
    except ValueError:
        target = 0
    if target < 1:
        raise GRPCError(
            Status.INVALID_ARGUMENT, f"scalerMetadata.{TARGET} must be an integer >= 1, got {raw!r}"
        )
    return target


class ExternalScaler(ExternalScalerBase):
    """The four calls, answered from :class:`Presence` and the bus."""

    def __init__(self, presence: Presence, topics: Callable[[], frozenset[str]]) -> None:
        self.presence = presence
        self.topics = topics  # the gateway's topics now (its routes may be reloaded)

    def _ref(self, message: pb.ScaledObjectRef | None) -> Ref:
        if message is None:
            raise GRPCError(Status.INVALID_ARGUMENT, "no ScaledObjectRef in the request")
        return parse_ref(dict(message.scalerMetadata), self.topics())

    async def _ask(self, figure: Callable[[str, str], Awaitable[int]], ref: Ref) -> int:
        try:
            return await figure(ref.topic, ref.channel)
        except TransportError as e:
            raise GRPCError(Status.UNAVAILABLE, f"the bus cannot tell the queue depth: {e}") from e

    async def _active(self, ref: Ref) -> bool:
        if self.presence.recently_active(ref.topic):
            return True
        return await self._ask(self.presence.waiting, ref) > 0

    async def IsActive(self, stream: Stream[pb.ScaledObjectRef, pb.IsActiveResponse]) -> None:
        ref = self._ref(await stream.recv_message())
        await stream.send_message(pb.IsActiveResponse(result=await self._active(ref)))

    async def StreamIsActive(self, stream: Stream[pb.ScaledObjectRef, pb.IsActiveResponse]) -> None:
        ref = self._ref(await stream.recv_message())
        watcher = self.presence.watch(ref.topic, ref.channel)
        log.info("KEDA watches %s/%s", ref.topic, ref.channel)
        try:
            if await self._active(ref):
                await stream.send_message(pb.IsActiveResponse(result=True))
            while True:
                await watcher.wake.wait()
                watcher.wake.clear()
                await stream.send_message(pb.IsActiveResponse(result=True))
        finally:
            self.presence.unwatch(watcher)

    async def GetMetricSpec(
        self, stream: Stream[pb.ScaledObjectRef, pb.GetMetricSpecResponse]
    ) -> None:
        ref = self._ref(await stream.recv_message())
        spec = pb.MetricSpec(metricName=METRIC, targetSize=ref.target, targetSizeFloat=ref.target)
        await stream.send_message(pb.GetMetricSpecResponse(metricSpecs=[spec]))

    async def GetMetrics(self, stream: Stream[pb.GetMetricsRequest, pb.GetMetricsResponse]) -> None:
        request = await stream.recv_message()
        if request is None or not request.HasField("scaledObjectRef"):
            raise GRPCError(Status.INVALID_ARGUMENT, "GetMetricsRequest lacks scaledObjectRef")
        ref = self._ref(request.scaledObjectRef)
        depth = await self._ask(self.presence.depth, ref)
        value = pb.MetricValue(
            metricName=request.metricName or METRIC, metricValue=depth, metricValueFloat=depth
        )
        await stream.send_message(pb.GetMetricsResponse(metricValues=[value]))


@asynccontextmanager
async def serving(addr: str, scaler: ExternalScaler) -> AsyncIterator[Server]:
    """The gRPC server on ``addr`` (host:port) while the block runs; closing it cancels
    the open streams (KEDA reconnects to another replica or after the restart)."""
    host, port = addr.rsplit(":", 1)
    server = Server([scaler])
    await server.start(host or None, int(port))
    log.info("KEDA external scaler listening on %s", addr)
    try:
        yield server
    finally:
        server.close()
        await server.wait_closed()
