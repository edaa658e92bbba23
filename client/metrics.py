"""Prometheus metrics of the function runtime (one set per runtime, none at import), and
the lock-free counter and histogram families the runtime and the gateway count their
per-message figures in.

Nothing here imports prometheus_client until a scrape (or a caller asks for
:attr:`RuntimeMetrics.registry`): importing it costs a function ~0.1 s of start-up
(its exposition module loads http.server, wsgiref, urllib.request) for a value that is
first read by the first scrape. A :class:`RuntimeMetrics` is itself a collector
(``collect()``), which is all ``generate_latest`` needs.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from functools import cached_property
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric

OUTCOMES = ("ok", "error_reply", "retry", "dead_letter", "expired", "malformed")
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

Labels = tuple[Hashable, ...]  # label values, turned into strings at scrape time


class Counts:
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
        from prometheus_client.core import CounterMetricFamily

        family = CounterMetricFamily(self.name, self.documentation, labels=self.labels)
        for labels, n in list(self.values.items()):
            family.add_metric([str(v) for v in labels], n)
        yield family


class Timings:
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

    @cached_property
    def _bounds(self) -> list[str]:
        from prometheus_client.utils import floatToGoString

        return [*map(floatToGoString, self.buckets), "+Inf"]

    def collect(self) -> Iterator[HistogramMetricFamily]:
        from prometheus_client.core import HistogramMetricFamily

        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labels)
        for labels, (counts, total) in list(self.values.items()):
            cumulative, running = [], 0
            for bound, n in zip(self._bounds, list(counts), strict=True):
                running += n
                cumulative.append((bound, running))
            family.add_metric([str(v) for v in labels], cumulative, total[0])
        yield family


class Value:
    """One counter or gauge value of one function (the runtime's few other figures):
    ``inc``/``set``, or ``set_function`` for a value read at scrape time."""

    def __init__(self, name: str, documentation: str, kind: str) -> None:
        self.name, self.documentation, self.kind = name, documentation, kind
        self._value = 0.0
        self._read: Callable[[], float] | None = None

    def inc(self, amount: float = 1.0) -> None:
        self._value += amount

    def set(self, value: float) -> None:
        self._value = value

    def set_function(self, read: Callable[[], float]) -> None:
        self._read = read

    def get(self) -> float:
        return float(self._read()) if self._read is not None else self._value

    def family(self, function: str) -> Metric:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        family: CounterMetricFamily | GaugeMetricFamily
        if self.kind == "counter":
            family = CounterMetricFamily(self.name, self.documentation, labels=["function"])
        else:
            family = GaugeMetricFamily(self.name, self.documentation, labels=["function"])
        family.add_metric([function], self.get())
        return family


class RuntimeMetrics:
    """The runtime's figures; a collector for ``generate_latest`` (:meth:`collect`), or
    in a prometheus_client registry of its own (:attr:`registry`, made when first asked
    for) or the one given."""

    def __init__(self, function: str, registry: CollectorRegistry | None = None) -> None:
        self._function_name = function
        self._function = (function,)
        self._outcomes = {o: (function, o) for o in OUTCOMES}
        self.invocations = Counts(
            "kubefuncs_invocations",
            "Messages handled, by outcome",
            ["function", "outcome"],
            self._outcomes.values(),
        )
        self.durations = Timings(
            "kubefuncs_duration_seconds",
            "Handler run time",
            ["function"],
            DURATION_BUCKETS,
            [self._function],
        )
        # the runtime sets its function (the number of handlers running)
        self.in_flight = Value("kubefuncs_in_flight", "Messages being handled", "gauge")
        self.retries = Value("kubefuncs_retries", "Retries scheduled", "counter")
        self.dead_letters = Value("kubefuncs_dead_letters", "Messages dead-lettered", "counter")
        self.cold_start = Value(
            "kubefuncs_cold_start_seconds", "Seconds from process start to consuming", "gauge"
        )
        self.install = Value(
            "kubefuncs_install_seconds",
            "Seconds the install init container took for a source function's dependencies "
            "(included in kubefuncs_cold_start_seconds)",
            "gauge",
        )
        self._values = (self.in_flight, self.retries, self.dead_letters, self.cold_start,
                        self.install)  # fmt: skip
        if registry is not None:
            registry.register(self)
            self.registry = registry

    @cached_property
    def registry(self) -> CollectorRegistry:
        """A prometheus_client registry holding these metrics (made on first use)."""
        from prometheus_client import CollectorRegistry

        registry = CollectorRegistry()
        registry.register(self)
        return registry

    def collect(self) -> Iterator[Metric]:
        yield from self.invocations.collect()
        yield from self.durations.collect()
        for value in self._values:
            yield value.family(self._function_name)

    def handled(self, outcome: str) -> None:
        """One message handled with ``outcome`` (one of OUTCOMES)."""
        self.invocations.inc(self._outcomes[outcome])

    def took(self, seconds: float) -> None:
        """A handler's run time."""
        self.durations.observe(self._function, seconds)
