"""The Grafana dashboard and the PrometheusRule of the kubefuncs chart: they render only
when asked, read only metrics that exist, and pass promtool."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.charts.charts_helm import find, run_helm, template_args
from tests.charts.charts_monitoring import (
    DASHBOARD,
    EXTERNAL,
    GRAFANA_BUILTINS,
    dashboard_queries,
    exported_metrics,
    grafana_to_promql,
    metric_names,
    prometheus_rule_errors,
    promtool_check_rules,
    variable_queries,
    variables,
)
from tests.charts.charts_schemas import errors

RULE_API = "monitoring.coreos.com/v1/PrometheusRule"
ALERTS = {
    "KubefuncsDeadLetters",
    "KubefuncsQueueLag",
    "KubefuncsFunctionNotReady",
    "KubefuncsGateway5xx",
}
ON = ("monitoring.dashboard.enabled=true", "monitoring.rules.enabled=true")


def render(*sets: str, api: bool = True) -> tuple[dict[str, Any], ...]:
    args = template_args("kubefuncs", sets=tuple(sets))
    result = run_helm(*args, *(["--api-versions", RULE_API] if api else []))
    assert result.code == 0, result.stderr
    return tuple(d for d in yaml.safe_load_all(result.stdout) if d)


def rule(objects: tuple[dict[str, Any], ...], alert: str) -> dict[str, Any]:
    rules = find(objects, "PrometheusRule")["spec"]["groups"][0]["rules"]
    return next(r for r in rules if r["alert"] == alert)


def known() -> set[str]:
    return exported_metrics() | set(EXTERNAL)


def test_the_metric_name_reader() -> None:
    expr = 'sum by (a) (rate(x_total{a="b", c=~"d"}[5m])) / on (a) group_left y > bool 0.5'
    assert metric_names(expr) == {"x_total", "y"}
    assert metric_names("histogram_quantile(0.9, sum by (le) (rate(h_bucket[1m])))") == {"h_bucket"}


def test_the_registries_say_what_is_exported() -> None:
    names = exported_metrics()
    assert {
        "kubefuncs_invocations_total",
        "kubefuncs_duration_seconds_bucket",
        "kubefuncs_in_flight",
        "kubefuncs_dead_letters_total",
        "kubefuncs_gateway_requests_total",
        "kubefuncs_gateway_request_duration_seconds_bucket",
        "kubefuncs_gateway_malformed_requests_total",
    } <= names
    assert "kubefuncs_invocations" not in names  # a counter's samples end in _total


def test_nothing_is_rendered_unless_asked() -> None:
    objects = render()
    assert not [o for o in objects if o["kind"] == "PrometheusRule"]
    assert not [o for o in objects if "grafana_dashboard" in o["metadata"].get("labels", {})]


def test_rules_without_the_prometheus_operator_api_fail_saying_so() -> None:
    args = template_args("kubefuncs", sets=("monitoring.rules.enabled=true",))
    result = run_helm(*args)
    assert result.code != 0
    text = " ".join(result.stderr.split())
    assert "no PrometheusRule API (monitoring.coreos.com/v1)" in text
    assert f"--api-versions {RULE_API}" in text


def test_the_dashboard_is_a_configmap_for_the_grafana_sidecar() -> None:
    cm = find(render(ON[0]), "ConfigMap", "kf-kubefuncs-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1" and errors(cm) == []
    assert json.loads(cm["data"]["kubefuncs.json"]) == json.loads(DASHBOARD.read_text())
    custom = find(
        render(
            ON[0],
            'monitoring.dashboard.label="dash"',
            'monitoring.dashboard.labelValue="yes"',
            'monitoring.dashboard.namespace="monitoring"',
            'monitoring.dashboard.annotations={"grafana_folder": "kubefuncs"}',
        ),
        "ConfigMap",
        "kf-kubefuncs-dashboard",
    )
    assert custom["metadata"]["labels"]["dash"] == "yes"
    assert custom["metadata"]["namespace"] == "monitoring"
    assert custom["metadata"]["annotations"] == {"grafana_folder": "kubefuncs"}


def test_the_dashboard_is_well_formed() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 30
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    defined = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "namespace", "function"} <= defined
    for panel in panels:
        assert set(panel["gridPos"]) == {"x", "y", "w", "h"}, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["targets"] and panel["datasource"]["uid"] == "${datasource}", panel["title"]
    queries = dashboard_queries(dashboard) + variable_queries(dashboard)
    for expr in queries:
        assert variables(expr) <= defined | GRAFANA_BUILTINS, expr


def test_every_query_reads_only_metrics_that_exist() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    objects = render(*ON)
    rules = find(objects, "PrometheusRule")["spec"]["groups"][0]["rules"]
    queries = [
        *dashboard_queries(dashboard),
        *variable_queries(dashboard),
        *(r["expr"] for r in rules),
    ]
    read: set[str] = set()
    for expr in queries:
        names = metric_names(grafana_to_promql(expr))
        assert names, expr
        assert names <= known(), f"{expr}: unknown metric(s) {sorted(names - known())}"
        read |= names
    # and the dashboard shows every metric the runtime and the gateway export
    shown = {re.sub(r"_(total|bucket|sum|count|created)$", "", n) for n in read}
    exported = {re.sub(r"_(total|bucket|sum|count|created)$", "", n) for n in exported_metrics()}
    assert exported <= shown, sorted(exported - shown)


def test_the_prometheus_rule_has_the_alerts_and_is_well_formed() -> None:
    objects = render(*ON)
    pr = find(objects, "PrometheusRule")
    assert prometheus_rule_errors(pr) == [] and errors(pr) == []
    rules = pr["spec"]["groups"][0]["rules"]
    assert {r["alert"] for r in rules} == ALERTS
    for r in rules:
        assert r["labels"]["severity"] and r["annotations"]["summary"], r["alert"]
        assert "{{ $labels." in r["annotations"]["summary"], r["alert"]
    assert prometheus_rule_errors({"spec": {"groups": [{"rules": [{"expr": 1, "x": 2}]}]}}) == [
        "spec.groups.0.name: missing",
        "spec.groups.0.rules.0.x: unexpected",
        "spec.groups.0.rules.0: exactly one of alert and record",
        "spec.groups.0.rules.0.expr: not a string",
    ]


def test_thresholds_come_from_the_values() -> None:
    objects = render(
        *ON,
        'monitoring.rules.lag={"threshold": 50, "for": "3m", "severity": "page"}',
        'monitoring.rules.gateway5xx={"ratio": 0.2, "window": "2m", "for": "1m", '
        '"severity": "page"}',
        'monitoring.rules.namespaces="shop|billing"',
        'monitoring.rules.labels={"release": "kube-prometheus-stack"}',
    )
    lag = rule(objects, "KubefuncsQueueLag")
    assert lag["expr"].endswith("> 50") and lag["for"] == "3m"
    assert lag["labels"]["severity"] == "page" and 'namespace=~"shop|billing"' in lag["expr"]
    five = rule(objects, "KubefuncsGateway5xx")
    assert five["expr"].endswith("> 0.2") and "[2m]" in five["expr"] and five["for"] == "1m"
    labels = find(objects, "PrometheusRule")["metadata"]["labels"]
    assert labels["release"] == "kube-prometheus-stack"


def test_the_schema_refuses_a_bad_duration() -> None:
    args = template_args("kubefuncs", sets=('monitoring.rules.lag={"threshold": 1, "for": "ten"}',))
    result = run_helm(*args, "--api-versions", RULE_API)
    assert result.code != 0 and "monitoring.rules.lag" in result.stderr


def test_promtool_accepts_the_rules_and_every_dashboard_query(tmp_path: Path) -> None:
    pr = find(render(*ON), "PrometheusRule")
    result = promtool_check_rules(pr["spec"]["groups"], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 4 rules found" in result.stdout
    dashboard = json.loads(DASHBOARD.read_text())
    queries = dashboard_queries(dashboard)
    recorded = [
        {"record": f"kubefuncs:dashboard_query_{i}", "expr": grafana_to_promql(q)}
        for i, q in enumerate(queries)
    ]
    result = promtool_check_rules([{"name": "dashboard", "rules": recorded}], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("bad", ["sum(rate(x[5m])", 'x{a="b"'])
def test_promtool_refuses_broken_promql(bad: str, tmp_path: Path) -> None:
    result = promtool_check_rules(
        [{"name": "g", "rules": [{"record": "r", "expr": bad}]}], tmp_path
    )
    assert result.returncode != 0
