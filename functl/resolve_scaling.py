"""The degrading parts of ``scaling:`` (pure): KEDA's fallback and the HPA's scale-down
behaviour, with their defaults (docs/scaling.md, "Scaling that degrades well")."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .model import Fallback, ScaleDown

FALLBACK_FAILURES = 3  # KEDA's failureThreshold: failed reads in a row before the fallback
# Kubernetes' own scale-down window (300 s), and a step of half the replicas a minute
# instead of its "all at once within 15 s"
SCALE_DOWN = {"stabilization_s": 300, "percent": 50, "period_s": 60}


def fallback(raw: Any, low: int) -> Fallback | None:
    """``fallback: false`` or ``{failures, replicas}``; replicas default to min (1 at least:
    a function at zero whose queue cannot be read still drains). Not given: the defaults."""
    if raw is False:
        return None
    raw = raw if isinstance(raw, Mapping) else {}
    failures = raw.get("failures", FALLBACK_FAILURES)
    return Fallback(int(failures), int(raw.get("replicas", max(low, 1))))


def scale_down(raw: Any) -> ScaleDown | None:
    """``scale_down: false`` (Kubernetes' defaults) or any of its keys over SCALE_DOWN."""
    if raw is False:
        return None
    given = {**SCALE_DOWN, **(raw if isinstance(raw, Mapping) else {})}
    return ScaleDown(int(given["stabilization_s"]), int(given["percent"]), int(given["period_s"]))
