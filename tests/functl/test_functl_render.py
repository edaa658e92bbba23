"""Rendering: golden files plus the properties that matter, one test each."""

from __future__ import annotations

import os

import pytest
from kubefuncs.functl import render, spec
from kubefuncs.functl.errors import SpecError, UsageError
from kubefuncs.functl.output import manifests_yaml

from tests.functl.functl_fixtures import EXAMPLES, GOLDEN, by_kind, load, named, rendered

LABELS = {
    "app.kubernetes.io/instance": "demo",
    "app.kubernetes.io/part-of": "kubefuncs",
    "app.kubernetes.io/managed-by": "functl",
}


@pytest.mark.parametrize("example", EXAMPLES)
def test_rendering_matches_the_golden_file(example: str) -> None:
    # Given a functions.yaml When it is rendered Then the manifests equal the reviewed ones
    # (regenerate with FUNCTL_UPDATE_GOLDEN=1 and review the diff)
    text = manifests_yaml(rendered(example))
    golden = GOLDEN / f"{example}.yaml"
    if os.environ.get("FUNCTL_UPDATE_GOLDEN") == "1":
        golden.write_text(text)
    assert text == golden.read_text()


def test_rendering_is_deterministic() -> None:
    assert manifests_yaml(rendered("valkey")) == manifests_yaml(rendered("valkey"))


def test_every_object_carries_the_release_labels_and_namespace() -> None:
    for obj in rendered("valkey"):
        assert LABELS.items() <= obj["metadata"]["labels"].items()
        assert obj["metadata"]["namespace"] == "fns"


def test_deployment_runs_the_handler_with_the_runtime_environment() -> None:
    # Given the function resize (channel resizer, timeout 120.5 s, own retry policy)
    d = named(rendered("valkey"), "Deployment", "demo-resize")
    c = d["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value", e.get("valueFrom")) for e in c["env"]}
    # Then the container runs the kubefuncs runtime with every KF_* variable
    assert c["command"] == ["python", "-m", "kubefuncs", "example.resize:handle"]
    assert env["KF_BUS_URL"] == "valkey://kubefuncs-valkey.kubefuncs.svc:6379/0"
    assert env["KF_BUS_PASSWORD"] == {"secretKeyRef": {"name": "valkey", "key": "password"}}
    expected = {
        "KF_FUNCTION_NAME": "resize",
        "KF_TOPIC": "images",
        "KF_CHANNEL": "resizer",
        "KF_CONCURRENCY": "2",
        "KF_TIMEOUT_S": "120.5",
        "KF_MAX_ATTEMPTS": "3",
        "KF_BACKOFF_S": "0.5",
        "KF_BACKOFF_MAX_S": "30",
        "KF_GRACE_S": "125.5",
        "KF_HEALTH_ADDR": "0.0.0.0:8081",
        "KF_LOG_LEVEL": "INFO",
        "KF_LOG_FORMAT": "json",
    }
    assert expected.items() <= env.items()
    # and the user's variables, merged with the defaults' ones
    assert env["REGION"] == "eu-west" and env["DEBUG"] == "false" and env["BUCKET"] == "images"
    assert env["API_KEY"] == {"secretKeyRef": {"name": "api", "key": "key"}}
    assert c["envFrom"] == [
        {"configMapRef": {"name": "resize-config"}},
        {"secretRef": {"name": "s3-credentials"}},
    ]


def test_deployment_is_restricted_and_probed() -> None:
    for d in by_kind(rendered("valkey"), "Deployment"):
        pod = d["spec"]["template"]["spec"]
        c = pod["containers"][0]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}
        assert c["ports"] == [{"name": "health", "containerPort": 8081, "protocol": "TCP"}]
        notes = d["spec"]["template"]["metadata"]["annotations"]
        assert notes["prometheus.io/scrape"] == "true" and notes["prometheus.io/port"] == "8081"
        assert notes["prometheus.io/path"] == "/metrics"
        assert "replicas" not in d["spec"], "KEDA/HPA own the replica count"


@pytest.mark.parametrize(("name", "timeout_s"), [("demo-hello", 20), ("demo-resize", 120.5)])
def test_termination_grace_outlasts_the_timeout_and_the_drain(name: str, timeout_s: float) -> None:
    d = named(rendered("valkey"), "Deployment", name)
    grace = d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    drain = float(
        next(
            e["value"]
            for e in d["spec"]["template"]["spec"]["containers"][0]["env"]
            if e["name"] == "KF_GRACE_S"
        )
    )
    assert grace >= drain > timeout_s


def test_own_command_and_image_replace_the_runtime_entrypoint() -> None:
    d = named(rendered("valkey"), "Deployment", "demo-report")
    c = d["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == "ghcr.io/acme/report-go:1.2.3"
    assert c["command"] == ["/app/report"] and c["args"] == ["--verbose"]
    assert d["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == 65532


def test_valkey_scaled_object_scales_on_lag_and_keeps_busy_replicas() -> None:
    so = named(rendered("valkey"), "ScaledObject", "demo-resize")
    spec_ = so["spec"]
    assert spec_["scaleTargetRef"]["name"] == "demo-resize"
    assert (spec_["minReplicaCount"], spec_["maxReplicaCount"]) == (1, 20)
    assert (spec_["pollingInterval"], spec_["cooldownPeriod"]) == (5, 60)
    triggers = {t["name"]: t for t in spec_["triggers"] if t["type"] != "external-push"}
    assert {t["type"] for t in triggers.values()} == {"redis-streams"}
    common = {
        "address": "kubefuncs-valkey.kubefuncs.svc:6379",
        "databaseIndex": "0",
        "consumerGroup": "resizer",
    }
    assert triggers["lag"]["metadata"] == {
        **common,
        "stream": "kf:topic:images",
        "lagCount": "5",
        "activationLagCount": "2",
    }
    assert triggers["pending"]["metadata"] == {
        **common,
        "stream": "kf:topic:images",
        "pendingEntriesCount": "2",
    }
    assert triggers["retry-lag"]["metadata"]["stream"] == "kf:retry:images:resizer"
    assert triggers["retry-pending"]["metadata"]["stream"] == "kf:retry:images:resizer"
    assert all(t["authenticationRef"] == {"name": "demo-bus"} for t in triggers.values())


def test_valkey_password_reaches_keda_through_a_trigger_authentication() -> None:
    (auth,) = by_kind(rendered("valkey"), "TriggerAuthentication")
    assert auth["metadata"]["name"] == "demo-bus"
    assert auth["spec"] == {
        "secretTargetRef": [{"parameter": "password", "name": "valkey", "key": "password"}]
    }


def test_tls_bus_urls_enable_tls_in_the_trigger() -> None:
    s = spec.loads(
        "bus: {url: 'rediss://cache:6380/2'}\nimage: i\n"
        "functions: [{name: a, handler: m:f, topic: t}]"
    )
    so = by_kind(render.render(s, render.Target("fns", "demo")), "ScaledObject")[0]
    meta = so["spec"]["triggers"][0]["metadata"]
    assert (meta["address"], meta["databaseIndex"], meta["enableTLS"]) == (
        "cache:6380",
        "2",
        "true",
    )
    assert "authenticationRef" not in so["spec"]["triggers"][0]


def test_nsq_scaled_object_uses_the_nsq_trigger() -> None:
    so = named(rendered("nsq"), "ScaledObject", "demo-echo")
    trigger, push = so["spec"]["triggers"]
    assert (trigger["type"], push["type"]) == ("nsq", "external-push")
    assert trigger["metadata"] == {
        "nsqLookupdHTTPAddresses": "nsqlookupd-0.nsq:4161,nsqlookupd-1.nsq:4161",
        "topic": "echo",
        "channel": "echo",
        "depthThreshold": "20",
        "activationDepthThreshold": "1",
    }
    assert so["spec"]["minReplicaCount"] == 0
    assert by_kind(rendered("nsq"), "TriggerAuthentication") == []


def test_keda_false_renders_a_cpu_hpa() -> None:
    hpa = named(rendered("valkey"), "HorizontalPodAutoscaler", "demo-report")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 4)
    assert hpa["spec"]["metrics"][0]["resource"] == {
        "name": "cpu",
        "target": {"type": "Utilization", "averageUtilization": 70},
    }
    assert "demo-report" not in {
        o["metadata"]["name"] for o in by_kind(rendered("valkey"), "ScaledObject")
    }


def test_each_schedule_becomes_a_cronjob_that_publishes_to_the_topic() -> None:
    objects = rendered("valkey")
    assert {o["metadata"]["name"] for o in by_kind(objects, "CronJob")} == {
        "demo-hello-cron",
        "demo-resize-nightly",
        "demo-resize-hourly",
    }
    cj = named(objects, "CronJob", "demo-hello-cron")
    assert cj["spec"]["schedule"] == "*/5 * * * *" and cj["spec"]["timeZone"] == "Europe/Berlin"
    pod = cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["image"] == "ghcr.io/kubefuncs/kubefuncs:0.1.0"
    assert c["command"] == [
        "functl",
        "publish",
        "--bus",
        "$(KF_BUS_URL)",
        "hello",
        "--data",
        '{"ping":true}',
    ]
    assert {e["name"] for e in c["env"]} == {"KF_BUS_URL", "KF_BUS_PASSWORD"}
    assert pod["restartPolicy"] == "Never"
    assert (
        named(objects, "CronJob", "demo-resize-hourly")["spec"]["jobTemplate"]["spec"]["template"][
            "spec"
        ]["containers"][0]["command"][-1]
        == "null"
    )


def test_the_image_flag_overrides_the_file() -> None:
    objects = rendered("valkey", render.Target("fns", "demo", "registry.local/kf:dev"))
    assert (
        named(objects, "Deployment", "demo-hello")["spec"]["template"]["spec"]["containers"][0][
            "image"
        ]
        == "registry.local/kf:dev"
    )


@pytest.mark.parametrize(
    ("bus", "problem"),
    [
        ("memory://", "memory://"),
        ("valkey://:hunter2@valkey:6379/0", "password"),
        ("nsq://?nsqd=nsqd:4150", "nsqlookupd"),
        ("valkey://valkey:6379/x", "database must be a number"),
    ],
)
def test_undeployable_bus_urls_are_spec_errors(bus: str, problem: str) -> None:
    s = spec.loads(
        f"bus: {{url: '{bus}'}}\nimage: i\nfunctions: [{{name: a, handler: m:f, topic: t}}]"
    )
    with pytest.raises(SpecError) as e:
        render.render(s, render.Target("fns", "demo"))
    assert problem in str(e.value) and "bus.url" in str(e.value)


def test_missing_image_names_the_flag() -> None:
    s = spec.loads("bus: {url: 'valkey://v:6379'}\nfunctions: [{name: a, handler: m:f, topic: t}]")
    with pytest.raises(UsageError, match="--image"):
        render.render(s, render.Target("fns", "demo"))


@pytest.mark.parametrize(
    ("namespace", "release", "flag"),
    [("Fns", "demo", "--namespace"), ("fns", "x" * 60, "--release")],
)
def test_bad_namespace_or_release_names_the_flag(namespace: str, release: str, flag: str) -> None:
    with pytest.raises(UsageError, match=flag):
        render.render(load("nsq"), render.Target(namespace, release))


def test_names_over_the_kubernetes_limit_are_refused() -> None:
    s = spec.loads(
        "bus: {url: 'valkey://v:6379'}\nimage: i\nfunctions: [{name: "
        + "a" * 40
        + ", handler: m:f, topic: t, schedule: {name: "
        + "b" * 20
        + ", cron: '@daily'}}]"
    )
    with pytest.raises(UsageError, match="over Kubernetes' 52"):
        render.render(s, render.Target("fns", "demo"))


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("valkey://v:6379/0?prefix=team1", ("team1:topic:t", "team1:retry:t:a")),
        ("valkey://v:6379/0", ("kf:topic:t", "kf:retry:t:a")),
        ("nsq://lookupd:4161?prefix=team1.", ("team1.t",)),
    ],
)
def test_scalers_watch_the_names_the_bus_url_prefix_gives(
    tmp_path: pytest.TempPathFactory, url: str, expected: tuple[str, ...]
) -> None:
    # Given a bus URL with a key/topic prefix (the transports honour ?prefix=)
    path = tmp_path / "functions.yaml"  # type: ignore[operator]
    path.write_text(
        f"version: 1\nbus: {{url: '{url}'}}\nfunctions:\n"
        "  - {name: a, handler: 'm:f', topic: t}\n"
    )
    # When rendered / Then KEDA watches the prefixed stream or topic
    objs = render.render(spec.load(str(path)), render.Target("ns", "rel", "img:1"))
    so = named(objs, "ScaledObject", "rel-a")
    watched = {
        t["metadata"].get("stream") or t["metadata"]["topic"] for t in so["spec"]["triggers"]
    }
    assert watched == set(expected)


BATCHED = """
bus: {url: "valkey://v:6379/0"}
image: fns:1
functions:
  - {name: sink, handler: fns.sink:handle, topic: events, batch: 100, batch_wait_s: 0.05}
  - {name: one, handler: fns.one:handle, topic: events}
"""


def test_a_batch_handler_gets_kf_batch_and_a_per_message_one_does_not() -> None:
    # Given a batch handler (batch, batch_wait_s) and a per-message one
    objects = render.render(spec.loads(BATCHED), render.Target("fns", "demo"))

    def env(name: str) -> dict[str, str]:
        d = named(objects, "Deployment", f"demo-{name}")
        (container,) = d["spec"]["template"]["spec"]["containers"]
        return {e["name"]: e.get("value") for e in container["env"]}

    # Then only the batch handler reads its batch settings (KF_BATCH elsewhere exits 2)
    assert (env("sink")["KF_BATCH"], env("sink")["KF_BATCH_WAIT_S"]) == ("100", "0.05")
    assert "KF_BATCH" not in env("one") and "KF_BATCH_WAIT_S" not in env("one")


def test_batch_below_one_is_refused_by_the_schema() -> None:
    with pytest.raises(SpecError, match="batch"):
        spec.loads(BATCHED.replace("batch: 100", "batch: 0"))
