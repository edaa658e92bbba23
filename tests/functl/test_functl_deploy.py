"""``functl deploy PATH`` and ``functl delete NAME`` against the Kubernetes API stand-in,
and ``functl dev PATH`` end to end."""

from __future__ import annotations

import asyncio
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner
from kubefuncs.functl import quick
from kubefuncs.functl.actions import Flags
from kubefuncs.functl.cli import main
from kubefuncs.functl.cmd_deploy import delete_function, deploy_source
from kubefuncs.functl.errors import UsageError
from kubefuncs.functl.kube import Cluster

from tests.functl.functl_kubeapi import FakeKube, kubeconfig
from tests.functl.functl_schemas import keda_crds_or_skip, server_validator
from tests.procs import Proc
from tests.servers import free_port

BUS = "valkey://kubefuncs-valkey:6379/0"
ORDERS = """\
from kubefuncs import function


@function("orders", name="take-order")
def take(payload):
    return {"took": payload}
"""
PLAIN = "def handle(payload):\n    return payload\n"


def flags(path: Path) -> Flags:
    return Flags(
        code=str(path),
        functions=str(path.parent / "functions.yaml"),
        namespace="fns",
        release="demo",
        image="ghcr.io/kubefuncs/kubefuncs:0.1.0",
        skip_bus=True,
    )


def names(kube: FakeKube, plural: str) -> list[str]:
    return sorted(n for (p, _, n) in kube.objects if p == plural)


def test_deploy_takes_name_and_topic_from_the_decorator_and_prints_how_to_call(
    kube: FakeKube, cluster: Cluster, tmp_path: Path
) -> None:
    handler = tmp_path / "orders_fn.py"
    handler.write_text(ORDERS)
    out: list[str] = []
    given = quick.Given(routes=("/orders/",), bus_url=BUS)
    changes = deploy_source(flags(handler), given, out.append, cluster)
    assert {c.action for c in changes} == {"created"}
    assert names(kube, "deployments") == ["demo-take-order"]
    live = kube.objects[("deployments", "fns", "demo-take-order")]
    c = live["spec"]["template"]["spec"]["containers"][0]
    assert c["command"] == ["python", "-m", "kubefuncs", "orders_fn:take"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["KF_TOPIC"] == "orders"
    text = "\n".join(out)
    assert "function take-order deployed as release demo in namespace fns" in text
    assert "route * /orders/ -> topic orders: curl -X POST http://<gateway>/orders/" in text
    assert "functl call orders --data" in text
    assert "functl delete take-order -n fns -r demo" in text


def test_a_second_deploy_keeps_the_other_functions_and_prunes_only_its_own_leftovers(
    kube: FakeKube, cluster: Cluster, tmp_path: Path
) -> None:
    a, b = tmp_path / "alpha.py", tmp_path / "beta.py"
    a.write_text(PLAIN)
    b.write_text(PLAIN)
    deploy_source(flags(a), quick.Given(bus_url=BUS), lambda _: None, cluster)
    deploy_source(flags(b), quick.Given(bus_url=BUS), lambda _: None, cluster)
    assert names(kube, "deployments") == ["demo-alpha", "demo-beta"]
    (old_alpha,) = [n for n in names(kube, "configmaps") if n.startswith("demo-alpha-src-")]
    # When alpha's code changes and it is deployed again
    a.write_text(PLAIN.replace("return payload", "return [payload]"))
    changes = deploy_source(flags(a), quick.Given(bus_url=BUS), lambda _: None, cluster)
    # Then its old ConfigMap is pruned, and beta is untouched
    assert {c.ref: c.action for c in changes}[f"configmap/{old_alpha}"] == "deleted"
    assert names(kube, "deployments") == ["demo-alpha", "demo-beta"]
    assert len([n for n in names(kube, "configmaps") if n.startswith("demo-beta-src-")]) == 1
    # And delete NAME removes that function only
    out: list[str] = []
    delete_function(flags(a), "alpha", out.append, cluster)
    assert names(kube, "deployments") == ["demo-beta"]
    assert all(not n.startswith("demo-alpha") for (_, _, n) in kube.objects)
    assert "function alpha of release demo in namespace fns:" in out[-1]
    out.clear()
    delete_function(flags(a), "alpha", out.append, cluster)
    assert out[-1].endswith("not found")


def test_the_command_line_deploys_with_flags_over_the_declarations(tmp_path: Path) -> None:
    handler = tmp_path / "orders_fn.py"
    handler.write_text(ORDERS)
    kube = FakeKube(validator=server_validator)
    keda_crds_or_skip()
    from tests.functl.functl_kubeapi import serve

    with serve(kube) as url:
        config = tmp_path / "kubeconfig"
        config.write_text(kubeconfig(url, "fns"))
        result = CliRunner().invoke(
            main,
            [
                "deploy",
                str(handler),
                "--topic",
                "orders-v2",
                "--route",
                "/o/,/orders/",
                "--bus-url",
                BUS,
                "-n",
                "fns",
                "--image",
                "ghcr.io/kubefuncs/kubefuncs:0.1.0",
                "--kubeconfig",
                str(config),
                "--skip-bus",
            ],
        )
    assert result.exit_code == 0, result.output
    assert "deployment.apps/kubefuncs-take-order created" in result.output
    assert "-> topic orders-v2" in result.output and "/o/" in result.output


def test_handler_discovery_explains_what_it_could_not_find(tmp_path: Path) -> None:
    nothing = tmp_path / "nothing.py"
    nothing.write_text("X = 1\n")
    with pytest.raises(UsageError, match="no @function and no handle"):
        quick.spec_for(str(nothing), quick.Given(bus_url=BUS))
    two = tmp_path / "two_fns.py"
    two.write_text(ORDERS + '\n\n@function("b")\ndef other(p):\n    return p\n')
    with pytest.raises(UsageError, match=r"several functions \(take, other\)"):
        quick.spec_for(str(two), quick.Given(bus_url=BUS))
    s = quick.spec_for(str(two), quick.Given(bus_url=BUS, handler="other"))
    assert (s.functions[0].name, s.functions[0].topic) == ("other", "b")
    broken = tmp_path / "broken_fn.py"
    broken.write_text("raise RuntimeError('import-time failure')\n")
    with pytest.raises(UsageError, match="import-time failure"):
        quick.spec_for(str(broken), quick.Given(bus_url=BUS))


def test_functl_dev_serves_a_single_file_with_one_command(tmp_path: Path) -> None:
    # Given a handler file and no functions.yaml
    handler = tmp_path / "devorders_fn.py"
    handler.write_text(ORDERS.replace('"took"', '"dev took"'))
    port = free_port()
    dev = Proc(
        ["kubefuncs.functl", "dev", str(handler), "--route", "/orders/", "--port", str(port)],
        {"KF_BUS_URL": ""},
    )
    try:
        dev.wait_http(f"http://127.0.0.1:{port}/readyz")
        # When its route is called through the gateway
        status, body = asyncio.run(asyncio.to_thread(_post, f"http://127.0.0.1:{port}/orders/"))
        # Then the handler loaded from the file's own folder answers
        assert status == 200 and '"dev took"' in body
    finally:
        assert dev.stop() == 0, dev.output()


def _post(url: str) -> tuple[int, str]:
    request = urllib.request.Request(url, data=b'"x"', method="POST")
    with urllib.request.urlopen(request, timeout=10) as r:
        return int(r.status), r.read().decode()


def test_functl_dev_installs_a_source_functions_requirements_once(tmp_path: Path) -> None:
    from tests.runtime.test_source import python_with_pip, tiny_wheel

    # Given a source function requiring a package from a folder of wheels
    tiny_wheel(tmp_path / "wheels", "devdep_marker", "1.0", "VALUE = 'from the wheel'\n")
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "devdep_fn.py").write_text(
        "import devdep_marker\n\ndef handle(payload):\n    return devdep_marker.VALUE\n"
    )
    (tmp_path / "functions.yaml").write_text(
        "functions:\n"
        "  - {name: dep, topic: dep, source: app, handler: 'devdep_fn:handle', routes: /dep/,\n"
        "     requirements: [devdep_marker==1.0],\n"
        f"     index_url: '{(tmp_path / 'wheels').as_uri()}'}}\n"
    )
    env = {
        "KF_BUS_URL": "",
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "KF_PIP_PYTHON": python_with_pip(),
    }
    stamps = []
    for _ in range(2):  # the second start finds the cache
        port = free_port()
        dev = Proc(
            ["kubefuncs.functl", "dev", str(tmp_path / "functions.yaml"), "--port", str(port)], env
        )
        try:
            dev.wait_http(f"http://127.0.0.1:{port}/readyz", timeout_s=60)
            # When its route is called / Then the installed package answers
            status, body = asyncio.run(asyncio.to_thread(_post, f"http://127.0.0.1:{port}/dep/"))
            assert (status, body) == (200, "from the wheel")
        finally:
            assert dev.stop() == 0, dev.output()
        (cached,) = (tmp_path / "cache" / "kubefuncs" / "dev-deps").iterdir()
        stamps.append((cached / ".kf-install-s").stat().st_mtime_ns)
    assert (cached / "devdep_marker" / "__init__.py").is_file()
    assert stamps[0] == stamps[1]  # installed once
