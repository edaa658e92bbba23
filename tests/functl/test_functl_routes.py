"""How the gateway learns the routes functl deploys: the release's ``<release>-routes``
ConfigMap (functl/gwroutes.py) kept by deploy/delete against the Kubernetes API stand-in,
and a real gateway process that re-reads it from a kubelet-style mount (gateway/reload.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from kubefuncs.functl import quick
from kubefuncs.functl.cmd_deploy import delete_function, deploy_source
from kubefuncs.functl.errors import UsageError
from kubefuncs.functl.kube import Cluster
from kubefuncs.gateway.routes import loads

from tests.functl.functl_kubeapi import FakeKube
from tests.functl.test_functl_deploy import BUS, PLAIN, flags
from tests.procs import Proc
from tests.servers import ServerProcess, free_port

ROUTES = ("configmaps", "fns", "demo-routes")
UPPER = "def handle(request):\n    return request.text().upper()\n"


def routes_file(kube: FakeKube) -> str:
    text: str = kube.objects[ROUTES]["data"]["routes.yaml"]
    return text


def deploy(cluster: Cluster, path: Path, *routes: str) -> list[str]:
    out: list[str] = []
    deploy_source(flags(path), quick.Given(routes=routes, bus_url=BUS), out.append, cluster)
    return out


def test_deploy_adds_its_routes_to_the_release_routes_and_delete_removes_them(
    kube: FakeKube, cluster: Cluster, tmp_path: Path
) -> None:
    # Given two functions deployed one by one, each with its own route
    (tmp_path / "orders.py").write_text(PLAIN)
    (tmp_path / "upper.py").write_text(UPPER)
    out = deploy(cluster, tmp_path / "orders.py", "/orders/")
    assert "configmap/demo-routes created" in out
    deploy(cluster, tmp_path / "upper.py", "/upper/")
    # Then the release's routes file routes both, as the gateway reads it
    table = loads(routes_file(kube))
    assert {r.prefix: r.topic for r in table.routes} == {"/orders/": "orders", "/upper/": "upper"}
    # When one is deleted Then only its route leaves
    delete_function(flags(tmp_path / "orders.py"), "orders", lambda _: None, cluster)
    assert [r.prefix for r in loads(routes_file(kube)).routes] == ["/upper/"]
    # and with the last function gone, so is the ConfigMap
    delete_function(flags(tmp_path / "upper.py"), "upper", lambda _: None, cluster)
    assert ROUTES not in kube.objects


def test_a_route_another_function_has_is_refused_before_anything_changes(
    kube: FakeKube, cluster: Cluster, tmp_path: Path
) -> None:
    (tmp_path / "orders.py").write_text(PLAIN)
    (tmp_path / "thief.py").write_text(PLAIN)
    deploy(cluster, tmp_path / "orders.py", "/orders/")
    before = {k: v["metadata"]["resourceVersion"] for k, v in kube.objects.items()}
    # When another function asks for the same path
    with pytest.raises(UsageError) as e:
        deploy(cluster, tmp_path / "thief.py", "/orders/")
    # Then the error names both functions and nothing was applied
    assert "route /orders/ of function thief is already the route of function orders" in str(e)
    assert {k: v["metadata"]["resourceVersion"] for k, v in kube.objects.items()} == before


def test_a_redeploy_with_another_route_replaces_the_old_one(
    kube: FakeKube, cluster: Cluster, tmp_path: Path
) -> None:
    (tmp_path / "orders.py").write_text(PLAIN)
    deploy(cluster, tmp_path / "orders.py", "/orders/")
    out = deploy(cluster, tmp_path / "orders.py", "/v2/orders/")
    assert "configmap/demo-routes configured" in out
    assert [r.prefix for r in loads(routes_file(kube)).routes] == ["/v2/orders/"]


# -- the gateway re-reads the mounted ConfigMap -----------------------------------------


def mount(folder: Path, data: dict[str, str], generation: int) -> None:
    """Lay ``data`` out as the kubelet does a ConfigMap volume: a timestamped folder,
    ``..data`` pointing at it (swapped atomically) and one symlink per key."""
    real = folder / f"..2026_12_03_{generation}"
    real.mkdir()
    for key, text in data.items():
        (real / key).write_text(text)
    tmp = folder / "..data_tmp"
    tmp.symlink_to(real.name)
    os.replace(tmp, folder / "..data")
    for key in data:
        if not (folder / key).is_symlink():
            (folder / key).symlink_to(f"..data/{key}")


def status(url: str, body: bytes) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def until(url: str, body: bytes, want: int, timeout_s: float = 20.0) -> bytes:
    deadline = time.monotonic() + timeout_s
    seen: tuple[int, bytes] = (0, b"")
    while time.monotonic() < deadline:
        seen = status(url, body)
        if seen[0] == want:
            return seen[1]
        time.sleep(0.1)
    raise AssertionError(f"{url}: wanted {want}, last {seen}")


@pytest.mark.real
def test_the_gateway_serves_a_deployed_route_without_a_restart(
    valkey_server: ServerProcess, kube: FakeKube, cluster: Cluster, tmp_path: Path
) -> None:
    # Given a gateway whose function routes come from a mounted ConfigMap not there yet
    bus = f"valkey://127.0.0.1:{valkey_server.port}/0?prefix=gwroutes{free_port()}"
    port = free_port()
    (tmp_path / "upper.py").write_text(UPPER)
    (tmp_path / "main.yaml").write_text("routes: {}\n")
    folder = tmp_path / "functions"
    folder.mkdir()
    gateway = Proc(
        ["kubefuncs.gateway", str(tmp_path / "main.yaml")],
        {
            "KF_BUS_URL": bus,
            "KF_GATEWAY_ADDR": f"127.0.0.1:{port}",
            "KF_GATEWAY_FUNCTION_ROUTES": str(folder / "routes.yaml"),
            "KF_GATEWAY_ROUTES_RELOAD_S": "0.2",
            "KF_LOG_LEVEL": "INFO",
        },
    )
    fn = Proc(
        ["kubefuncs", "upper:handle"],
        {"KF_BUS_URL": bus, "KF_TOPIC": "upper", "KF_HEALTH_ADDR": "", "PYTHONPATH": str(tmp_path)},
    )
    url = f"http://127.0.0.1:{port}/upper/"
    try:
        gateway.wait_http(f"http://127.0.0.1:{port}/readyz")
        assert status(url, b"hi")[0] == 404
        # When functl deploys the function with its route and the kubelet updates the mount
        deploy(cluster, tmp_path / "upper.py", "/upper/")
        mount(folder, kube.objects[ROUTES]["data"], 1)
        # Then the same gateway process routes it to the function
        assert until(url, b"hi", 200) == b"HI"
        # When the function is deleted Then its route is gone again, still without a restart
        delete_function(flags(tmp_path / "upper.py"), "upper", lambda _: None, cluster)
        mount(folder, {"routes.yaml": "routes: {}\n"}, 2)
        until(url, b"hi", 404)
        # and a broken file keeps the routes in use (logged)
        mount(folder, {"routes.yaml": "routes: [not, a, mapping]\n"}, 3)
        deadline = time.monotonic() + 10
        while "routes not reloaded" not in gateway.output() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "routes not reloaded, the previous ones stay in use" in gateway.output()
        gateway.wait_http(f"http://127.0.0.1:{port}/readyz")  # still up and ready
    finally:
        fn.stop()
        assert gateway.stop() == 0, gateway.output()


# -- functl deploy --api into a functl dev session ---------------------------------------

TAKE = """\
from kubefuncs import function


@function("devorders", name="dev-orders")
def take(request):
    return {"took": request.text()}
"""


def functl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kubefuncs.functl", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_functl_deploy_api_adds_the_route_to_a_running_functl_dev_and_delete_removes_it(
    tmp_path: Path,
) -> None:
    # Given a functl dev session (its gateway and dashboard are real servers)
    handler = tmp_path / "devorders_api.py"
    handler.write_text(TAKE)
    (tmp_path / "functions.yaml").write_text(
        "version: 1\nbus: {url: 'memory://'}\nfunctions:\n"
        "  - {name: ping, handler: example.ping:pong, topic: test, routes: /test/}\n"
    )
    port, console = free_port(), free_port()
    dev = Proc(
        [
            "kubefuncs.functl",
            "dev",
            str(tmp_path / "functions.yaml"),
            "--port",
            str(port),
            "--console-port",
            str(console),
        ],
        {"KF_BUS_URL": ""},
    )
    api = f"http://127.0.0.1:{console}"
    try:
        dev.wait_http(f"http://127.0.0.1:{port}/readyz")
        dev.wait_http(f"{api}/api/v1/functions")
        url = f"http://127.0.0.1:{port}/orders/"
        assert status(url, b"x")[0] == 404
        # When a file is deployed into it with a route
        done = functl("deploy", str(handler), "--route", "/orders/", "--api", api)
        assert done.returncode == 0, done.stdout + done.stderr
        # Then the printed curl works: the function's reply through the dev gateway
        assert f"curl -X POST {url}" in done.stdout
        assert json.loads(until(url, b"x", 200)) == {"took": "x"}
        # and a second function cannot take the same path (the reason, exit 2)
        (tmp_path / "thief_api.py").write_text(PLAIN)
        refused = functl(
            "deploy", str(tmp_path / "thief_api.py"), "--route", "/orders/", "--api", api
        )
        assert refused.returncode == 2 and "route /orders/ already leads to topic" in refused.stderr
        # When it is deleted Then its route answers 404 again
        gone = functl("delete", "dev-orders", "--api", api)
        assert gone.returncode == 0, gone.stdout + gone.stderr
        assert status(url, b"x")[0] == 404
        assert status(f"http://127.0.0.1:{port}/test/x", b"")[0] == 200  # the file's route stays
    finally:
        assert dev.stop() == 0, dev.output()


def test_a_release_apply_may_move_a_route_from_one_function_to_another(
    kube: FakeKube, cluster: Cluster, tmp_path: Path
) -> None:
    from kubefuncs.functl import deploy as deploys
    from kubefuncs.functl import render, spec

    def release(a_route: str, b_route: str) -> list[dict[str, object]]:
        text = (
            "version: 1\nbus: {url: 'valkey://v:6379/0'}\nimage: img:1\nfunctions:\n"
            f"  - {{name: a, handler: m:a, topic: a, routes: {a_route}}}\n"
            f"  - {{name: b, handler: m:b, topic: b, routes: {b_route}}}\n"
        )
        (tmp_path / "f.yaml").write_text(text)
        return render.render(spec.load(str(tmp_path / "f.yaml")), render.Target("fns", "demo"))

    first = release("/shop/", "/b/")
    # (diff shows the routes ConfigMap to come, and nothing once applied)
    assert "+++ rendered/configmap/demo-routes" in deploys.diff_all(cluster, first, release="demo")
    deploys.apply_all(cluster, first, release="demo")
    assert deploys.diff_all(cluster, first, release="demo") == ""
    # When one apply of the whole file gives /shop/ to b (a gets another path)
    deploys.apply_all(cluster, release("/a/", "/shop/"), release="demo")
    # Then that is no conflict, and the gateway's routes say so
    table = loads(routes_file(kube))
    assert {r.prefix: r.topic for r in table.routes} == {"/a/": "a", "/shop/": "b"}


def test_gc_takes_an_expired_functions_route_away_and_keeps_the_others(
    kube: FakeKube, cluster: Cluster, tmp_path: Path
) -> None:
    from datetime import UTC, datetime, timedelta

    from kubefuncs.functl import gc

    (tmp_path / "preview.py").write_text(PLAIN)
    (tmp_path / "orders.py").write_text(PLAIN)
    brief = quick.Given(routes=("/preview/",), bus_url=BUS, extra={"ttl": "1h"})
    deploy_source(flags(tmp_path / "preview.py"), brief, lambda _: None, cluster)
    deploy(cluster, tmp_path / "orders.py", "/orders/")
    assert len(loads(routes_file(kube)).routes) == 2
    # When the janitor runs after the preview expired
    gc.run(cluster, "demo", datetime.now(UTC) + timedelta(hours=2), None)
    # Then its route is gone from the gateway's routes, the other one stays
    assert [r.prefix for r in loads(routes_file(kube)).routes] == ["/orders/"]
