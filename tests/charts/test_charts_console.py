"""The console of the kubefuncs chart: off unless asked, a least-privilege Role over what
functl applies, and a Deployment that runs `functl serve --cluster` on a valid base file."""

from __future__ import annotations

from typing import Any

from kubefuncs.functl import render, spec
from kubefuncs.functl.kube import KINDS
from kubefuncs.functl.naming import Target

from tests.charts.charts_helm import VALUES, find, render_error
from tests.charts.charts_helm import render as helm
from tests.charts.charts_schemas import errors

ON = (str(VALUES / "kubefuncs-console.yaml"),)


def console_objects(objects: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
    return [o for o in objects if o["metadata"]["name"].endswith("-console")]


def test_nothing_is_rendered_unless_asked() -> None:
    assert console_objects(helm("kubefuncs")) == []


def test_enabled_without_api_keys_fails_saying_what_to_set() -> None:
    message = render_error("kubefuncs", sets=('console={"enabled": true}',))
    assert "console.apiKeysSecret.name" in message


def test_the_role_grants_what_functl_applies_and_pods_list_only() -> None:
    role = find(helm("kubefuncs", ON), "Role")
    granted = {
        (group, resource): tuple(rule["verbs"])
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    applied = {(g, plural) for kind, (g, _, plural) in KINDS.items() if kind != "Job"}
    assert set(granted) == applied | {("", "pods")}
    assert granted[("", "pods")] == ("list",)
    assert {v for k, v in granted.items() if k != ("", "pods")} == {
        ("get", "list", "patch", "delete")
    }


def test_every_object_is_valid_and_the_deployment_serves_the_release() -> None:
    objects = console_objects(helm("kubefuncs", ON))
    assert {o["kind"] for o in objects} == {
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "ConfigMap",
        "Deployment",
        "Service",
    }
    for obj in objects:
        assert errors(obj) == [], obj["kind"]
    pod = find(tuple(objects), "Deployment")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["command"][:3] == ["functl", "serve", "--cluster"]
    assert container["command"][-2:] == ["-r", "shop"]
    assert pod["serviceAccountName"].endswith("-console")
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]}
    assert env["FUNCTL_SERVE_API_KEYS"] == {"name": "console-keys", "key": "keys"}


def test_the_base_file_is_a_functions_yaml_functl_renders() -> None:
    config = find(tuple(console_objects(helm("kubefuncs", ON))), "ConfigMap")
    s = spec.loads(config["data"]["functions.yaml"], "console functions.yaml")
    assert render.render(s, Target("kubefuncs", "shop", "img:1"))
