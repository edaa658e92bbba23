"""Every chart renders with its defaults and with each sample values file, and every
object it renders is one a cluster (with KEDA) would accept, under the restricted Pod
Security profile."""

from __future__ import annotations

from typing import Any

import pytest
from charts_helm import NAMESPACE, ROOT, Obj, case_id, render, sample_values
from charts_schemas import errors, keda_crds_or_skip

CASES = [
    *sample_values(),
    ("function", (str(ROOT / "example" / "functions.yaml"),)),
    ("function", (str(ROOT / "tests" / "functl" / "data" / "valkey.yaml"),)),
    ("function", (str(ROOT / "tests" / "functl" / "data" / "nsq.yaml"),)),
    ("function", (str(ROOT / "tests" / "functl" / "data" / "cluster.yaml"),)),
    ("gateway", (str(ROOT / "example" / "routes.yaml"),)),
]
WORKLOADS = {"Deployment", "StatefulSet", "CronJob", "Job"}


def pod_spec(obj: Obj) -> dict[str, Any]:
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return obj["spec"]["template"]["spec"]


def restricted_violations(obj: Obj) -> list[str]:
    """What the restricted Pod Security Standard (and our read-only-root rule) would refuse."""
    pod = pod_spec(obj)
    found = []
    pod_sc = pod.get("securityContext") or {}
    if pod_sc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
        found.append("pod seccompProfile is not RuntimeDefault")
    if pod.get("automountServiceAccountToken") is not False:
        found.append("service account token is mounted")
    for c in pod["containers"] + pod.get("initContainers", []):
        sc = c.get("securityContext") or {}
        name = c["name"]
        if not (sc.get("runAsNonRoot") or pod_sc.get("runAsNonRoot")):
            found.append(f"{name}: runAsNonRoot is not set")
        if sc.get("allowPrivilegeEscalation") is not False:
            found.append(f"{name}: allowPrivilegeEscalation is not false")
        if sc.get("capabilities", {}).get("drop") != ["ALL"]:
            found.append(f"{name}: capabilities are not dropped")
        if sc.get("readOnlyRootFilesystem") is not True:
            found.append(f"{name}: root filesystem is writable")
        if not (c.get("resources") or {}).get("requests"):
            found.append(f"{name}: no resource requests")
    if any("hostPath" in v for v in pod.get("volumes", [])):
        found.append("hostPath volume")
    return found


@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_every_object_validates_strictly(case: tuple[str, tuple[str, ...]]) -> None:
    # Given a chart and a values file (or none: the chart's defaults)
    chart, values = case
    keda_crds_or_skip()
    # When Helm renders it
    objects = render(chart, values)
    # Then each object passes the strict schema of its kind (Kubernetes 1.31 or KEDA CRD)
    problems = {f"{o['kind']}/{o['metadata']['name']}": errors(o) for o in objects if errors(o)}
    assert problems == {}


@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_every_pod_is_restricted_and_namespaced(case: tuple[str, tuple[str, ...]]) -> None:
    chart, values = case
    objects = render(chart, values)
    for obj in objects:
        assert obj["metadata"].get("namespace") == NAMESPACE, obj["metadata"]["name"]
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "kubefuncs"
        if obj["kind"] in WORKLOADS:
            assert restricted_violations(obj) == [], f"{obj['kind']}/{obj['metadata']['name']}"


def test_the_checks_reject_what_a_cluster_would() -> None:
    # Given a valid Deployment, ScaledObject and an unprivileged pod
    keda_crds_or_skip()
    objects = render("function", (str(ROOT / "example" / "functions.yaml"),))
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    scaled = next(o for o in objects if o["kind"] == "ScaledObject")
    # When each gets a field no schema declares, or a privileged setting
    bad_deployment = {**deployment, "spec": {**deployment["spec"], "replica": 1}}
    bad_scaled = {**scaled, "spec": {**scaled["spec"], "scaler": "lag"}}
    sc = pod_spec(deployment)["containers"][0]["securityContext"]
    privileged = {**sc, "allowPrivilegeEscalation": True, "readOnlyRootFilesystem": False}
    pod = pod_spec(deployment)
    bad_pod = {
        **deployment,
        "spec": {
            **deployment["spec"],
            "template": {
                "spec": {
                    **pod,
                    "containers": [{**pod["containers"][0], "securityContext": privileged}],
                }
            },
        },
    }
    # Then the checks catch each of them (so the passing tests above mean something)
    assert errors(bad_deployment)
    assert errors(bad_scaled)
    assert len(restricted_violations(bad_pod)) == 2
