"""Prometheus metrics of the gateway (one registry per app, nothing at import)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from kubefuncs.metrics import Counts, Timings
from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.registry import Collector

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class _Late(Collector):
    """Late replies as counted by the reply router (read at scrape time)."""

    def __init__(self, count: Callable[[], int]) -> None:
        self._count = count

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(
            "kubefuncs_gateway_late_replies",
            "Replies that came after their request timed out (dropped)",
            value=self._count(),
        )


class _Scaler(Collector):
    """The KEDA scaler's pushes and open streams, read from presence at scrape time."""

    def __init__(self, pushes: Callable[[], Mapping[str, int]], streams: Callable[[], int]):
        self._pushes = pushes
        self._streams = streams

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        pushes = CounterMetricFamily(
            "kubefuncs_gateway_scaler_pushes",
            "StreamIsActive pushes sent to KEDA (work arrived for a function with no "
            "running consumer), by topic",
            labels=["topic"],
        )
        for topic, count in sorted(self._pushes().items()):
            pushes.add_metric([topic], count)
        yield pushes
        yield GaugeMetricFamily(
            "kubefuncs_gateway_scaler_streams",
            "StreamIsActive streams KEDA holds open to this gateway",
            value=self._streams(),
        )


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry or CollectorRegistry()
        # counted without prometheus_client's lock per update (kubefuncs.metrics.Counts)
        self._requests = Counts(
            "kubefuncs_gateway_requests",
            "HTTP requests answered, by route, topic and status",
            ["route", "topic", "status"],
        )
        r.register(self._requests)
        self._latency = Timings(
            "kubefuncs_gateway_request_duration_seconds",
            "Time from request to response",
            ["route"],
            BUCKETS,
        )
        r.register(self._latency)
        self.in_flight = Gauge(
            "kubefuncs_gateway_in_flight", "Requests waiting for a reply", registry=r
        )
        self._timeouts = Counter(
            "kubefuncs_gateway_timeouts",
            "Requests that got no reply in time",
            ["route"],
            registry=r,
        )
        self.callbacks = Counter(
            "kubefuncs_gateway_callbacks",
            "Async results POSTed to callback URLs, by outcome",
            ["outcome"],
            registry=r,
        )
        self.malformed = Counter(
            "kubefuncs_gateway_malformed_requests",
            "Requests refused by the HTTP parser before any route (not HTTP, bad framing, "
            "header lines too long or too many), by status",
            ["status"],
            registry=r,
        )
        self._replays = Counter(
            "kubefuncs_gateway_idempotent_replays",
            "Requests answered with the stored response of an earlier one with the same "
            "Idempotency-Key (the function was not invoked), by route",
            ["route"],
            registry=r,
        )
        # label lookups are slow next to the rest of the hot path: keep the children
        self._children: dict[tuple[str, ...], MetricWrapperBase] = {}

    def watch_late(self, count: Callable[[], int]) -> None:
        self.registry.register(_Late(count))

    def watch_scaler(
        self, pushes: Callable[[], Mapping[str, int]], streams: Callable[[], int]
    ) -> None:
        self.registry.register(_Scaler(pushes, streams))

    def _child(self, metric: MetricWrapperBase, *labels: str) -> MetricWrapperBase:
        key = (metric._name, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def answered(self, route: str, topic: str, status: int, seconds: float) -> None:
        self._requests.inc((route, topic, status))
        self._latency.observe((route,), seconds)

    def refused(self, status: int) -> None:
        self._child(self.malformed, str(status)).inc()  # type: ignore[attr-defined]

    def replayed(self, route: str) -> None:
        self._child(self._replays, route).inc()  # type: ignore[attr-defined]

    def timed_out(self, route: str) -> None:
        self._child(self._timeouts, route).inc()  # type: ignore[attr-defined]
