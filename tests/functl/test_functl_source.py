"""Source functions: the ConfigMap, the mount, the install init container, the policy,
the errors, and apply/prune of the ConfigMaps against the Kubernetes API stand-in."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from kubefuncs.functl import deploy, render, spec
from kubefuncs.functl.errors import SpecError, UsageError
from kubefuncs.functl.kube import Cluster

from tests.functl.functl_fixtures import DATA, by_kind, named, rendered
from tests.functl.functl_kubeapi import FakeKube
from tests.functl.functl_schemas import errors, keda_crds_or_skip

TARGET = render.Target("fns", "demo", "ghcr.io/kubefuncs/kubefuncs:0.1.0")
BUS = "bus: {url: valkey://kubefuncs-valkey:6379/0}\n"


def write(tmp_path: Path, functions: str, files: dict[str, str | bytes]) -> Path:
    for rel, content in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    f = tmp_path / "functions.yaml"
    f.write_text(BUS + functions)
    return f


ONE = "functions:\n  - {name: fn, topic: t, source: app, handler: main:handle}\n"


def pod(objects: list[dict], name: str) -> dict:
    return named(objects, "Deployment", name)["spec"]["template"]["spec"]


def test_a_source_function_mounts_its_configmap_read_only_into_the_stock_image() -> None:
    objects = rendered("source")
    cm = named(
        objects,
        "ConfigMap",
        next(
            o["metadata"]["name"]
            for o in by_kind(objects, "ConfigMap")
            if "-hello-" in o["metadata"]["name"]
        ),
    )
    assert cm["data"] == {"f0000-hello.py": (DATA / "src" / "hello.py").read_text()}
    assert cm["metadata"]["labels"]["app.kubernetes.io/component"] == "source"
    p = pod(objects, "demo-hello")
    c = p["containers"][0]
    assert c["image"] == "ghcr.io/kubefuncs/kubefuncs:0.1.0"
    assert c["command"] == ["python", "-m", "kubefuncs", "hello:handle"]
    assert {"name": "KF_SOURCE_DIR", "value": "/kf/source"} in c["env"]
    assert {"name": "source", "mountPath": "/kf/source", "readOnly": True} in c["volumeMounts"]
    volume = next(v for v in p["volumes"] if v["name"] == "source")
    assert volume["configMap"]["name"] == cm["metadata"]["name"]
    assert volume["configMap"]["items"] == [{"key": "f0000-hello.py", "path": "hello.py"}]
    # no dependencies: no init step, no deps volume
    assert "initContainers" not in p
    assert [v["name"] for v in p["volumes"]] == ["tmp", "source"]


def test_a_package_directory_keeps_its_layout_in_the_mount() -> None:
    p = pod(rendered("source"), "demo-orders")
    items = next(v for v in p["volumes"] if v["name"] == "source")["configMap"]["items"]
    assert [i["path"] for i in items] == [
        "shop/__init__.py",
        "shop/orders/__init__.py",
        "shop/orders/total.py",
        ".kf-requirements.txt",
    ]
    assert len({i["key"] for i in items}) == 4


def test_requirements_install_in_an_init_container_into_an_emptydir() -> None:
    objects = rendered("source")
    p = pod(objects, "demo-orders")
    (init,) = p["initContainers"]
    assert init["image"] == "python:3.11-slim-bookworm"
    assert init["command"][:2] == ["python", "-c"]
    env = {e["name"]: e["value"] for e in init["env"]}
    assert env["KF_PIP_INDEX_URL"] == "https://pypi.internal.example/simple"  # from defaults:
    assert {"name": "deps", "mountPath": "/kf/deps"} in init["volumeMounts"]
    assert {"name": "deps", "emptyDir": {"sizeLimit": "512Mi"}} in p["volumes"]
    c = p["containers"][0]
    assert {"name": "deps", "mountPath": "/kf/deps", "readOnly": True} in c["volumeMounts"]
    assert {"name": "KF_DEPS_DIR", "value": "/kf/deps"} in c["env"]
    # the requirements file's specifiers (comments dropped) travel in the ConfigMap
    cm = next(o for o in by_kind(objects, "ConfigMap") if "-orders-" in o["metadata"]["name"])
    assert cm["data"]["f0003-.kf-requirements.txt"] == "tinydep==1.0\n"


def test_a_node_source_runs_in_the_node_image_with_npm_installing_package_json() -> None:
    p = pod(rendered("source"), "demo-pad")
    c = p["containers"][0]
    assert c["image"] == "ghcr.io/kubefuncs/kubefuncs-node:0.1.0"
    assert c["command"] == ["node", "/app/node/function.js"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["KF_HANDLER"] == "handler:handle"
    assert env["NODE_PATH"] == "/kf/deps/node_modules"
    (init,) = p["initContainers"]
    assert init["command"][:2] == ["node", "-e"]
    assert {"name": "KF_NPM_REGISTRY", "value": "https://registry.npmjs.org/"} in init["env"]


def test_every_source_object_passes_strict_schemas_with_a_digest_pinned_image() -> None:
    keda_crds_or_skip()
    t = render.Target("fns", "demo", "ghcr.io/kubefuncs/kubefuncs@sha256:" + "a" * 64)
    for obj in render.render(spec.load(DATA / "source.yaml"), t):
        assert errors(obj) == [], obj["metadata"]["name"]
    assert (
        pod(render.render(spec.load(DATA / "source.yaml"), t), "demo-pad")["containers"][0]["image"]
        == "ghcr.io/kubefuncs/kubefuncs-node:latest"
    )


def test_a_changed_byte_renames_the_configmap_and_rolls_the_deployment(tmp_path: Path) -> None:
    f = write(tmp_path, ONE, {"app/main.py": "def handle(p):\n    return 1\n"})
    before = render.render(spec.load(f), TARGET)
    (tmp_path / "app" / "main.py").write_text("def handle(p):\n    return 2\n")
    after = render.render(spec.load(f), TARGET)
    (old,), (new,) = by_kind(before, "ConfigMap"), by_kind(after, "ConfigMap")
    assert old["metadata"]["name"] != new["metadata"]["name"]
    assert pod(before, "demo-fn") != pod(after, "demo-fn")  # a new pod template: a rollout
    # and the same content renders the same name again
    assert by_kind(render.render(spec.load(f), TARGET), "ConfigMap") == [new]


def test_caches_and_vcs_folders_are_left_out(tmp_path: Path) -> None:
    f = write(
        tmp_path,
        ONE,
        {
            "app/main.py": "x = 1\n",
            "app/__pycache__/main.cpython-311.pyc": b"\0\1",
            "app/.git/HEAD": "ref\n",
            "app/node_modules/x/index.js": "1\n",
        },
    )
    (cm,) = by_kind(render.render(spec.load(f), TARGET), "ConfigMap")
    assert list(cm["data"]) == ["f0000-main.py"]


def test_binary_files_go_to_binary_data(tmp_path: Path) -> None:
    f = write(tmp_path, ONE, {"app/main.py": "x = 1\n", "app/logo.bin": b"\xff\xfe\x00"})
    (cm,) = by_kind(render.render(spec.load(f), TARGET), "ConfigMap")
    assert cm["binaryData"] == {"f0000-logo.bin": "//4A"}
    assert errors(cm) == []


def test_a_source_over_one_mib_once_encoded_is_refused_with_its_size(tmp_path: Path) -> None:
    # Given 800 KiB of binary data: under 1 MiB on disk, over it base64-encoded
    f = write(tmp_path, ONE, {"app/main.py": "x = 1\n", "app/blob.bin": b"\xff" * 800 * 1024})
    with pytest.raises(UsageError) as e:
        render.render(spec.load(f), TARGET)
    message = str(e.value)
    assert "function fn" in message and "1048576 bytes (1 MiB)" in message
    size = int(message.split("a ConfigMap of ")[1].split(" bytes")[0])
    assert 1048576 < size < 1_110_000


@pytest.mark.parametrize(
    ("functions", "files", "problem"),
    [
        (
            "functions:\n  - {name: fn, topic: t, source: nowhere, handler: m:h}\n",
            {},
            "functions.yaml:3: functions[0].source: source 'nowhere' does not exist",
        ),
        (
            "functions:\n  - {name: fn, topic: t, source: main.py}\n",
            {"main.py": ""},
            "source function 'fn' has no handler:",
        ),
        (
            "functions:\n  - {name: fn, topic: t, handler: m:h, requirements: [x]}\n",
            {},
            "requirements: applies only to a source: function",
        ),
        (
            "functions:\n  - {name: fn, topic: t, source: js, handler: h:h, requirements: [x]}\n",
            {"js/package.json": "{}"},
            "a Node function lists its dependencies in package.json",
        ),
        (
            "functions:\n  - {name: fn, topic: t, source: m.py, handler: m:h, "
            "requirements: r.txt}\n",
            {"m.py": "", "r.txt": "--extra-index-url http://x\nok==1\n"},
            "has pip options (--extra-index-url http://x)",
        ),
        (
            "functions:\n  - {name: fn, topic: t, source: m.py, handler: m:h, "
            "env: {KF_SOURCE_DIR: /x}}\n",
            {"m.py": ""},
            "environment variable KF_SOURCE_DIR is set by functl",
        ),
    ],
)
def test_source_mistakes_are_reported_with_the_field(
    tmp_path: Path, functions: str, files: dict[str, str | bytes], problem: str
) -> None:
    f = write(tmp_path, functions, files)
    with pytest.raises(SpecError) as e:
        spec.load(f)
    assert problem in str(e.value)


def test_the_policy_opens_the_index_port_and_warns_for_a_host_name(tmp_path: Path) -> None:
    f = write(
        tmp_path,
        "functions:\n  - {name: fn, topic: t, source: m.py, handler: m:h, requirements: [x==1]}\n"
        "  - {name: ip, topic: u, source: m.py, handler: m:h, requirements: [x==1], "
        "index_url: 'http://10.1.2.3:3141/simple'}\n"
        "  - {name: none, topic: v, source: m.py, handler: m:h}\n",
        {"m.py": ""},
    )
    s = spec.load(f)
    objects = render.render(s, TARGET)
    egress = {o["metadata"]["name"]: o["spec"]["egress"] for o in by_kind(objects, "NetworkPolicy")}
    assert {"ports": [{"port": 443, "protocol": "TCP"}]} in egress["demo-fn"]
    assert {
        "to": [{"ipBlock": {"cidr": "10.1.2.3/32"}}],
        "ports": [{"port": 3141, "protocol": "TCP"}],
    } in egress["demo-ip"]
    assert len(egress["demo-none"]) == 2  # DNS and the bus only
    (warning,) = render.warnings(s, TARGET)
    assert "NetworkPolicy of fn lets its install step reach any address on TCP 443" in warning
    assert "pypi.org" in warning


def test_an_own_egress_rule_for_the_index_port_replaces_the_open_rule() -> None:
    s = spec.load(DATA / "source.yaml")
    policy = named(render.render(s, TARGET), "NetworkPolicy", "demo-orders")
    assert {"ports": [{"port": 443, "protocol": "TCP"}]} not in policy["spec"]["egress"]
    assert not [w for w in render.warnings(s, TARGET) if "of orders" in w]


# -- apply and prune against the stand-in ------------------------------------------------


def configmaps(kube: FakeKube) -> list[str]:
    """The source ConfigMaps (not the release's routes one)."""
    return sorted(
        name
        for (plural, _, name) in kube.objects
        if plural == "configmaps" and not name.endswith("-routes")
    )


def test_apply_creates_the_configmap_and_prunes_the_old_one_after_a_change(
    kube: FakeKube, cluster: Cluster, tmp_path: Path
) -> None:
    f = write(tmp_path, ONE, {"app/main.py": "def handle(p):\n    return 1\n"})
    first = render.render(spec.load(f), TARGET)
    changes = deploy.apply_all(cluster, first, release="demo")
    (old,) = configmaps(kube)
    assert any(c.ref == f"configmap/{old}" and c.action == "created" for c in changes)
    assert ("PATCH", f"/api/v1/namespaces/fns/configmaps/{old}") in kube.requests
    # When the code changes and the release is applied again
    (tmp_path / "app" / "main.py").write_text("def handle(p):\n    return 2\n")
    changes = deploy.apply_all(cluster, render.render(spec.load(f), TARGET), release="demo")
    # Then the new ConfigMap exists, the Deployment mounts it, and the old one is pruned
    (new,) = configmaps(kube)
    assert new != old
    assert {c.ref: c.action for c in changes}[f"configmap/{old}"] == "deleted"
    live = kube.objects[("deployments", "fns", "demo-fn")]
    volumes = live["spec"]["template"]["spec"]["volumes"]
    assert next(v for v in volumes if v["name"] == "source")["configMap"]["name"] == new


def test_prune_and_delete_leave_configmaps_that_are_not_source_configmaps(
    kube: FakeKube, cluster: Cluster, tmp_path: Path
) -> None:
    # Given a ConfigMap carrying the release's labels that functl did not render as source
    foreign = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "demo-settings",
            "namespace": "fns",
            "labels": {
                "app.kubernetes.io/instance": "demo",
                "app.kubernetes.io/managed-by": "functl",
            },
        },
        "data": {"a": "b"},
    }
    cluster.apply(foreign)
    f = write(tmp_path, ONE, {"app/main.py": "x = 1\n"})
    deploy.apply_all(cluster, render.render(spec.load(f), TARGET), release="demo")
    assert "demo-settings" in configmaps(kube)
    # When the whole release is deleted
    deploy.delete_all(cluster, release="demo")
    # Then its source ConfigMap went with it, the other one stayed
    assert configmaps(kube) == ["demo-settings"]


def test_the_source_example_applies_cleanly_against_strict_server_schemas(
    kube: FakeKube, cluster: Cluster, tmp_path: Path
) -> None:
    shutil.copytree(DATA / "src", tmp_path / "src")
    shutil.copy(DATA / "source.yaml", tmp_path / "source.yaml")
    objects = render.render(spec.load(tmp_path / "source.yaml"), TARGET)
    changes = deploy.apply_all(cluster, objects, release="demo")
    assert {c.action for c in changes} == {"created"}
    again = deploy.apply_all(cluster, objects, release="demo")
    assert {c.action for c in again} == {"unchanged"}
    assert json.dumps(objects) == json.dumps(render.render(spec.load(DATA / "source.yaml"), TARGET))
