"""The metrics time series from a Prometheus server instead of the in-memory rings, when
``FUNCTL_SERVE_PROMETHEUS_URL`` is set: the same figures, as ``query_range`` over the
functions' own metrics (which Prometheus scrapes; docs/install.md). Replicas and depth
are not asked for (their metrics depend on kube-state-metrics and KEDA): null.
"""

from __future__ import annotations

import math
from typing import Any

import aiohttp

ERRORS = "error_reply|retry|dead_letter|malformed"
MAX_POINTS = 720


class PrometheusFailed(Exception):
    """Prometheus could not be asked or refused the query; the message says which."""


def queries(function: str) -> dict[str, str]:
    """Field -> PromQL for one function (``function`` as the runtime labels it)."""
    sel = f'function="{_quote(function)}"'
    buckets = f"sum by (le) (rate(kubefuncs_duration_seconds_bucket{{{sel}}}[1m]))"
    return {
        "invocations_per_s": f"sum(rate(kubefuncs_invocations_total{{{sel}}}[1m]))",
        "errors_per_s": f'sum(rate(kubefuncs_invocations_total{{{sel},outcome=~"{ERRORS}"}}[1m]))',
        "p50_ms": f"histogram_quantile(0.5, {buckets}) * 1000",
        "p99_ms": f"histogram_quantile(0.99, {buckets}) * 1000",
        "cold_start_s": f"max(kubefuncs_cold_start_seconds{{{sel}}})",
        "in_flight": f"sum(kubefuncs_in_flight{{{sel}}})",
    }


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def step_s(window_s: float) -> float:
    return max(15.0, math.ceil(window_s / MAX_POINTS))


async def series(
    session: aiohttp.ClientSession, base_url: str, function: str, start: float, end: float
) -> list[dict[str, Any]]:
    """One point per step: every figure of queries(), null where Prometheus has none."""
    step = step_s(end - start)
    columns = {
        field: await _range(session, base_url, q, start, end, step)
        for field, q in queries(function).items()
    }
    times = sorted({t for col in columns.values() for t in col})
    empty = {"depth": None, "dead": None, "ready": None, "desired": None}
    return [
        {"t": t, **empty, **{f: col.get(t) for f, col in columns.items()}}
        | {
            "invocations_per_s": columns["invocations_per_s"].get(t) or 0.0,
            "errors_per_s": columns["errors_per_s"].get(t) or 0.0,
        }
        for t in times
    ]


async def _range(
    session: aiohttp.ClientSession, base_url: str, query: str, start: float, end: float, step: float
) -> dict[float, float]:
    url = base_url.rstrip("/") + "/api/v1/query_range"
    params = {"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
    try:
        async with session.get(url, params=params) as response:
            body = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as e:
        raise PrometheusFailed(f"cannot query Prometheus at {base_url}: {e}") from e
    if not isinstance(body, dict) or body.get("status") != "success":
        error = body.get("error") if isinstance(body, dict) else body
        raise PrometheusFailed(f"Prometheus at {base_url} refused {query!r}: {error}")
    return _values(body.get("data", {}).get("result", []))


def _values(result: Any) -> dict[float, float]:
    """The first series of a matrix as {time: value}, NaN and garbage left out."""
    out: dict[float, float] = {}
    if not isinstance(result, list) or not result or not isinstance(result[0], dict):
        return out
    for pair in result[0].get("values", []):
        try:
            t, v = float(pair[0]), float(pair[1])
        except (TypeError, ValueError, IndexError):
            continue
        if not math.isnan(v) and not math.isinf(v):
            out[round(t, 3)] = v
    return out
