"""NetworkPolicies: what each function may reach and who may reach it."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest
from click.testing import CliRunner
from kubefuncs.functl import busurl, netpol, render, spec
from kubefuncs.functl.cli import main

from tests.functl.functl_fixtures import DATA, TARGET, by_kind, named, rendered

HEAD = "image: img\n"
HELLO = "{name: hello, handler: m:f, topic: t}"
DNS_RULE = {
    "to": [netpol.DNS_PEER],
    "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}],
}


def loads(body: str, bus: str = "valkey://kf-valkey:6379/0") -> spec.Spec:
    return spec.loads(f"bus: {{url: '{bus}'}}\n{HEAD}{textwrap.dedent(body)}", "f.yaml")


def policies(s: spec.Spec, target: render.Target = TARGET) -> list[dict[str, Any]]:
    return by_kind(render.render(s, target), "NetworkPolicy")


def issues(body: str) -> list[str]:
    with pytest.raises(spec.SpecError) as e:
        loads(body)
    return [str(i) for i in e.value.issues]


def test_each_function_gets_a_policy_selecting_exactly_its_pods() -> None:
    # Given the valkey example (hello and resize have schedules, report has policy: false)
    objects = rendered("valkey")
    # Then each policy selects the pods of its Deployment or of its CronJobs, by the same labels
    for fn in ("hello", "resize"):
        deployment = named(objects, "Deployment", f"demo-{fn}")
        policy = named(objects, "NetworkPolicy", f"demo-{fn}")
        assert policy["spec"]["podSelector"] == deployment["spec"]["selector"]
        assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
        schedule_policy = named(objects, "NetworkPolicy", f"demo-{fn}-schedule")
        for cron in (
            o
            for o in by_kind(objects, "CronJob")
            if o["metadata"]["name"].startswith(f"demo-{fn}-")
        ):
            job_pod_labels = cron["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
            assert (
                schedule_policy["spec"]["podSelector"]["matchLabels"].items()
                <= job_pod_labels.items()
            )
        # and schedule pods accept no connections at all
        assert schedule_policy["spec"]["ingress"] == []
    assert [p["metadata"]["name"] for p in by_kind(objects, "NetworkPolicy")] == [
        "demo-hello",
        "demo-hello-schedule",
        "demo-resize",
        "demo-resize-schedule",
    ]


def test_ingress_is_only_the_health_port_the_container_declares() -> None:
    objects = rendered("valkey")
    container = named(objects, "Deployment", "demo-hello")["spec"]["template"]["spec"][
        "containers"
    ][0]
    [rule] = named(objects, "NetworkPolicy", "demo-hello")["spec"]["ingress"]
    assert rule["ports"] == [
        {"port": p["containerPort"], "protocol": p["protocol"]} for p in container["ports"]
    ]
    assert rule["from"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
        },
        {"podSelector": {}},
    ]


def test_metrics_from_defaults_to_the_namespace_and_empty_means_no_one() -> None:
    [default] = policies(loads(f"functions: [{HELLO}]"))
    assert default["spec"]["ingress"][0]["from"] == [{"podSelector": {}}]
    [closed] = policies(
        loads("functions: [{name: a, handler: m:f, topic: t, network: {metrics_from: []}}]")
    )
    assert closed["spec"]["ingress"] == []


def test_egress_is_dns_the_bus_and_the_functions_own_rules() -> None:
    egress = named(rendered("valkey"), "NetworkPolicy", "demo-resize")["spec"]["egress"]
    assert egress[0] == DNS_RULE
    assert egress[1] == {
        "to": [
            {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kubefuncs"}},
                "podSelector": {
                    "matchLabels": {
                        "app.kubernetes.io/instance": "kubefuncs",
                        "app.kubernetes.io/component": "bus",
                        "app.kubernetes.io/name": "valkey",
                    }
                },
            }
        ],
        "ports": [{"port": 6379, "protocol": "TCP"}],
    }
    assert egress[2:] == [
        {
            "to": [{"ipBlock": {"cidr": "10.20.0.0/16", "except": ["10.20.5.0/24"]}}],
            "ports": [{"port": 443, "protocol": "TCP"}, {"port": 8443, "protocol": "TCP"}],
        },
        {"to": [{"ipBlock": {"cidr": "2001:db8::/32"}}]},
    ]


BUS_CASES: list[tuple[str, dict[tuple[str, ...], list[int]]]] = [
    ("valkey://kf-valkey:6379/0", {("chart", "kf", "", "valkey"): [6379]}),
    ("valkey://kf-valkey:6379?db=3", {("chart", "kf", "", "valkey"): [6379]}),
    (
        "rediss://bus-valkey.data.svc.cluster.local:6380",
        {("chart", "bus", "data", "valkey"): [6380]},
    ),
    ("valkey://10.1.2.3:6379", {("ip", "10.1.2.3/32"): [6379]}),
    ("valkey://[fd00::5]:6379", {("ip", "fd00::5/128"): [6379]}),
    ("valkey://redis.example.com:6379", {("any",): [6379]}),
    ("valkey://kf-nsqlookupd:6379", {("any",): [6379]}),  # an NSQ Service is no Valkey
    ("valkey://kf-valkey:6379/0?prefix=app", {("chart", "kf", "", "valkey"): [6379]}),
    ("valkey+cluster://kf-valkey:6379", {("chart", "kf", "", "valkey"): [6379]}),
    (
        "valkeys+cluster://bus-valkey.data:6379,10.0.0.7:6380,[fd00::7]:6380/?prefix=app",
        {
            ("chart", "bus", "data", "valkey"): [6379],
            ("ip", "10.0.0.7/32"): [6380],
            ("ip", "fd00::7/128"): [6380],
        },
    ),
    (
        "redis+cluster://node-a.example.com:7000,node-b.example.com:7001,10.0.0.8",
        {("any",): [7000, 7001], ("ip", "10.0.0.8/32"): [6379]},
    ),
    (
        "nsq://kf-nsqlookupd:4161,kf-nsqlookupd.other:4161",
        {
            ("chart", "kf", "", ""): [4161, 4150, 4151],
            ("chart", "kf", "other", ""): [4161, 4150, 4151],
        },
    ),
    ("nsq://lookupd.example.com:4161", {("any",): [4161, 4150, 4151]}),
    ("nsq://?nsqd=10.0.0.9:4150", {("ip", "10.0.0.9/32"): [4150, 4151]}),
    (
        "nsq://?nsqd=kf-nsqd:4150&nsqd_http=kf-nsqd:4152",
        {("chart", "kf", "", ""): [4150, 4152]},
    ),
]


@pytest.mark.parametrize(("url", "expected"), BUS_CASES)
def test_the_bus_destination_follows_the_bus_url(
    url: str, expected: dict[tuple[str, ...], list[int]]
) -> None:
    assert netpol.destinations(busurl.parse(url)) == expected


def test_a_bus_the_policy_cannot_pin_is_open_on_its_ports_with_a_warning() -> None:
    # Given a bus host that is not a Service of the bus charts
    s = loads(f"functions: [{HELLO}]", bus="valkey://redis.example.com:6379/0")
    [policy] = policies(s)
    # Then its ports are open to any destination, and functl says how to close them
    assert policy["spec"]["egress"][1] == {"ports": [{"port": 6379, "protocol": "TCP"}]}
    [warning] = render.warnings(s, TARGET)
    assert "hello" in warning and "TCP 6379" in warning and "network: {egress: [{cidr:" in warning


def test_an_egress_rule_covering_the_bus_ports_replaces_the_open_rule() -> None:
    s = loads(
        """
        defaults:
          network: {egress: [{cidr: 192.0.2.0/24, ports: [{port: 6379}]}]}
        functions: [{name: hello, handler: m:f, topic: t}]
        """,
        bus="valkey://redis.example.com:6379/0",
    )
    [policy] = policies(s)
    assert policy["spec"]["egress"] == [
        DNS_RULE,
        {
            "to": [{"ipBlock": {"cidr": "192.0.2.0/24"}}],
            "ports": [{"port": 6379, "protocol": "TCP"}],
        },
    ]
    assert render.warnings(s, TARGET) == []


def test_an_egress_rule_without_ports_leaves_the_bus_reachable() -> None:
    # Given an open bus and an all-ports rule to some other range
    s = loads(
        "functions: [{name: hello, handler: m:f, topic: t,\n"
        "  network: {egress: [{cidr: 198.51.100.0/24}]}}]",
        bus="valkey://redis.example.com:6379/0",
    )
    [policy] = policies(s)
    # Then the bus port stays open (the rule may well be another destination)
    assert {"ports": [{"port": 6379, "protocol": "TCP"}]} in policy["spec"]["egress"]
    assert len(render.warnings(s, TARGET)) == 1


def test_policy_false_and_the_flag_switch_policies_off_and_on() -> None:
    s = loads(
        f"functions: [{HELLO}, {{name: b, handler: m:f, topic: u, network: {{policy: false}}}}]"
    )
    assert [p["metadata"]["name"] for p in policies(s)] == ["demo-hello"]
    off = render.Target("fns", "demo", network_policy=False)
    assert policies(s, off) == []
    on = render.Target("fns", "demo", network_policy=True)
    assert [p["metadata"]["name"] for p in policies(s, on)] == ["demo-hello", "demo-b"]


def test_the_cli_flag_reaches_the_renderer() -> None:
    path = str(DATA / "nsq.yaml")
    with_policy = CliRunner().invoke(main, ["render", "-f", path])
    without = CliRunner().invoke(main, ["render", "-f", path, "--no-network-policy"])
    assert with_policy.exit_code == without.exit_code == 0
    assert (
        "kind: NetworkPolicy" in with_policy.stdout and "kind: NetworkPolicy" not in without.stdout
    )
    # the open bus rule is explained on stderr, never mixed into the manifests
    assert "warning:" in with_policy.stderr and "warning:" not in with_policy.stdout
    assert without.stderr == ""
    # and given before the subcommand, as every shared flag may be
    before = CliRunner().invoke(main, ["--no-network-policy", "render", "-f", path])
    assert before.exit_code == 0 and "kind: NetworkPolicy" not in before.stdout


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "functions: [{name: a, handler: m:f, topic: t, network: {polcy: false}}]",
            "f.yaml:3: functions[0].network.polcy: unknown field 'polcy'\n"
            "    fix: did you mean 'policy'?",
        ),
        (
            "defaults: {network: {policy: 'no'}}\nfunctions: [" + HELLO + "]",
            "f.yaml:3: defaults.network.policy: expected a value of type boolean, got string",
        ),
        (
            "functions: [{name: a, handler: m:f, topic: t, network: {egress: [{cidr: 10.0.0.0}]}}]",
            "functions[0].network.egress[0].cidr: expected an IP range in CIDR notation",
        ),
        (
            "functions: [{name: a, handler: m:f, topic: t,\n"
            "  network: {egress: [{cidr: 10.0.0.300/8}]}}]",
            "functions[0].network.egress[0].cidr: '10.0.0.300/8' is not an IP range",
        ),
        (
            "functions: [{name: a, handler: m:f, topic: t,\n"
            "  network: {egress: [{cidr: 10.0.0.0/8, except: [192.168.0.0/16]}]}}]",
            "f.yaml:4: functions[0].network.egress[0].except[0]: "
            "192.168.0.0/16 is not inside cidr 10.0.0.0/8",
        ),
        (
            "functions: [{name: a, handler: m:f, topic: t,\n"
            "  network: {egress: [{cidr: 10.0.0.0/8, ports: [{port: 70000}]}]}}]",
            "functions[0].network.egress[0].ports[0].port: expected a port number from 1 to 65535",
        ),
        (
            "functions: [{name: a, handler: m:f, topic: t,\n"
            "  network: {egress: [{cidr: 10.0.0.0/8, ports: [{port: 53, protocol: ICMP}]}]}}]",
            "functions[0].network.egress[0].ports[0].protocol: "
            "expected TCP, UDP or SCTP, got string",
        ),
        (
            "functions: [{name: a, handler: m:f, topic: t, network: {metrics_from: [{pods: {}}]}}]",
            "functions[0].network.metrics_from[0].pods: unknown field 'pods'",
        ),
        (
            "functions: [{name: a, handler: m:f, topic: t,\n"
            "  network: {metrics_from: [{podSelector: {app: 'a b'}}]}}]",
            "functions[0].network.metrics_from[0].podSelector.app: expected",
        ),
    ],
    ids=[
        "unknown-key",
        "not-boolean",
        "cidr-without-prefix",
        "cidr-bad-address",
        "except-outside",
        "port-range",
        "protocol",
        "peer-key",
        "label-value",
    ],
)
def test_bad_network_settings_name_the_file_line_and_field(body: str, expected: str) -> None:
    found = issues(body)
    assert any(expected in line for line in found), found
