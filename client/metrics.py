"""Prometheus metrics of the function runtime (one registry per runtime, none at import),
and the lock-free counter and histogram families the runtime and the gateway count their
per-message figures in."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Hashable, Iterable, Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

OUTCOMES = ("ok", "error_reply", "retry", "dead_letter", "expired", "malformed")
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

Labels = tuple[Hashable, ...]  # label values, turned into strings at scrape time


class Counts(Collector):
    """A counter family counted in a plain dict and turned into a metric family at scrape
    time. prometheus_client's counters take a lock per update (and check their labels),
    which was a visible share of the time per message; the event loop is one thread, and
    a scrape from another thread copies the dict in one step."""

    def __init__(
        self, name: str, documentation: str, labels: Sequence[str], initial: Iterable[Labels] = ()
    ) -> None:
        self.name, self.documentation, self.labels = name, documentation, list(labels)
        self.values: dict[Labels, int] = dict.fromkeys(initial, 0)

    def inc(self, labels: Labels) -> None:
        values = self.values
        values[labels] = values.get(labels, 0) + 1

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labels)
        for labels, n in list(self.values.items()):
            family.add_metric([str(v) for v in labels], n)
        yield family


class Timings(Collector):
    """A histogram family counted as :class:`Counts` is: per label set a count per bucket
    (the last one +Inf) and the sum."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labels: Sequence[str],
        buckets: Sequence[float],
        initial: Iterable[Labels] = (),
    ) -> None:
        self.name, self.documentation, self.labels = name, documentation, list(labels)
        self.buckets = tuple(buckets)
        self._bounds = [*map(floatToGoString, self.buckets), "+Inf"]
        self.values: dict[Labels, tuple[list[int], list[float]]] = {}
        for values in initial:
            self._new(values)

    def _new(self, labels: Labels) -> tuple[list[int], list[float]]:
        counts = self.values[labels] = ([0] * (len(self.buckets) + 1), [0.0])
        return counts

    def observe(self, labels: Labels, seconds: float) -> None:
        counts = self.values.get(labels) or self._new(labels)
        counts[0][bisect_left(self.buckets, seconds)] += 1
        counts[1][0] += seconds

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labels)
        for labels, (counts, total) in list(self.values.items()):
            cumulative, running = [], 0
            for bound, n in zip(self._bounds, list(counts), strict=True):
                running += n
                cumulative.append((bound, running))
            family.add_metric([str(v) for v in labels], cumulative, total[0])
        yield family


class RuntimeMetrics:
    def __init__(self, function: str, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self._function = (function,)
        self._outcomes = {o: (function, o) for o in OUTCOMES}
        self.invocations = Counts(
            "kubefuncs_invocations",
            "Messages handled, by outcome",
            ["function", "outcome"],
            self._outcomes.values(),
        )
        r.register(self.invocations)
        self.durations = Timings(
            "kubefuncs_duration_seconds",
            "Handler run time",
            ["function"],
            DURATION_BUCKETS,
            [self._function],
        )
        r.register(self.durations)
        # the runtime sets its function (the number of handlers running)
        self.in_flight = Gauge(
            "kubefuncs_in_flight", "Messages being handled", ["function"], registry=r
        ).labels(function)
        self.retries = Counter(
            "kubefuncs_retries", "Retries scheduled", ["function"], registry=r
        ).labels(function)
        self.dead_letters = Counter(
            "kubefuncs_dead_letters", "Messages dead-lettered", ["function"], registry=r
        ).labels(function)
        self.cold_start = Gauge(
            "kubefuncs_cold_start_seconds",
            "Seconds from process start to consuming",
            ["function"],
            registry=r,
        ).labels(function)
        self.install = Gauge(
            "kubefuncs_install_seconds",
            "Seconds the install init container took for a source function's dependencies "
            "(included in kubefuncs_cold_start_seconds)",
            ["function"],
            registry=r,
        ).labels(function)

    def handled(self, outcome: str) -> None:
        """One message handled with ``outcome`` (one of OUTCOMES)."""
        self.invocations.inc(self._outcomes[outcome])

    def took(self, seconds: float) -> None:
        """A handler's run time."""
        self.durations.observe(self._function, seconds)
