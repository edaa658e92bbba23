"""The scaling that wakes at once and degrades well: the external-push trigger on the
gateway's scaler, KEDA's fallback and the HPA's scale-down behaviour, rendered from
functions.yaml and valid against the KEDA v2.20.2 CRDs."""

from __future__ import annotations

from typing import Any

import pytest
from kubefuncs.functl import render, spec

from tests.functl.functl_fixtures import TARGET, named
from tests.functl.functl_schemas import errors

HEAD = "image: kf:1\nbus: {url: 'valkey://valkey:6379/0'}\nfunctions:\n"


def scaled(function: str) -> dict[str, Any]:
    objects = render.render(spec.loads(HEAD + function), TARGET)
    so = named(objects, "ScaledObject", "demo-a")
    assert errors(so) == []
    return so


def push(so: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for t in so["spec"]["triggers"] if t["type"] == "external-push"]


@pytest.mark.parametrize(
    ("function", "pushed"),
    [
        ("  - {name: a, handler: m:f, topic: t, routes: /a/}", True),  # min 0, routed
        ("  - {name: a, handler: m:f, topic: t}", False),  # nothing the gateway sees
        ("  - {name: a, handler: m:f, topic: t, routes: /a/, scaling: {min: 1}}", False),
        ("  - {name: a, handler: m:f, topic: t, scaling: {push: true}}", True),
        ("  - {name: a, handler: m:f, topic: t, routes: /a/, scaling: {push: false}}", False),
    ],
)
def test_functions_at_zero_with_routes_get_an_external_push_trigger(
    function: str, pushed: bool
) -> None:
    assert bool(push(scaled(function))) is pushed


def test_the_push_trigger_names_the_gateway_scaler_and_the_function() -> None:
    (trigger,) = push(scaled("  - {name: a, handler: m:f, topic: t, routes: /a/}"))
    assert trigger["metadata"] == {
        "scalerAddress": "demo-gateway.fns.svc:9090",
        "topic": "t",
        "channel": "a",
        "targetSize": "10",
    }
    # the queue-depth triggers stay: they decide the replica count
    assert (
        len(scaled("  - {name: a, handler: m:f, topic: t, routes: /a/}")["spec"]["triggers"]) == 5
    )


def test_fallback_and_scale_down_have_defaults_and_can_be_set_or_turned_off() -> None:
    default = scaled("  - {name: a, handler: m:f, topic: t}")["spec"]
    assert default["fallback"] == {"failureThreshold": 3, "replicas": 1}
    down = default["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
    assert down == {
        "stabilizationWindowSeconds": 300,
        "policies": [{"type": "Percent", "value": 50, "periodSeconds": 60}],
    }
    given = scaled(
        "  - {name: a, handler: m:f, topic: t, scaling: {min: 2, max: 9,"
        " fallback: {failures: 6}, scale_down: {percent: 10}}}"
    )["spec"]
    assert given["fallback"] == {"failureThreshold": 6, "replicas": 2}  # replicas: min
    policy = given["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]
    assert policy["policies"] == [{"type": "Percent", "value": 10, "periodSeconds": 60}]
    off = scaled(
        "  - {name: a, handler: m:f, topic: t, scaling: {fallback: false, scale_down: false}}"
    )["spec"]
    assert "fallback" not in off and "advanced" not in off


def test_defaults_apply_to_every_function() -> None:
    body = (
        "defaults: {scaling: {fallback: false, push_address: 'gw.kf.svc:9090'}}\n"
        + HEAD
        + "  - {name: a, handler: m:f, topic: t, routes: /a/}"
    )
    so = named(render.render(spec.loads(body), TARGET), "ScaledObject", "demo-a")
    assert "fallback" not in so["spec"]
    assert push(so)[0]["metadata"]["scalerAddress"] == "gw.kf.svc:9090"


@pytest.mark.parametrize(
    ("scaling", "field"),
    [
        ("{fallback: {failures: 0}}", "fallback"),
        ("{fallback: {replica: 1}}", "fallback"),
        ("{scale_down: {percent: 101}}", "scale_down"),
        ("{push_address: 'no port'}", "push_address"),
        ("{push: maybe}", "push"),
    ],
)
def test_bad_scaling_values_are_refused_at_their_field(scaling: str, field: str) -> None:
    with pytest.raises(spec.SpecError) as refused:
        spec.loads(HEAD + f"  - {{name: a, handler: m:f, topic: t, scaling: {scaling}}}")
    assert f"functions[0].scaling.{field}: expected" in str(refused.value)
