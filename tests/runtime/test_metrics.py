"""The runtime's metrics as a scrape shows them (counted without prometheus_client's locks)."""

from __future__ import annotations

from kubefuncs.metrics import OUTCOMES, RuntimeMetrics
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families


def scrape(m: RuntimeMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(m.registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_every_outcome_and_the_histogram_are_there_from_the_start() -> None:
    samples = scrape(RuntimeMetrics("f"))
    for outcome in OUTCOMES:
        key = ("kubefuncs_invocations_total", (("function", "f"), ("outcome", outcome)))
        assert samples[key] == 0
    assert samples[("kubefuncs_duration_seconds_count", (("function", "f"),))] == 0
    assert samples[("kubefuncs_in_flight", (("function", "f"),))] == 0


def test_counts_and_timings_show_as_prometheus_counters_and_histograms() -> None:
    m = RuntimeMetrics("f")
    m.in_flight.set_function(lambda: 3)
    for _ in range(2):
        m.handled("ok")
    m.handled("retry")
    for seconds in (0.0005, 0.001, 0.003, 99.0):
        m.took(seconds)
    samples = scrape(m)
    assert samples[("kubefuncs_invocations_total", (("function", "f"), ("outcome", "ok")))] == 2
    assert samples[("kubefuncs_invocations_total", (("function", "f"), ("outcome", "retry")))] == 1
    bucket = "kubefuncs_duration_seconds_bucket"
    # upper bounds are inclusive, as Prometheus's le says: 0.001 falls in le="0.001"
    assert samples[(bucket, (("function", "f"), ("le", "0.001")))] == 2
    assert samples[(bucket, (("function", "f"), ("le", "0.005")))] == 3
    assert samples[(bucket, (("function", "f"), ("le", "30.0")))] == 3
    assert samples[(bucket, (("function", "f"), ("le", "+Inf")))] == 4
    assert samples[("kubefuncs_duration_seconds_count", (("function", "f"),))] == 4
    assert abs(samples[("kubefuncs_duration_seconds_sum", (("function", "f"),))] - 99.0045) < 1e-9
    assert samples[("kubefuncs_in_flight", (("function", "f"),))] == 3
