"""Live figures: the functions' own Prometheus metrics, sampled into a small ring per
function, and the time series derived from consecutive samples (pure).

Invocations are every message handled (any outcome); errors are the ``error_reply``,
``retry``, ``dead_letter`` and ``malformed`` outcomes; p50/p99 are interpolated from the
duration histogram's buckets as Prometheus' ``histogram_quantile`` does. Counters are
summed over the pods; a pod that restarts (a counter going down) counts from zero.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

ERROR_OUTCOMES = frozenset({"error_reply", "retry", "dead_letter", "malformed"})
MAX_TEXT_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Sample:
    """Everything known about one function at time ``t`` (seconds since the epoch)."""

    t: float
    outcomes: Mapping[str, float] = field(default_factory=dict)
    buckets: tuple[tuple[float, float], ...] = ()  # (le, cumulative count)
    cold_start_s: float | None = None
    in_flight: float | None = None
    bus: Mapping[str, int] = field(default_factory=dict)  # depth, in_flight, delayed, dead
    ready: int | None = None
    desired: int | None = None
    pods: int = 0


def parse(texts: Iterable[str], function: str) -> dict[str, Any]:
    """Outcome totals, histogram buckets, cold start and in flight of ``function``, summed
    over the texts (one per pod). Unparseable text counts as no data."""
    outcomes: dict[str, float] = {}
    buckets: dict[float, float] = {}
    cold: list[float] = []
    in_flight = 0.0
    for text in texts:
        for name, labels, value in _samples(text[:MAX_TEXT_BYTES]):
            if labels.get("function", function) != function or math.isnan(value):
                continue
            if name == "kubefuncs_invocations_total":
                key = labels.get("outcome", "ok")
                outcomes[key] = outcomes.get(key, 0.0) + value
            elif name == "kubefuncs_duration_seconds_bucket" and "le" in labels:
                le = float(labels["le"])
                buckets[le] = buckets.get(le, 0.0) + value
            elif name == "kubefuncs_cold_start_seconds" and value > 0:
                cold.append(value)
            elif name == "kubefuncs_in_flight":
                in_flight += value
    return {
        "outcomes": outcomes,
        "buckets": tuple(sorted(buckets.items())),
        "cold_start_s": max(cold) if cold else None,
        "in_flight": in_flight,
    }


def _samples(text: str) -> Iterable[tuple[str, dict[str, str], float]]:
    try:
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                yield s.name, dict(s.labels), float(s.value)
    except (ValueError, TypeError, IndexError):
        return


def _delta(now: float, before: float) -> float:
    return now - before if now >= before else now  # a restarted pod counts from zero


def quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """The q-quantile (0..1) of a cumulative histogram, linearly interpolated in its bucket."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower_le, lower_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if math.isinf(le):
                return lower_le
            span = count - lower_count
            return lower_le + (le - lower_le) * ((rank - lower_count) / span if span else 1.0)
        lower_le, lower_count = le, count
    return lower_le


def point(before: Sample, now: Sample) -> dict[str, Any]:
    """The figures between two samples."""
    dt = max(now.t - before.t, 1e-6)
    deltas = {k: _delta(v, before.outcomes.get(k, 0.0)) for k, v in now.outcomes.items()}
    prior = dict(before.buckets)
    window = tuple((le, _delta(c, prior.get(le, 0.0))) for le, c in now.buckets)
    p50, p99 = quantile(0.5, window), quantile(0.99, window)
    return {
        "t": round(now.t, 3),
        "invocations_per_s": round(sum(deltas.values()) / dt, 4),
        "errors_per_s": round(sum(v for k, v in deltas.items() if k in ERROR_OUTCOMES) / dt, 4),
        "p50_ms": None if p50 is None else round(p50 * 1000, 3),
        "p99_ms": None if p99 is None else round(p99 * 1000, 3),
        "cold_start_s": now.cold_start_s,
        "in_flight": now.in_flight,
        "depth": now.bus.get("depth"),
        "dead": now.bus.get("dead"),
        "ready": now.ready,
        "desired": now.desired,
    }


class Rings:
    """The last ``capacity`` samples of every function, in memory."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(capacity, 2)
        self._rings: dict[str, deque[Sample]] = {}

    def add(self, name: str, sample: Sample) -> None:
        self._rings.setdefault(name, deque(maxlen=self.capacity)).append(sample)

    def keep(self, names: Iterable[str]) -> None:
        """Forget functions that are gone."""
        wanted = set(names)
        for name in [n for n in self._rings if n not in wanted]:
            del self._rings[name]

    def series(self, name: str, since: float) -> list[dict[str, Any]]:
        ring = list(self._rings.get(name, ()))
        pairs = itertools.pairwise(ring)
        return [point(a, b) for a, b in pairs if b.t >= since]

    def latest(self, name: str) -> dict[str, Any] | None:
        ring = self._rings.get(name)
        if not ring or len(ring) < 2:
            return None
        return point(ring[-2], ring[-1])
