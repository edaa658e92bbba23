"""Prometheus metrics of the function runtime (one registry per runtime, none at import)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

OUTCOMES = ("ok", "error_reply", "retry", "dead_letter", "expired", "malformed")


class RuntimeMetrics:
    def __init__(self, function: str, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        invocations = Counter(
            "kubefuncs_invocations",
            "Messages handled, by outcome",
            ["function", "outcome"],
            registry=r,
        )
        self.outcome = {o: invocations.labels(function, o) for o in OUTCOMES}
        self.duration = Histogram(
            "kubefuncs_duration_seconds",
            "Handler run time",
            ["function"],
            registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        ).labels(function)
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
