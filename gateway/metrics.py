"""Prometheus metrics of the gateway (one registry per app, nothing at import)."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

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


class _Answered(Collector):
    """Requests answered (by route, topic, status) and their latency (by route), counted
    in plain dicts and lists and turned into metric families at scrape time: the client
    library's counters and histograms take a lock per update, which was a visible share
    of the gateway's time per request."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, int], int] = {}
        # per route: a count per bucket (the last one is +Inf), then the sum
        self.latency: dict[str, tuple[list[int], list[float]]] = {}

    def add(self, route: str, topic: str, status: int, seconds: float) -> None:
        key = (route, topic, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        counts = self.latency.get(route)
        if counts is None:
            counts = self.latency[route] = ([0] * (len(BUCKETS) + 1), [0.0])
        counts[0][bisect_left(BUCKETS, seconds)] += 1
        counts[1][0] += seconds

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "kubefuncs_gateway_requests",
            "HTTP requests answered, by route, topic and status",
            labels=["route", "topic", "status"],
        )
        for (route, topic, status), n in list(self.requests.items()):
            requests.add_metric([route, topic, str(status)], n)
        yield requests
        latency = HistogramMetricFamily(
            "kubefuncs_gateway_request_duration_seconds",
            "Time from request to response",
            labels=["route"],
        )
        bounds = [*map(floatToGoString, BUCKETS), "+Inf"]
        for route, (counts, total) in list(self.latency.items()):
            cumulative, running = [], 0
            for bound, n in zip(bounds, counts, strict=True):
                running += n
                cumulative.append((bound, running))
            latency.add_metric([route], cumulative, total[0])
        yield latency


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry or CollectorRegistry()
        self._answered = _Answered()
        r.register(self._answered)
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
        # label lookups are slow next to the rest of the hot path: keep the children
        self._children: dict[tuple[str, ...], MetricWrapperBase] = {}

    def watch_late(self, count: Callable[[], int]) -> None:
        self.registry.register(_Late(count))

    def _child(self, metric: MetricWrapperBase, *labels: str) -> MetricWrapperBase:
        key = (metric._name, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def answered(self, route: str, topic: str, status: int, seconds: float) -> None:
        self._answered.add(route, topic, status, seconds)

    def timed_out(self, route: str) -> None:
        self._child(self._timeouts, route).inc()  # type: ignore[attr-defined]
