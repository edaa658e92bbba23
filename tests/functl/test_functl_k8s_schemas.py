"""Every rendered object validates strictly against Kubernetes and KEDA CRD schemas."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from tests.functl.functl_fixtures import EXAMPLES, rendered
from tests.functl.functl_schemas import errors, keda_crds_or_skip

EXAMPLE_FILE = Path(__file__).resolve().parents[2] / "example" / "functions.yaml"


@pytest.mark.parametrize("example", EXAMPLES)
def test_every_rendered_object_is_valid(example: str) -> None:
    # Given a functions.yaml using every feature
    # When it is rendered
    objects = rendered(example)
    # Then each object passes the strict schema of its kind
    keda_crds_or_skip()
    for obj in objects:
        assert errors(obj) == [], f"{obj['kind']}/{obj['metadata']['name']}"


def test_the_shipped_example_renders_valid_objects() -> None:
    from kubefuncs.functl import render, spec

    objects = render.render(
        spec.load(EXAMPLE_FILE),
        render.Target("default", "example", "ghcr.io/kubefuncs/kubefuncs:0.1.0"),
    )
    keda_crds_or_skip()
    assert objects
    for obj in objects:
        assert errors(obj) == [], f"{obj['kind']}/{obj['metadata']['name']}"


@pytest.mark.parametrize(
    ("kind", "path"),
    [
        ("Deployment", ("spec", "template", "spec", "containers", 0, "probe")),
        ("ScaledObject", ("spec", "scaler")),
        ("TriggerAuthentication", ("spec", "secretTargetRef", 0, "extra")),
        ("CronJob", ("spec", "jobTemplate", "spec", "retries")),
        ("HorizontalPodAutoscaler", ("spec", "minimum")),
        ("NetworkPolicy", ("spec", "egress", 1, "to", 0, "host")),
    ],
)
def test_the_checks_reject_unknown_fields(kind: str, path: tuple[str | int, ...]) -> None:
    # Given a valid rendered object of each kind with one field no schema declares
    keda_crds_or_skip()
    obj = copy.deepcopy(next(o for o in rendered("valkey") if o["kind"] == kind))
    node = obj
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = 1
    # Then the strict validation rejects it (so the passing tests above mean something)
    assert errors(obj)


def test_the_keda_rule_min_not_above_max_is_checked() -> None:
    keda_crds_or_skip()
    obj = copy.deepcopy(next(o for o in rendered("valkey") if o["kind"] == "ScaledObject"))
    obj["spec"]["minReplicaCount"] = 50
    obj["spec"]["maxReplicaCount"] = 5
    assert any("minReplicaCount" in e for e in errors(obj))
