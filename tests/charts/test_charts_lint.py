"""`helm lint --strict` is clean for every chart and sample values file, every chart
documents itself (README with install commands, commented values, NOTES), and its schema
refuses bad values with a message that names the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from charts_helm import CHART_NAMES, CHARTS, case_id, notes, render_error, run_helm, sample_values

CASES = sample_values()


@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_helm_lint_strict_is_clean(case: tuple[str, tuple[str, ...]]) -> None:
    chart, values = case
    args = ["lint", "--strict", str(CHARTS / chart)]
    args += [a for v in values for a in ("--values", v)]
    result = run_helm(*args)
    findings = [
        line for line in result.stdout.splitlines() if line.startswith(("[WARNING]", "[ERROR]"))
    ]
    assert result.code == 0, result.stdout + result.stderr
    assert findings == []
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_notes_render(case: tuple[str, tuple[str, ...]], tmp_path: Path) -> None:
    chart, values = case
    text = notes(chart, values, tmp_path)
    assert "kubefuncs" in text or "Valkey" in text or "NSQ" in text
    assert "<no value>" not in text


@pytest.mark.parametrize("chart", CHART_NAMES)
def test_every_chart_documents_itself(chart: str) -> None:
    folder = CHARTS / chart
    readme = (folder / "README.md").read_text()
    assert "helm install" in readme and f"charts/{chart}" in readme
    schema = json.loads((folder / "values.schema.json").read_text())
    values_text = (folder / "values.yaml").read_text()
    values = yaml.safe_load(values_text) or {}
    # every top-level value is commented and declared in the schema
    for key in values:
        assert key in schema["properties"], f"{chart}: {key} missing from values.schema.json"
        line = values_text.splitlines().index(
            next(line for line in values_text.splitlines() if line.startswith(f"{key}:"))
        )
        assert values_text.splitlines()[line - 1].lstrip().startswith("#"), f"{chart}: {key}"


@pytest.mark.parametrize(
    ("chart", "sets", "message"),
    [
        (
            "valkey",
            ('persistence={"size": 8}',),
            "- persistence.size: Invalid type. Expected: string, given: integer",
        ),
        (
            "valkey",
            ('securityContext={"allowPrivilegeEscalation": true}',),
            "- securityContext.allowPrivilegeEscalation: "
            "securityContext.allowPrivilegeEscalation does not match: false",
        ),
        ("nsq", ('nsqd={"replicas": 0}',), "- nsqd.replicas: Must be greater than or equal to 1"),
        (
            "gateway",
            ('replicaCount="two"',),
            "- replicaCount: Invalid type. Expected: integer, given: string",
        ),
        (
            "gateway",
            ('settings={"timeout": 5}',),
            "- settings: Additional property timeout is not allowed",
        ),
        (
            "gateway",
            ('podSecurityContext={"runAsNonRoot": false}',),
            "- podSecurityContext.runAsNonRoot: "
            "podSecurityContext.runAsNonRoot does not match: true",
        ),
        (
            "kubefuncs",
            ('valkey={"persistence": {"size": 8}}',),
            "valkey:\n- persistence.size: Invalid type",
        ),
        (
            "kubefuncs",
            ('gateway={"bus": {"url": "amqp://x"}}',),
            "gateway:\n- bus.url: Does not match pattern",
        ),
    ],
    ids=[
        "valkey-type",
        "valkey-escalation",
        "nsq-minimum",
        "gateway-type",
        "gateway-unknown-setting",
        "gateway-root",
        "umbrella-subchart",
        "umbrella-gateway-bus",
    ],
)
def test_values_that_break_the_schema_are_refused_readably(
    chart: str, sets: tuple[str, ...], message: str
) -> None:
    # Given values the chart's schema refuses
    # When Helm renders the chart with them
    error = render_error(chart, (), sets)
    # Then the message says the values are wrong, in which chart, which field and why
    assert "values don't meet the specifications of the schema(s)" in error
    assert message in error
