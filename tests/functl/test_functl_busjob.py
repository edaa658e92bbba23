"""Bus preparation from inside the cluster when the bus is not reachable from here:
the Job functl renders, and apply's success, failure and time-out paths against the
Kubernetes API stand-in."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from kubefuncs.functl import actions, busjob
from kubefuncs.functl.cli import main
from kubefuncs.functl.errors import BusUnreachable, UsageError
from kubefuncs.functl.kube import Cluster
from kubefuncs.functl.naming import Target

from tests.functl.functl_fixtures import DATA, load
from tests.functl.functl_kubeapi import FakeKube, kubeconfig, serve
from tests.functl.functl_schemas import kubernetes_errors

TARGET = Target("fns", "demo")
JOB = ("jobs", "fns", "demo-prepare-bus")
POLICY = ("networkpolicies", "fns", "demo-prepare-bus")
# valkey.yaml's bus is kubefuncs-valkey.kubefuncs.svc:6379: an in-cluster name, unknown here
IN_CLUSTER = dict(functions=str(DATA / "valkey.yaml"), namespace="fns", release="demo")
FAILED = {
    "failed": 3,
    "conditions": [
        {
            "type": "Failed",
            "status": "True",
            "reason": "BackoffLimitExceeded",
            "message": "Job has reached the specified backoff limit",
        }
    ],
}


def job_controller(status: dict[str, Any], log: str) -> Callable[[FakeKube, dict[str, Any]], None]:
    """What the Job controller does with a new Job: one pod with ``log``, then ``status``."""

    def run(kube: FakeKube, job: dict[str, Any]) -> None:
        meta = job["metadata"]
        labels = job["spec"]["template"]["metadata"]["labels"]
        kube.add_pod(meta["namespace"], f"{meta['name']}-x7k2p", labels, log)
        kube.set_status("jobs", meta["namespace"], meta["name"], status)

    return run


def container(job: dict[str, Any]) -> dict[str, Any]:
    return job["spec"]["template"]["spec"]["containers"][0]


def test_the_job_runs_functl_prepare_bus_in_the_release_image_on_the_files_bus() -> None:
    s = load("valkey")
    pairs = actions.channels(s)
    # When the preparation Job of the valkey release is rendered
    prepared = busjob.prepare_job(s, TARGET, pairs, timeout_s=90)
    c = container(prepared.job)
    # Then it runs `functl prepare-bus TOPIC/CHANNEL...` in the file's image
    assert c["image"] == "ghcr.io/kubefuncs/kubefuncs:0.1.0"
    assert c["command"] == ["functl", "prepare-bus"]
    assert c["args"] == [f"{t}/{ch}" for t, ch in pairs] and c["args"]
    # with the in-cluster bus URL and the password from the file's Secret
    assert c["env"] == [
        {"name": "KF_BUS_URL", "value": "valkey://kubefuncs-valkey.kubefuncs.svc:6379/0"},
        {
            "name": "KF_BUS_PASSWORD",
            "valueFrom": {"secretKeyRef": {"name": "valkey", "key": "password"}},
        },
    ]
    assert prepared.job["spec"]["activeDeadlineSeconds"] == 90
    # And its NetworkPolicy lets its pods reach DNS and the bus's pods only
    assert prepared.policy is not None
    egress = prepared.policy["spec"]["egress"]
    assert egress[0]["ports"] == [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]
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
    assert prepared.policy["spec"]["podSelector"]["matchLabels"] == prepared.pod_selector
    assert (
        prepared.pod_selector.items()
        <= prepared.job["spec"]["template"]["metadata"]["labels"].items()
    )
    # And both are valid Kubernetes objects
    assert kubernetes_errors(prepared.job) == [] and kubernetes_errors(prepared.policy) == []


def test_image_flag_and_no_network_policy_are_honoured() -> None:
    target = Target("fns", "demo", image="reg/acme:2", network_policy=False)
    prepared = busjob.prepare_job(load("valkey"), target, [("t", "c")], timeout_s=5)
    assert container(prepared.job)["image"] == "reg/acme:2" and prepared.policy is None


def test_without_any_image_the_fix_is_named(tmp_path: Path) -> None:
    text = (
        (DATA / "valkey.yaml").read_text().replace("image: ghcr.io/kubefuncs/kubefuncs:0.1.0\n", "")
    )
    (tmp_path / "f.yaml").write_text(text)
    from kubefuncs.functl import spec

    with pytest.raises(UsageError, match="pass --image"):
        busjob.prepare_job(spec.load(tmp_path / "f.yaml"), TARGET, [("t", "c")], timeout_s=5)


def test_an_unreachable_bus_is_prepared_by_a_job_and_said_so(
    kube: FakeKube, cluster: Cluster
) -> None:
    # Given a bus only reachable inside the cluster, and a Job controller that succeeds
    kube.controllers["jobs"] = job_controller(
        {"succeeded": 1}, "bus topic hello channel hello ready\n"
    )
    out: list[str] = []
    # When the release is applied
    changes = actions.apply_release(actions.Flags(**IN_CLUSTER), out.append, cluster)
    # Then functl says it prepares the bus from inside the cluster, with which Job
    said = [line for line in out if line.startswith("bus not reachable from here")]
    assert len(said) == 1 and said[0].endswith(
        "preparing it from inside the cluster with Job demo-prepare-bus"
    )
    assert "kubefuncs-valkey.kubefuncs.svc" in said[0]
    # And shows the Job's log, then applies the release
    assert "bus topic hello channel hello ready" in out
    assert ("PATCH", "/apis/batch/v1/namespaces/fns/jobs/demo-prepare-bus") in kube.requests
    assert any(c.ref == "deployment.apps/demo-hello" and c.action == "created" for c in changes)
    # And a Job that succeeded is gone, as is its NetworkPolicy
    assert JOB not in kube.objects and POLICY not in kube.objects


def test_a_failed_job_stops_apply_with_its_log(kube: FakeKube, cluster: Cluster) -> None:
    # Given a preparation Job whose pod cannot reach the bus either
    log = "functl: cannot reach the bus valkey://kubefuncs-valkey.kubefuncs.svc:6379/0\n"
    kube.controllers["jobs"] = job_controller(FAILED, log)
    # When the release is applied
    with pytest.raises(BusUnreachable) as e:
        actions.apply_release(actions.Flags(**IN_CLUSTER), lambda _: None, cluster)
    # Then the error names the Job, Kubernetes' reason and the pod's log, and how to go on
    text = str(e.value)
    assert "Job demo-prepare-bus failed: BackoffLimitExceeded" in text
    assert f"    | {log.strip()}" in text and "--skip-bus" in text and e.value.exit_code == 3
    # And nothing of the release was applied; the Job is kept for inspection
    assert not [k for k in kube.objects if k[0] == "deployments"]
    assert JOB in kube.objects and POLICY not in kube.objects


def test_a_job_that_does_not_finish_in_time_fails(kube: FakeKube, cluster: Cluster) -> None:
    # Given no Job controller at all (the Job stays pending)
    flags = actions.Flags(**IN_CLUSTER, prepare_timeout_s=0.3)
    started = time.monotonic()
    with pytest.raises(BusUnreachable, match=r"did not finish within 0\.3 s") as e:
        actions.apply_release(flags, lambda _: None, cluster)
    # Then apply gives up after the time-out, saying there was no log
    assert time.monotonic() - started < 10
    assert "(no log)" in str(e.value)


def test_a_reachable_bus_is_prepared_from_here_without_a_job(
    kube: FakeKube, cluster: Cluster
) -> None:
    out: list[str] = []
    flags = actions.Flags(**IN_CLUSTER, bus="memory://functl-busjob-reachable")
    actions.apply_release(flags, out.append, cluster)
    assert "bus topic hello channel hello ready" in out
    assert not [p for _, p in kube.requests if "/jobs/" in p]
    assert not any(line.startswith("bus not reachable") for line in out)


def test_the_jobs_command_prepares_the_bus(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the Job's command line and environment, on a bus reachable here
    prepared = busjob.prepare_job(load("valkey"), TARGET, [("orders", "store"), ("t", "t")], 5)
    c = container(prepared.job)
    monkeypatch.setenv("KF_BUS_URL", "memory://functl-busjob-command")
    monkeypatch.delenv("KF_BUS_PASSWORD", raising=False)
    # When it runs
    result = CliRunner().invoke(main, [*c["command"][1:], *c["args"]], prog_name="functl")
    # Then every topic and channel is ready
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "bus topic orders channel store ready",
        "bus topic t channel t ready",
    ]


def test_prepare_bus_refuses_a_malformed_pair() -> None:
    result = CliRunner().invoke(main, ["prepare-bus", "--bus", "memory://x", "a/b/c"])
    assert result.exit_code == 2 and "expected TOPIC/CHANNEL" in result.output


def test_functl_apply_from_a_laptop_says_it_prepares_the_bus_in_the_cluster(
    kube: FakeKube, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the brief's command, the file's in-cluster bus, and a cluster over real HTTP
    for var in ("KF_BUS_URL", "KF_BUS_PASSWORD", "KUBECONFIG"):
        monkeypatch.delenv(var, raising=False)
    kube.controllers["jobs"] = job_controller(
        {"succeeded": 1}, "bus topic hello channel hello ready\n"
    )
    with serve(kube) as url:
        config = tmp_path / "kubeconfig"
        config.write_text(kubeconfig(url, "fns"))
        args = ["--apply", "--namespace", "fns", "--release", "demo", "--kubeconfig", str(config)]
        result = CliRunner().invoke(main, [*args, "--functions", IN_CLUSTER["functions"]])
    # Then it applies, saying how the bus was prepared
    assert result.exit_code == 0, result.output
    assert "preparing it from inside the cluster with Job demo-prepare-bus" in result.stdout
    assert "bus topic hello channel hello ready" in result.stdout
    assert "deployment.apps/demo-hello created" in result.stdout
