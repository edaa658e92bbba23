"""NetworkPolicies of the charts: the function chart renders functl's, the bus charts let in
only kubefuncs pods and KEDA, the gateway reaches only DNS, the bus and its callback hosts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from charts_helm import CHARTS, NAMESPACE, RELEASE, Obj, find, render, run_helm, template_args
from charts_schemas import errors
from test_charts_function import IMAGE, by_identity, is_hook

from tests.functl.test_functl_netpol import BUS_CASES

HELLO = {"name": "hello", "handler": "m:f", "topic": "t"}
HPA = {"scaling": {"keda": False, "min": 1}, "resources": {"requests": {"cpu": "10m"}}}
PRIVATE_V4 = [
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
]


def write(tmp_path: Path, values: dict[str, Any], name: str = "values.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(values))
    return str(path)


def policies(objects: Any) -> list[Obj]:
    return [o for o in objects if o["kind"] == "NetworkPolicy"]


def functl_objects(path: str) -> list[Obj]:
    from kubefuncs.functl import render as functl_render
    from kubefuncs.functl import spec

    return functl_render.render(spec.load(path), functl_render.Target(NAMESPACE, RELEASE, IMAGE))


def functions_file(url: str) -> dict[str, Any]:
    """A release on ``url`` covering the network settings: defaults, overrides, schedules."""
    keda = url.startswith(("valkey", "rediss")) or "nsq://?" not in url
    extra = {} if keda else HPA
    return {
        "image": IMAGE,
        "bus": {"url": url},
        "defaults": {
            "network": {
                "metrics_from": [{"namespaceSelector": {"team": "obs"}}, {"podSelector": {}}]
            }
        },
        "functions": [
            {**HELLO, **extra, "schedule": {"cron": "@hourly"}},
            {
                **HELLO,
                **extra,
                "name": "tight",
                "topic": "u",
                "network": {
                    "metrics_from": [],
                    "egress": [
                        {"cidr": "192.0.2.0/24", "ports": [{"port": 4161}, {"port": 6379}]},
                        {"cidr": "10.9.0.0/16", "except": ["10.9.1.0/24"]},
                        {"cidr": "2001:db8::/32", "ports": [{"port": 4150, "protocol": "UDP"}]},
                    ],
                },
            },
            {**HELLO, **extra, "name": "open", "topic": "v", "network": {"policy": False}},
        ],
    }


@pytest.mark.parametrize("url", [url for url, _ in BUS_CASES])
def test_the_function_chart_renders_functls_policies(tmp_path: Path, url: str) -> None:
    # Given a functions.yaml on each form of bus URL
    path = write(tmp_path, functions_file(url))
    # When functl and the function chart render it
    expected = by_identity(functl_objects(path))
    actual = by_identity(o for o in render("function", (path,)) if not is_hook(o))
    # Then both produce the same objects (the NetworkPolicies among them), field for field
    assert sorted(actual) == sorted(expected)
    assert sorted(k for k in actual if k.startswith("NetworkPolicy/")) == [
        "NetworkPolicy/kf-hello",
        "NetworkPolicy/kf-hello-schedule",
        "NetworkPolicy/kf-tight",
    ]
    for key, obj in expected.items():
        assert actual[key] == obj, key
        assert errors(obj) == [], key


def test_the_switch_turns_every_policy_off(tmp_path: Path) -> None:
    path = write(tmp_path, functions_file("valkey://kf-valkey:6379/0"))
    assert policies(render("function", (path,)))
    assert policies(render("function", (path,), ("networkPolicy.enabled=false",))) == []
    for chart in ("gateway", "valkey", "nsq"):
        assert len(policies(render(chart))) == 1, chart
        assert policies(render(chart, (), ("networkPolicy.enabled=false",))) == [], chart


def test_the_prepare_bus_job_gets_dns_and_the_bus_before_it_runs(tmp_path: Path) -> None:
    path = write(tmp_path, functions_file("valkey://kf-valkey.data:6379/0"))
    hooks = [o for o in render("function", (path,)) if is_hook(o)]
    job = find(tuple(hooks), "Job")
    policy = find(tuple(hooks), "NetworkPolicy")
    notes = policy["metadata"]["annotations"]
    # created before the Job (lower weight), for the same install and upgrade events
    assert notes["helm.sh/hook"] == job["metadata"]["annotations"]["helm.sh/hook"]
    assert int(notes["helm.sh/hook-weight"]) < int(
        job["metadata"]["annotations"].get("helm.sh/hook-weight", "0")
    )
    pod_labels = job["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert policy["spec"]["ingress"] == []
    from kubefuncs.functl import busurl, netpol

    bus = netpol.bus_rules(busurl.parse("valkey://kf-valkey.data:6379/0"), frozenset())
    assert [r for r in policy["spec"]["egress"] if r != policy["spec"]["egress"][0]] == bus
    assert policy["spec"]["egress"][0]["ports"] == [
        {"port": 53, "protocol": "UDP"},
        {"port": 53, "protocol": "TCP"},
    ]


@pytest.mark.parametrize(
    ("chart", "workloads"),
    [("valkey", ("kf-valkey",)), ("nsq", ("kf-nsqd", "kf-nsqlookupd", "kf-nsqadmin"))],
)
def test_the_bus_charts_let_in_only_kubefuncs_pods_and_keda(
    chart: str, workloads: tuple[str, ...]
) -> None:
    objects = render(chart, (), ("nsqadmin.enabled=true",) if chart == "nsq" else ())
    [policy] = policies(objects)
    spec = policy["spec"]
    assert spec["policyTypes"] == ["Ingress"]
    [rule] = spec["ingress"]
    assert rule["from"] == [
        {"podSelector": {"matchLabels": {"app.kubernetes.io/part-of": "kubefuncs"}}},
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "keda"}}},
    ]
    ports = {p["port"] for p in rule["ports"]}
    for name in workloads:
        pod = find(objects, "StatefulSet" if name != "kf-nsqadmin" else "Deployment", name)
        template = pod["spec"]["template"]
        # the policy selects every bus pod, and opens exactly the ports they listen on
        assert spec["podSelector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
        for c in template["spec"]["containers"]:
            assert {p["containerPort"] for p in c["ports"]} <= ports
        # the bus pods themselves carry the label the policy lets in (nsqd -> nsqlookupd)
        assert template["metadata"]["labels"]["app.kubernetes.io/part-of"] == "kubefuncs"


def test_the_bus_charts_take_more_namespaces_and_no_keda(tmp_path: Path) -> None:
    values = {"networkPolicy": {"kedaNamespace": "", "allowNamespaces": ["fns"]}}
    [policy] = policies(render("valkey", (write(tmp_path, values),)))
    assert errors(policy) == []
    kubefuncs = {"matchLabels": {"app.kubernetes.io/part-of": "kubefuncs"}}
    assert policy["spec"]["ingress"][0]["from"] == [
        {"podSelector": kubefuncs},
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "fns"}},
            "podSelector": kubefuncs,
        },
    ]


@pytest.mark.parametrize("url", [url for url, _ in BUS_CASES])
def test_the_gateway_reaches_the_bus_as_functl_would(tmp_path: Path, url: str) -> None:
    from kubefuncs.functl import busurl, netpol

    [policy] = policies(render("gateway", (write(tmp_path, {"bus": {"url": url}}),)))
    egress = policy["spec"]["egress"]
    assert egress[0]["to"] == [netpol.DNS_PEER]
    assert egress[1:] == netpol.bus_rules(busurl.parse(url), frozenset())


def test_the_gateway_accepts_requests_on_its_ports_only() -> None:
    # its HTTP port and KEDA's external scaler (a rule each: the scaler's peers are its own)
    objects = render("gateway")
    [policy] = policies(objects)
    container = find(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert policy["spec"]["ingress"] == [
        {"ports": [{"port": p["containerPort"], "protocol": "TCP"}]} for p in container["ports"]
    ]
    assert [p["containerPort"] for p in container["ports"]] == [8080, 9090]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= (
        find(objects, "Deployment")["spec"]["template"]["metadata"]["labels"].items()
    )


def gateway_with_callbacks(tmp_path: Path, values: dict[str, Any]) -> list[Obj]:
    """The gateway chart rendered with callbacks.hosts (a copy whose schema knows
    ``callbacks`` when this chart version does not yet)."""
    copy = tmp_path / f"gateway-{len(list(tmp_path.iterdir()))}"
    shutil.copytree(CHARTS / "gateway", copy)
    schema_path = copy / "values.schema.json"
    schema = json.loads(schema_path.read_text())
    schema["properties"].setdefault("callbacks", {"type": "object"})
    schema_path.write_text(json.dumps(schema))
    args = template_args("gateway", (write(tmp_path, values, f"{copy.name}.yaml"),))
    args[2] = str(copy)
    result = run_helm(*args)
    assert result.code == 0, result.stderr
    found = policies(d for d in yaml.safe_load_all(result.stdout) if d)
    for policy in found:  # strictly valid, as every rendered object
        assert errors(policy) == []
    return found


def test_callback_egress_follows_the_callback_hosts(tmp_path: Path) -> None:
    # Given no callback hosts Then the gateway may not call out at all
    [closed] = gateway_with_callbacks(tmp_path, {"callbacks": {"hosts": []}})
    assert not any(p["port"] in (80, 443) for r in closed["spec"]["egress"] for p in r["ports"])
    # Given callback hosts Then public addresses on 80 and 443, never private ranges
    [public] = gateway_with_callbacks(tmp_path, {"callbacks": {"hosts": ["hooks.example.com"]}})
    rule = public["spec"]["egress"][-1]
    assert rule["ports"] == [{"port": 80, "protocol": "TCP"}, {"port": 443, "protocol": "TCP"}]
    v4, v6 = rule["to"]
    assert v4 == {"ipBlock": {"cidr": "0.0.0.0/0", "except": PRIVATE_V4}}
    assert v6["ipBlock"]["cidr"] == "::/0" and "fc00::/7" in v6["ipBlock"]["except"]
    # Given the ranges of the callback hosts Then only those
    values = {
        "callbacks": {"hosts": ["hooks.example.com"]},
        "networkPolicy": {"callbackCIDRs": ["203.0.113.0/24"], "callbackPorts": [8443]},
    }
    [narrow] = gateway_with_callbacks(tmp_path, values)
    assert narrow["spec"]["egress"][-1] == {
        "to": [{"ipBlock": {"cidr": "203.0.113.0/24"}}],
        "ports": [{"port": 8443, "protocol": "TCP"}],
    }


def test_the_gateway_takes_extra_egress_and_restricted_ingress(tmp_path: Path) -> None:
    peer = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress"}}}
    extra = {"to": [{"ipBlock": {"cidr": "198.51.100.7/32"}}], "ports": [{"port": 443}]}
    values = {"networkPolicy": {"ingressFrom": [peer], "extraEgress": [extra]}}
    [policy] = policies(render("gateway", (write(tmp_path, values),)))
    assert errors(policy) == []
    assert policy["spec"]["ingress"][0]["from"] == [peer]
    assert policy["spec"]["egress"][-1] == extra
