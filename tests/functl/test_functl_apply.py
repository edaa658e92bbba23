"""apply, re-apply, prune, diff and delete against the Kubernetes API stand-in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kubefuncs.functl import deploy, render, spec
from kubefuncs.functl.errors import ClusterUnreachable, Forbidden, Rejected
from kubefuncs.functl.kube import Cluster

from tests.functl.functl_fixtures import TARGET, load, rendered
from tests.functl.functl_kubeapi import FakeKube, kubeconfig

DEPLOYMENTS = ("deployments", "fns")


def actions(changes: list[deploy.Change]) -> dict[str, str]:
    return {c.ref: c.action for c in changes}


def test_first_apply_creates_every_object_with_server_side_apply(
    kube: FakeKube, cluster: Cluster
) -> None:
    # Given an empty namespace When the release is applied
    changes = deploy.apply_all(cluster, rendered("valkey"), release="demo")
    # Then every object is created, through SSA PATCHes owned by the field manager functl
    assert set(actions(changes).values()) == {"created"}
    assert len(kube.objects) == 14 + 1  # and the release's routes ConfigMap (gwroutes.py)
    for obj in kube.objects.values():
        assert [m["manager"] for m in obj["metadata"]["managedFields"]] == ["functl"]
    assert ("PATCH", "/apis/apps/v1/namespaces/fns/deployments/demo-hello") in kube.requests


def test_reapplying_changes_nothing(kube: FakeKube, cluster: Cluster) -> None:
    deploy.apply_all(cluster, rendered("valkey"), release="demo")
    versions = {k: o["metadata"]["resourceVersion"] for k, o in kube.objects.items()}
    # When the same file is applied again
    changes = deploy.apply_all(cluster, rendered("valkey"), release="demo")
    # Then nothing changed: no object has a new resourceVersion
    assert set(actions(changes).values()) == {"unchanged"}
    assert {k: o["metadata"]["resourceVersion"] for k, o in kube.objects.items()} == versions


def test_a_changed_setting_configures_only_that_object(kube: FakeKube, cluster: Cluster) -> None:
    deploy.apply_all(cluster, rendered("nsq"), release="demo")
    text = (
        (Path(__file__).parent / "data" / "nsq.yaml").read_text().replace("target: 20", "target: 7")
    )
    changes = deploy.apply_all(cluster, render.render(spec.loads(text), TARGET), release="demo")
    assert actions(changes) == {
        "networkpolicy.networking.k8s.io/demo-echo": "unchanged",
        "networkpolicy.networking.k8s.io/demo-audit": "unchanged",
        "deployment.apps/demo-echo": "unchanged",
        "scaledobject.keda.sh/demo-echo": "configured",
        "deployment.apps/demo-audit": "unchanged",
        "scaledobject.keda.sh/demo-audit": "unchanged",
    }
    so = kube.objects[("scaledobjects", "fns", "demo-echo")]
    assert so["spec"]["triggers"][0]["metadata"]["depthThreshold"] == "7"


def test_removing_a_function_prunes_its_objects(kube: FakeKube, cluster: Cluster) -> None:
    # Given the valkey release is applied
    deploy.apply_all(cluster, rendered("valkey"), release="demo")
    # When the file loses the function resize (and with it two schedules)
    s = load("valkey")
    smaller = spec.Spec(s.file, s.image, s.bus, tuple(f for f in s.functions if f.name != "resize"))
    changes = deploy.apply_all(cluster, render.render(smaller, TARGET), release="demo")
    # Then its Deployment, ScaledObject, CronJobs and NetworkPolicies are deleted, scalers
    # before the Deployment, the policies only after the pods they isolate
    deleted = [c.ref for c in changes if c.action == "deleted"]
    assert deleted == [
        "cronjob.batch/demo-resize-hourly",
        "cronjob.batch/demo-resize-nightly",
        "scaledobject.keda.sh/demo-resize",
        "deployment.apps/demo-resize",
        "networkpolicy.networking.k8s.io/demo-resize",
        "networkpolicy.networking.k8s.io/demo-resize-schedule",
    ]
    assert not any(name.startswith("demo-resize") for (_, _, name) in kube.objects)


def test_switching_policies_off_prunes_them_after_the_pods(
    kube: FakeKube, cluster: Cluster
) -> None:
    # Given the nsq release was applied with its NetworkPolicies
    deploy.apply_all(cluster, rendered("nsq"), release="demo")
    assert ("networkpolicies", "fns", "demo-echo") in kube.objects
    # When it is applied again with --no-network-policy
    off = render.Target("fns", "demo", network_policy=False)
    changes = deploy.apply_all(cluster, rendered("nsq", off), release="demo")
    # Then the policies are deleted and nothing else changes
    assert {c.ref: c.action for c in changes if c.action != "unchanged"} == {
        "networkpolicy.networking.k8s.io/demo-audit": "deleted",
        "networkpolicy.networking.k8s.io/demo-echo": "deleted",
    }
    assert not any(plural == "networkpolicies" for (plural, _, _) in kube.objects)


def test_prune_leaves_other_releases_and_foreign_objects_alone(
    kube: FakeKube, cluster: Cluster
) -> None:
    deploy.apply_all(cluster, rendered("nsq", render.Target("fns", "other")), release="other")
    foreign = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "demo-legacy",
            "namespace": "fns",
            "labels": {"app.kubernetes.io/instance": "demo"},
        },
        "spec": {},
    }
    kube.objects[("deployments", "fns", "demo-legacy")] = foreign
    # When release demo is applied with an empty function list's worth of objects removed
    deploy.apply_all(cluster, rendered("nsq"), release="demo")
    deploy.apply_all(cluster, [], release="demo")
    # Then only demo's functl objects are gone
    names = {name for (_, _, name) in kube.objects}
    assert {"other-echo", "other-audit", "demo-legacy"} <= names
    assert "demo-echo" not in names


def test_the_hpa_keda_generates_with_our_labels_is_never_pruned(
    kube: FakeKube, cluster: Cluster
) -> None:
    # Given KEDA created its HPA for a ScaledObject, copying the ScaledObject's labels
    deploy.apply_all(cluster, rendered("nsq"), release="demo")
    so_labels = kube.objects[("scaledobjects", "fns", "demo-echo")]["metadata"]["labels"]
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {
            "name": "keda-hpa-demo-echo",
            "labels": {**so_labels, "scaledobject.keda.sh/name": "demo-echo"},
        },
        "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "demo-echo"}, "maxReplicas": 5},
    }
    code, _ = kube.handle(
        "PATCH",
        "/apis/autoscaling/v2/namespaces/fns/horizontalpodautoscalers/"
        "keda-hpa-demo-echo?fieldManager=keda-operator",
        {"content-type": "application/apply-patch+yaml"},
        json.dumps(hpa).encode(),
    )
    assert code == 200
    # When functl re-applies (with prune) Then the HPA is left to KEDA
    changes = deploy.apply_all(cluster, rendered("nsq"), release="demo")
    assert "deleted" not in actions(changes).values()
    assert ("horizontalpodautoscalers", "fns", "keda-hpa-demo-echo") in kube.objects
    # and delete removes the ScaledObject, whose removal makes KEDA drop its HPA
    deploy.delete_all(cluster, release="demo")
    assert list(kube.objects) == [("horizontalpodautoscalers", "fns", "keda-hpa-demo-echo")]


def test_no_prune_keeps_removed_functions(kube: FakeKube, cluster: Cluster) -> None:
    deploy.apply_all(cluster, rendered("nsq"), release="demo")
    changes = deploy.apply_all(cluster, [], release="demo", prune=False)
    assert changes == [] and len(kube.objects) == 6 + 1  # + the routes ConfigMap


def test_dry_run_reports_but_persists_nothing(kube: FakeKube, cluster: Cluster) -> None:
    changes = deploy.apply_all(cluster, rendered("nsq"), release="demo", dry_run=True)
    assert set(actions(changes).values()) == {"created"} and all(c.dry_run for c in changes)
    assert kube.objects == {}


def test_replicas_set_by_the_autoscaler_survive_reapply(kube: FakeKube, cluster: Cluster) -> None:
    # Given KEDA's HPA scaled a function to 3 replicas (another field manager)
    deploy.apply_all(cluster, rendered("nsq"), release="demo")
    scale = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "demo-echo"},
        "spec": {"replicas": 3},
    }
    code, _ = kube.handle(
        "PATCH",
        "/apis/apps/v1/namespaces/fns/deployments/demo-echo?fieldManager=keda&force=true",
        {"content-type": "application/apply-patch+yaml"},
        str(scale).replace("'", '"').encode(),
    )
    assert code == 200
    # When functl applies again Then there is no conflict and the replica count stays
    changes = deploy.apply_all(cluster, rendered("nsq"), release="demo")
    assert actions(changes)["deployment.apps/demo-echo"] == "unchanged"
    assert kube.objects[("deployments", "fns", "demo-echo")]["spec"]["replicas"] == 3


def test_a_field_owned_by_someone_else_is_a_conflict_unless_forced(
    kube: FakeKube, cluster: Cluster
) -> None:
    deploy.apply_all(cluster, rendered("nsq"), release="demo")
    edit = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "demo-echo"},
        "spec": {"revisionHistoryLimit": 9},
    }
    kube.handle(
        "PATCH",
        "/apis/apps/v1/namespaces/fns/deployments/demo-echo?fieldManager=kubectl&force=true",
        {"content-type": "application/apply-patch+yaml"},
        str(edit).replace("'", '"').encode(),
    )
    with pytest.raises(Rejected, match=r"(?s)conflict.*revisionHistoryLimit.*--force-conflicts"):
        deploy.apply_all(cluster, rendered("nsq"), release="demo")
    deploy.apply_all(cluster, rendered("nsq"), release="demo", force=True)
    assert kube.objects[("deployments", "fns", "demo-echo")]["spec"]["revisionHistoryLimit"] == 3


def test_diff_shows_changes_and_pruned_objects_and_nothing_when_in_sync(
    kube: FakeKube, cluster: Cluster
) -> None:
    assert "+kind: Deployment" in deploy.diff_all(cluster, rendered("nsq"), release="demo")
    deploy.apply_all(cluster, rendered("nsq"), release="demo")
    assert deploy.diff_all(cluster, rendered("nsq"), release="demo") == ""
    text = (
        (Path(__file__).parent / "data" / "nsq.yaml").read_text().replace("target: 20", "target: 7")
    )
    objects = [
        o for o in render.render(spec.loads(text), TARGET) if o["metadata"]["name"] != "demo-audit"
    ]
    diff = deploy.diff_all(cluster, objects, release="demo")
    assert "-      depthThreshold: '20'\n+      depthThreshold: '7'" in diff
    assert "--- live/deployment.apps/demo-audit" in diff and "-kind: Deployment" in diff
    assert (
        kube.objects[("scaledobjects", "fns", "demo-echo")]["spec"]["triggers"][0]["metadata"][
            "depthThreshold"
        ]
        == "20"
    ), "diff must not change anything"


def test_delete_removes_the_whole_release(kube: FakeKube, cluster: Cluster) -> None:
    deploy.apply_all(cluster, rendered("valkey"), release="demo")
    changes = deploy.delete_all(cluster, release="demo")
    assert len(changes) == 14 + 1 and kube.objects == {}  # the routes ConfigMap too
    assert deploy.delete_all(cluster, release="demo") == []


def test_list_reads_deployed_functions_with_replicas(kube: FakeKube, cluster: Cluster) -> None:
    deploy.apply_all(cluster, rendered("nsq"), release="demo")
    kube.set_status("deployments", "fns", "demo-echo", {"replicas": 2, "readyReplicas": 1})
    rows = deploy.deployed_functions(cluster, "demo")
    assert {r["name"]: (r["topic"], r["channel"], r["ready"], r["replicas"]) for r in rows} == {
        "echo": ("echo", "echo", 1, 2),
        "audit": ("events.audit", "archive", 0, 0),
    }


def test_forbidden_names_the_permission(kube: FakeKube, cluster: Cluster) -> None:
    kube.forbidden.add(("patch", "deployments"))
    with pytest.raises(Forbidden) as e:
        deploy.apply_all(cluster, rendered("nsq"), release="demo")
    assert e.value.exit_code == 4
    assert "cannot patch resource" in str(e.value) and "deployments.apps" in str(e.value)


def test_forbidden_policies_name_the_permission_too(kube: FakeKube, cluster: Cluster) -> None:
    # NetworkPolicies are applied first, so a missing grant shows up there
    kube.forbidden.add(("patch", "networkpolicies"))
    with pytest.raises(Forbidden) as e:
        deploy.apply_all(cluster, rendered("nsq"), release="demo")
    assert "networkpolicies.networking.k8s.io" in str(e.value).split("fix:")[1]


def test_an_invalid_object_shows_the_servers_message(kube: FakeKube, cluster: Cluster) -> None:
    bad = rendered("nsq")
    bad[2]["spec"]["pollingInterval"] = "often"
    with pytest.raises(Rejected) as e:
        deploy.apply_all(cluster, bad, release="demo")
    assert e.value.exit_code == 5
    assert "422" in str(e.value) and 'ScaledObject.keda.sh "demo-echo" is invalid' in str(e.value)


def test_a_missing_namespace_is_reported(cluster: Cluster) -> None:
    with pytest.raises(Rejected, match='namespaces "elsewhere" not found'):
        deploy.apply_all(
            cluster, rendered("nsq", render.Target("elsewhere", "demo")), release="demo"
        )


def test_keda_not_installed_is_reported_on_apply_and_tolerated_on_delete(
    kube: FakeKube, cluster: Cluster
) -> None:
    kube.missing_groups.add("keda.sh")
    with pytest.raises(Rejected, match=r"(?s)could not find the requested resource.*install KEDA"):
        deploy.apply_all(cluster, rendered("nsq"), release="demo")
    changes = deploy.delete_all(cluster, release="demo")
    assert [c.ref for c in changes] == [
        "deployment.apps/demo-echo",
        "networkpolicy.networking.k8s.io/demo-echo",
    ]


def test_no_kubeconfig_is_cluster_unreachable(tmp_path: Path) -> None:
    with pytest.raises(ClusterUnreachable, match="KUBECONFIG") as e:
        Cluster.connect("fns", kubeconfig=str(tmp_path / "missing"))
    assert e.value.exit_code == 3


def test_an_unreachable_server_is_cluster_unreachable(tmp_path: Path) -> None:
    config = tmp_path / "kubeconfig"
    config.write_text(kubeconfig("http://127.0.0.1:9", "fns"))
    cluster = Cluster.connect("fns", kubeconfig=str(config))
    with pytest.raises(ClusterUnreachable, match="cannot reach the Kubernetes API server"):
        cluster.get("Deployment", "x")


def test_a_field_dropped_from_the_file_is_removed_from_the_cluster(
    kube: FakeKube, cluster: Cluster
) -> None:
    # Given the schedule of hello was applied with a time zone
    deploy.apply_all(cluster, rendered("valkey"), release="demo")
    assert (
        kube.objects[("cronjobs", "fns", "demo-hello-cron")]["spec"]["timeZone"] == "Europe/Berlin"
    )
    # When the time zone leaves the file and the release is applied again
    text = (Path(__file__).parent / "data" / "valkey.yaml").read_text()
    changes = deploy.apply_all(
        cluster,
        render.render(spec.loads(text.replace("timezone: Europe/Berlin", "")), TARGET),
        release="demo",
    )
    # Then server-side apply removes the field functl no longer sets
    assert actions(changes)["cronjob.batch/demo-hello-cron"] == "configured"
    assert "timeZone" not in kube.objects[("cronjobs", "fns", "demo-hello-cron")]["spec"]


def test_status_joins_replicas_from_the_cluster_with_bus_figures(
    kube: FakeKube, cluster: Cluster
) -> None:
    from kubefuncs.functl import actions as act

    deploy.apply_all(cluster, rendered("nsq"), release="demo")
    kube.set_status("deployments", "fns", "demo-echo", {"replicas": 3, "readyReplicas": 3})
    flags = act.Flags(
        functions=str(Path(__file__).parent / "data" / "nsq.yaml"),
        namespace="fns",
        release="demo",
        bus="memory://functl-status",
    )
    rows = {r["name"]: r for r in act.status(flags, print, cluster)}
    assert (rows["echo"]["ready"], rows["echo"]["replicas"], rows["echo"]["depth"]) == (3, 3, 0)
    assert (rows["audit"]["ready"], rows["audit"]["replicas"]) == (0, 0)
