"""The gateway chart speaks the gateway's configuration, and the umbrella chart wires the
gateway to the bus it installs."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from charts_helm import CHARTS, RELEASE, ROOT, VALUES, Obj, find, render

GATEWAY_FULL = (str(VALUES / "gateway-full.yaml"),)


def container_env(obj: Obj) -> dict[str, Any]:
    container = obj["spec"]["template"]["spec"]["containers"][0]
    return {v["name"]: v.get("value", v.get("valueFrom")) for v in container["env"]}


@pytest.mark.parametrize("values", [(), GATEWAY_FULL], ids=["defaults", "full"])
def test_every_gateway_variable_is_one_the_gateway_reads(values: tuple[str, ...]) -> None:
    from kubefuncs.gateway.settings import ENV_NAMES, GatewaySettings

    # Given the gateway Deployment the chart renders
    env = container_env(find(render("gateway", values), "Deployment"))
    known = set(ENV_NAMES.values())
    # Then it sets only variables the gateway knows (so a renamed setting fails here) ...
    assert {name for name in env if name.startswith("KF_")} <= known
    # ... and the plain values parse into gateway settings
    GatewaySettings.from_env({k: v for k, v in env.items() if isinstance(v, str)})


def test_every_gateway_setting_of_the_chart_exists() -> None:
    import json

    from kubefuncs.gateway.settings import ENV_NAMES

    schema = json.loads((CHARTS / "gateway" / "values.schema.json").read_text())
    settings = schema["properties"]["settings"]["properties"]
    assert {f"KF_GATEWAY_{name.upper()}" for name in settings} <= set(ENV_NAMES.values())


def test_the_routes_configmap_is_a_routes_file_the_gateway_loads() -> None:
    from kubefuncs.gateway import routes

    # Given the gateway chart with routes and publish topics
    objects = render("gateway", GATEWAY_FULL)
    text = find(objects, "ConfigMap")["data"]["routes.yaml"]
    # When the gateway loads the file the ConfigMap holds
    table = routes.loads(text)
    # Then every route and publish topic made it
    assert {r.prefix: r.topic for r in table.routes} == {
        "/test/": "test",
        "/hello/": "hello",
        "/jobs/": "jobs",
    }
    assert table.publish.topics == {"orders", "audit"}
    # and the pods read it from where KF_GATEWAY_ROUTES points
    deployment = find(objects, "Deployment")
    mount = deployment["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][0]
    assert container_env(deployment)["KF_GATEWAY_ROUTES"] == f"{mount['mountPath']}/routes.yaml"


def test_a_gateway_routes_file_is_a_values_file_of_the_gateway_chart() -> None:
    from kubefuncs.gateway import routes

    # Given the example's routes file (routes: and publish:) used as the chart's values
    example = ROOT / "example" / "routes.yaml"
    objects = render("gateway", (str(example),))
    # Then the gateway loads the same table from the ConfigMap as from the file
    # (Helm writes the mapping in key order: same-length prefixes may swap places, which
    # cannot change a match)
    loaded, expected = (
        routes.loads(find(objects, "ConfigMap")["data"]["routes.yaml"]),
        routes.load(example),
    )
    assert {r.prefix: r for r in loaded.routes} == {r.prefix: r for r in expected.routes}
    assert loaded.publish == expected.publish


@pytest.mark.parametrize("values", [(), GATEWAY_FULL], ids=["defaults", "full"])
def test_callback_hosts_reach_the_gateway_and_default_to_none(values: tuple[str, ...]) -> None:
    from kubefuncs.gateway.callbacks import HostPattern
    from kubefuncs.gateway.settings import GatewaySettings

    env = container_env(find(render("gateway", values), "Deployment"))
    settings = GatewaySettings.from_env({k: v for k, v in env.items() if isinstance(v, str)})
    if not values:  # callbacks are off unless hosts are listed, public addresses only
        assert (settings.callback_hosts, settings.callback_allow_private) == ((), False)
        return
    assert settings.callback_hosts == (
        HostPattern("hooks.example.com"),
        HostPattern("*.hooks.example.com", 8443),
    )
    assert settings.callback_allow_private is True


def test_the_gateway_outlives_its_drain_and_autoscaling_owns_replicas() -> None:
    objects = render("gateway", GATEWAY_FULL)
    deployment = find(objects, "Deployment")
    env = container_env(deployment)
    drain = float(env["KF_GATEWAY_SHUTDOWN_DELAY_S"]) + float(env["KF_GATEWAY_GRACE_S"])
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= math.ceil(drain) + 5
    assert "replicas" not in deployment["spec"]
    assert find(objects, "HorizontalPodAutoscaler")["spec"]["minReplicas"] == 3
    assert find(objects, "Ingress")["spec"]["rules"][0]["host"] == "fns.example.com"


def test_the_umbrella_vendors_the_sibling_charts_as_symlinks() -> None:
    chart = yaml.safe_load((CHARTS / "kubefuncs" / "Chart.yaml").read_text())
    for dep in chart["dependencies"]:
        link = CHARTS / "kubefuncs" / "charts" / dep["name"]
        assert link.is_symlink(), f"{link} must be a symlink (no helm dependency build)"
        assert link.resolve() == (CHARTS / dep["name"]).resolve()
        assert os.readlink(link) == f"../../{dep['name']}"
        assert dep["repository"] == f"file://../{dep['name']}"
        sibling = yaml.safe_load((CHARTS / dep["name"] / "Chart.yaml").read_text())
        assert dep["version"] == sibling["version"]


def test_the_umbrella_points_the_gateway_at_its_valkey() -> None:
    # Given the umbrella with its defaults
    objects = render("kubefuncs")
    env = container_env(find(objects, "Deployment", f"{RELEASE}-gateway"))
    # Then the gateway's bus URL names the Valkey Service, and its password the Valkey Secret
    service = find(objects, "Service", f"{RELEASE}-valkey")
    assert env["KF_BUS_URL"] == f"valkey://{service['metadata']['name']}:6379/0"
    secret = find(objects, "Secret", f"{RELEASE}-valkey")
    ref = env["KF_BUS_PASSWORD"]["secretKeyRef"]
    assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["data"]
    assert not [o for o in objects if "nsq" in o["metadata"]["name"]]


def test_the_umbrella_on_nsq_points_the_gateway_at_nsqlookupd() -> None:
    objects = render("kubefuncs", (str(VALUES / "kubefuncs-nsq.yaml"),))
    env = container_env(find(objects, "Deployment", f"{RELEASE}-gateway"))
    lookupd = find(objects, "Service", f"{RELEASE}-nsqlookupd")
    assert env["KF_BUS_URL"] == f"nsq://{lookupd['metadata']['name']}:4161"
    assert "KF_BUS_PASSWORD" not in env
    assert not [o for o in objects if "valkey" in o["metadata"]["name"]]


def test_nsqd_broadcasts_its_pod_dns_name_and_registers_with_every_lookupd() -> None:
    # Given NSQ with three nsqlookupd
    objects = render("nsq", (str(VALUES / "nsq-ha.yaml"),))
    nsqd = find(objects, "StatefulSet", f"{RELEASE}-nsqd")
    headless = find(objects, "Service", f"{RELEASE}-nsqd-headless")
    args = nsqd["spec"]["template"]["spec"]["containers"][0]["command"]
    # Then each nsqd broadcasts <pod>.<headless service>..., resolvable before it is ready
    assert nsqd["spec"]["serviceName"] == headless["metadata"]["name"]
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["publishNotReadyAddresses"]
    assert "--broadcast-address=$(POD_NAME).kf-nsqd-headless.kf-test.svc.cluster.example" in args
    # and registers with each nsqlookupd pod by name
    lookupd = [a for a in args if a.startswith("--lookupd-tcp-address=")]
    assert lookupd == [
        f"--lookupd-tcp-address=kf-nsqlookupd-{i}.kf-nsqlookupd-headless.kf-test.svc.cluster.example:4160"
        for i in range(3)
    ]
    assert (
        nsqd["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]
        == "50Gi"
    )


def test_valkey_keeps_the_password_out_of_the_pod_spec_and_never_evicts() -> None:
    objects = render("valkey")
    statefulset = find(objects, "StatefulSet")
    container = statefulset["spec"]["template"]["spec"]["containers"][0]
    assert '"$VALKEY_PASSWORD"' in container["args"][0]
    assert "maxmemory-policy noeviction" in find(objects, "ConfigMap")["data"]["valkey.conf"]
    assert find(objects, "Secret")["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    existing = render("valkey", (str(VALUES / "valkey-existing-secret.yaml"),))
    assert not [o for o in existing if o["kind"] == "Secret"]
    env = {
        v["name"]: v
        for v in find(existing, "StatefulSet")["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["VALKEY_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "bus-credentials",
        "key": "valkey-password",
    }


def test_sample_values_files_exist_for_every_chart() -> None:
    for chart in ("valkey", "nsq", "gateway", "function", "kubefuncs"):
        assert list(Path(VALUES).glob(f"{chart}-*.yaml")), chart


def test_a_jwt_public_key_secret_is_mounted_where_the_gateway_reads_it() -> None:
    from kubefuncs.gateway.settings import GatewaySettings

    deployment = find(render("gateway", GATEWAY_FULL), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    env = container_env(deployment)
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "jwt-public-key")
    volume = next(v for v in pod["volumes"] if v["name"] == "jwt-public-key")
    assert volume["secret"] == {
        "secretName": "gateway-jwt-public",
        "items": [{"key": "key.pem", "path": "key.pem"}],
    }
    assert env["KF_GATEWAY_JWT_PUBLIC_KEY_FILE"] == f"{mount['mountPath']}/key.pem"
    assert env["KF_GATEWAY_JWKS_URL"] == "https://auth.example.com/.well-known/jwks.json"
    plain = {k: v for k, v in env.items() if isinstance(v, str)}
    assert GatewaySettings.from_env(plain).auth_failures_per_min == 60


def test_the_gateway_mounts_the_routes_functl_keeps_and_re_reads_them() -> None:
    from kubefuncs.functl import gwroutes
    from kubefuncs.functl.naming import Target, object_name

    # Given the gateway chart with its defaults (the functl release is the Helm release)
    deployment = find(render("gateway"), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    env = container_env(deployment)
    # Then the ConfigMap functl writes for that release is mounted as a directory (no
    # subPath, so the kubelet updates it), optional (no function deployed yet) ...
    volume = next(v for v in pod["volumes"] if v["name"] == "function-routes")
    name = object_name(Target("any", RELEASE), gwroutes.COMPONENT_ROUTES)
    assert volume["configMap"] == {"name": name, "optional": True}
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "function-routes")
    assert "subPath" not in mount
    # ... where the gateway reads its function routes, re-read every 2 s
    assert env["KF_GATEWAY_FUNCTION_ROUTES"] == f"{mount['mountPath']}/{gwroutes.ROUTES_KEY}"
    assert env["KF_GATEWAY_ROUTES_RELOAD_S"] == "2"
    # and with functionRoutes.release "" there is none
    off = find(render("gateway", sets=("functionRoutes.release=",)), "Deployment")
    assert "KF_GATEWAY_FUNCTION_ROUTES" not in container_env(off)
    assert all(v["name"] != "function-routes" for v in off["spec"]["template"]["spec"]["volumes"])
