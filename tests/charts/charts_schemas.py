"""Strict schema checks of rendered chart objects: the same checks functl's output gets
(tests/functl/functl_schemas.py: kubernetes-validate for built-in kinds, the KEDA v2.20.2
CRDs made strict), plus ServiceMonitor and PrometheusRule (Prometheus Operator), which have no
reference CRD here and are checked by hand.
"""

from __future__ import annotations

from typing import Any

from tests.charts.charts_monitoring import prometheus_rule_errors
from tests.functl import functl_schemas
from tests.functl.functl_schemas import keda_crds_or_skip

__all__ = ["errors", "keda_crds_or_skip"]

SERVICE_MONITOR_ENDPOINT_KEYS = {"port", "path", "interval", "scrapeTimeout"}


def service_monitor_errors(obj: dict[str, Any]) -> list[str]:
    spec = obj.get("spec") or {}
    errors = [
        f"spec.{k}: unexpected" for k in set(spec) - {"selector", "namespaceSelector", "endpoints"}
    ]
    if not (spec.get("selector") or {}).get("matchLabels"):
        errors.append("spec.selector.matchLabels: missing")
    for i, endpoint in enumerate(spec.get("endpoints") or [None]):
        if not isinstance(endpoint, dict) or not set(endpoint) <= SERVICE_MONITOR_ENDPOINT_KEYS:
            errors.append(f"spec.endpoints.{i}: not an endpoint of {SERVICE_MONITOR_ENDPOINT_KEYS}")
    return errors


def errors(obj: dict[str, Any]) -> list[str]:
    """Every schema violation of one object."""
    if obj["kind"] == "ServiceMonitor":
        return service_monitor_errors(obj)
    if obj["kind"] == "PrometheusRule":
        return prometheus_rule_errors(obj)
    return functl_schemas.errors(obj)
