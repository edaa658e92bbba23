"""Checks of the monitoring the charts ship: which metric names the code exports (read
from the registries, so a rename fails the tests), the metric names a PromQL expression
reads, promtool, and a structural check of PrometheusRule (no reference CRD here)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "charts" / "kubefuncs" / "dashboards" / "kubefuncs.json"
# metrics other programs export, which the dashboard and the alerts read
EXTERNAL = {
    "kube_deployment_status_replicas_available": "kube-state-metrics",
    "kube_deployment_spec_replicas": "kube-state-metrics",
    "keda_scaler_metrics_value": "KEDA operator",
}
SAMPLES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gauge": ("",),
}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}
KEYWORDS |= {"and", "or", "unless", "inf", "nan"}
GRAFANA_BUILTINS = {"__rate_interval", "__interval", "__range", "__all"}
RULE_KEYS = {"alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations"}
GROUP_KEYS = {"name", "interval", "rules", "limit", "partial_response_strategy"}
DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")


def exported_metrics() -> set[str]:
    """Every sample name the runtime's and the gateway's registries expose."""
    from kubefuncs.gateway.metrics import GatewayMetrics
    from kubefuncs.metrics import RuntimeMetrics

    gateway = GatewayMetrics()
    gateway.watch_late(lambda: 0)
    names: set[str] = set()
    for registry in (RuntimeMetrics("f").registry, gateway.registry):
        for family in registry.collect():
            names.update(family.name + suffix for suffix in SAMPLES[family.type])
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (not its functions, labels, keywords)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        if text[m.end() :].lstrip().startswith("(") or m.group() in KEYWORDS:
            continue
        names.add(m.group())
    return names


def variables(expr: str) -> set[str]:
    """The Grafana variables ($name, ${name}) an expression uses."""
    return {m[0] or m[1] for m in re.findall(r"\$\{(\w+)[^}]*\}|\$(\w+)", expr)}


def grafana_to_promql(expr: str) -> str:
    """A dashboard expression as Prometheus would get it (variables filled in)."""
    expr = expr.replace("$__rate_interval", "5m").replace("$__interval", "1m")
    return re.sub(r"\$\{?\w+\}?", ".*", expr)


def dashboard_queries(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL expression of the dashboard's panels."""
    return [
        t["expr"]
        for panel in dashboard["panels"]
        for t in panel.get("targets") or ()
        if "expr" in t
    ]


def variable_queries(dashboard: dict[str, Any]) -> list[str]:
    """The series selectors of the query variables (label_values(SELECTOR, label))."""
    out = []
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", var["query"]["query"])
            assert m, f"variable {var['name']}: not label_values(selector, label)"
            out.append(m[1])
    return out


def promtool_or_skip() -> str:
    promtool = os.environ.get("PROMTOOL") or shutil.which("promtool")
    local = ROOT / ".ci" / "tools" / "bin" / "promtool"
    if promtool is None and local.exists():
        promtool = str(local)
    if promtool:
        return promtool
    message = "promtool not found: make setup installs it into .ci/tools/bin (or set $PROMTOOL)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def promtool_check_rules(
    groups: list[dict[str, Any]], tmp: Path
) -> subprocess.CompletedProcess[str]:
    path = tmp / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}))
    return subprocess.run(
        [promtool_or_skip(), "check", "rules", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def prometheus_rule_errors(obj: dict[str, Any]) -> list[str]:
    """What the Prometheus Operator's PrometheusRule CRD (monitoring.coreos.com/v1) would
    refuse: unknown keys, missing names, expressions that are not strings, bad durations."""
    errors = [f"spec.{k}: unexpected" for k in set(obj.get("spec") or {}) - {"groups"}]
    groups = (obj.get("spec") or {}).get("groups")
    if not isinstance(groups, list) or not groups:
        return [*errors, "spec.groups: missing"]
    for i, group in enumerate(groups):
        where = f"spec.groups.{i}"
        errors += [f"{where}.{k}: unexpected" for k in set(group) - GROUP_KEYS]
        if not group.get("name"):
            errors.append(f"{where}.name: missing")
        for j, rule in enumerate(group.get("rules") or ()):
            errors += _rule_errors(rule, f"{where}.rules.{j}")
    return errors


def _rule_errors(rule: dict[str, Any], where: str) -> list[str]:
    errors = [f"{where}.{k}: unexpected" for k in set(rule) - RULE_KEYS]
    if bool(rule.get("alert")) == bool(rule.get("record")):
        errors.append(f"{where}: exactly one of alert and record")
    if not isinstance(rule.get("expr"), str) or not rule["expr"].strip():
        errors.append(f"{where}.expr: not a string")
    if "for" in rule and not DURATION.match(str(rule["for"])):
        errors.append(f"{where}.for: {rule['for']!r} is not a duration")
    for key in ("labels", "annotations"):
        values = rule.get(key) or {}
        if not all(isinstance(v, str) for v in values.values()):
            errors.append(f"{where}.{key}: values must be strings")
    return errors
