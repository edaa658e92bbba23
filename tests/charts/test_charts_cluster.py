"""Valkey as a cluster in the charts: the valkey chart's cluster mode (nodes, the
cluster-init Job, the cluster bus port between nodes only), the umbrella's URL check, and
the function and gateway charts' answers to bad cluster URLs (functl's words)."""

from __future__ import annotations

from pathlib import Path

import pytest
from charts_helm import NAMESPACE, RELEASE, ROOT, find, render, render_error
from test_charts_network import functions_file, policies, write

CLUSTER_VALUES = str(ROOT / "tests" / "charts" / "values" / "valkey-cluster.yaml")
KUBEFUNCS_CLUSTER = str(ROOT / "tests" / "charts" / "values" / "kubefuncs-valkey-cluster.yaml")


def env_of(container: dict[str, object]) -> dict[str, object]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}  # type: ignore[attr-defined, index]


def test_the_valkey_chart_runs_a_cluster_of_nodes_that_announce_stable_names() -> None:
    # Given the valkey chart with cluster.enabled
    objects = render("valkey", (CLUSTER_VALUES,))
    sts = find(objects, "StatefulSet", f"{RELEASE}-valkey")
    # Then six pods start together, each a cluster node announcing its headless DNS name
    assert sts["spec"]["replicas"] == 6 and sts["spec"]["podManagementPolicy"] == "Parallel"
    [container] = sts["spec"]["template"]["spec"]["containers"]
    args = container["args"][0]
    headless = f"{RELEASE}-valkey-headless.{NAMESPACE}.svc.cluster.local"
    assert f'--cluster-announce-hostname "$POD_NAME.{headless}"' in args
    assert '--masterauth "$VALKEY_PASSWORD"' in args  # replicas sync with the password
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "valkey": 6379,
        "cluster-bus": 16379,
    }
    config = find(objects, "ConfigMap", f"{RELEASE}-valkey")["data"]["valkey.conf"]
    for line in (
        "cluster-enabled yes",
        "cluster-port 16379",
        "cluster-preferred-endpoint-type hostname",
    ):
        assert line in config.splitlines()
    assert find(objects, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1


def test_the_cluster_init_job_names_every_node_and_is_no_bus_pod() -> None:
    objects = render("valkey", (CLUSTER_VALUES,))
    sts = find(objects, "StatefulSet", f"{RELEASE}-valkey")
    job = find(objects, "Job", f"{RELEASE}-valkey-cluster-init")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    pod = job["spec"]["template"]
    [container] = pod["spec"]["containers"]
    env = env_of(container)
    headless = f"{RELEASE}-valkey-headless.{NAMESPACE}.svc.cluster.local"
    assert env["NODES"] == " ".join(f"{RELEASE}-valkey-{i}.{headless}:6379" for i in range(6))
    assert env["REPLICAS"] == "1" and "VALKEY_PASSWORD" in env
    # its script is the one tests/charts/test_charts_cluster_init.py runs on real nodes
    script = find(objects, "ConfigMap", f"{RELEASE}-valkey-cluster-init")["data"]
    assert script["cluster-init.sh"] == (ROOT / "charts/valkey/files/cluster-init.sh").read_text()
    # the Service and the StatefulSet do not select the Job's pod; Valkey's policy lets it in
    labels = pod["metadata"]["labels"]
    selector = sts["spec"]["selector"]["matchLabels"]
    assert not selector.items() <= labels.items()
    service = find(objects, "Service", f"{RELEASE}-valkey")
    assert not service["spec"]["selector"].items() <= labels.items()
    assert labels["app.kubernetes.io/part-of"] == "kubefuncs"


def test_the_cluster_bus_port_is_open_between_the_nodes_only() -> None:
    objects = render("valkey", (CLUSTER_VALUES,))
    [policy] = policies(objects)
    clients, nodes = policy["spec"]["ingress"]
    # clients (kubefuncs pods, KEDA) on the client port only
    assert clients["ports"] == [{"port": 6379, "protocol": "TCP"}]
    # the cluster bus from the Valkey pods themselves
    sts = find(objects, "StatefulSet", f"{RELEASE}-valkey")
    assert nodes["ports"] == [{"port": 16379, "protocol": "TCP"}]
    assert nodes["from"] == [
        {"podSelector": {"matchLabels": sts["spec"]["selector"]["matchLabels"]}}
    ]


def test_a_cluster_shape_that_cannot_work_is_refused_with_the_fix() -> None:
    message = render_error("valkey", sets=("cluster.enabled=true", "cluster.nodes=5"))
    assert "cluster.nodes: 5 nodes cannot make at least 3 masters" in message
    assert "cluster.nodes: 6" in message


def test_the_umbrella_wants_a_cluster_url_for_a_cluster_and_its_policies_reach_every_node() -> None:
    # Given the umbrella with its Valkey as a cluster but the gateway on the standalone URL
    message = render_error("kubefuncs", sets=("valkey.cluster.enabled=true",))
    # Then it says which value to set, and to what
    assert f'set gateway.bus.url: "valkey+cluster://{RELEASE}-valkey:6379"' in message
    # When the gateway has the cluster URL
    objects = render("kubefuncs", (KUBEFUNCS_CLUSTER,))
    gateway = find(objects, "Deployment", f"{RELEASE}-gateway")
    [container] = gateway["spec"]["template"]["spec"]["containers"]
    assert env_of(container)["KF_BUS_URL"] == f"valkey+cluster://{RELEASE}-valkey:6379"
    # Then its egress reaches every Valkey node (the policy selects the StatefulSet's pods)
    sts = find(objects, "StatefulSet", f"{RELEASE}-valkey")
    pod_labels = sts["spec"]["template"]["metadata"]["labels"]
    policy = find(objects, "NetworkPolicy", f"{RELEASE}-gateway")
    [bus_rule] = [
        r
        for r in policy["spec"]["egress"][1:]
        if r.get("ports") == [{"port": 6379, "protocol": "TCP"}]
    ]
    [peer] = bus_rule["to"]
    assert peer["podSelector"]["matchLabels"].items() <= pod_labels.items()


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("valkey+cluster://", "names no cluster node"),
        ("valkey+cluster://a:70000", "has a bad port"),
        ("valkey+cluster://a:7000,b:x", "has a bad port"),
        ("valkey+cluster://a:7000/0", "a cluster has no database index"),
        ("valkey+cluster://a:7000?db=2", "a cluster has no database index"),
    ],
)
@pytest.mark.parametrize("chart", ["function", "gateway"])
def test_a_bad_cluster_url_is_refused_as_functl_refuses_it(
    tmp_path: Path, chart: str, url: str, words: str
) -> None:
    from kubefuncs.functl import busurl

    values = functions_file(url) if chart == "function" else {"bus": {"url": url}}
    message = render_error(chart, (write(tmp_path, values),))
    assert "bus.url" in message and words in message
    with pytest.raises(ValueError, match=words):
        busurl.parse(url)
