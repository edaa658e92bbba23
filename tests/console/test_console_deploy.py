"""Deploy, update and delete through the API against the Kubernetes API stand-in: the same
objects ``functl --apply`` makes, each side seeing what the other did, and validation
errors with functl's field paths."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from kubefuncs.functl import actions, render, spec
from kubefuncs.functl.console.catalog import SPEC_ANNOTATION, ClusterCatalog
from kubefuncs.functl.errors import SpecError
from kubefuncs.functl.kube import Cluster
from kubefuncs.functl.naming import Target
from kubefuncs.transport import Transport

from tests.console.console_fixtures import Api, functions_file, running
from tests.functl.functl_kubeapi import FakeKube, kubeconfig

pytestmark = pytest.mark.real
TARGET = Target("fns", "demo", "ghcr.io/kubefuncs/kubefuncs:0.1.0")
BASE = """
version: 1
bus: {url: "valkey://valkey:6379/0"}
defaults: {scaling: {max: 4}}
functions:
  - name: hello
    handler: example.hello:handle
    topic: hello
    routes: /hello/
"""
NEW = {
    "name": "orders",
    "handler": "shop.orders:handle",
    "topic": "orders",
    "schedule": {"cron": "@hourly"},
}


@pytest.fixture
async def api(
    cluster: Cluster, valkey_url: str, tmp_path: Path
) -> AsyncIterator[tuple[Api, Transport]]:
    catalog = ClusterCatalog(cluster, TARGET, BASE, "functions.yaml")
    async with running(catalog, valkey_url, functions_file(tmp_path, valkey_url)) as pair:
        yield pair


def deployments(kube: FakeKube) -> dict[str, dict[str, Any]]:
    return {k[2]: o for k, o in kube.objects.items() if k[0] == "deployments"}


def without_api_marks(obj: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    out["metadata"]["annotations"].pop(SPEC_ANNOTATION, None)
    for k in ("managedFields", "resourceVersion", "generation", "uid", "creationTimestamp"):
        out["metadata"].pop(k, None)
    out.pop("status", None)
    return out


async def test_a_deploy_makes_the_objects_functl_apply_makes(
    api: tuple[Api, Transport], kube: FakeKube, cluster: Cluster, tmp_path: Path
) -> None:
    client, _ = api
    # When a function is deployed through the API
    status, body = await client.call("POST", "/api/v1/functions", json=NEW)
    # Then its Deployment and CronJob exist, and the answer shows it deployed
    assert status == 201, body
    assert body["name"] == "orders" and body["origin"] == "cluster"
    assert "deployment.apps/demo-orders created" in body["changes"]
    assert [k[2] for k in kube.objects if k[0] == "cronjobs"] == ["demo-orders-cron"]
    # and it is the object functl renders for the same function in a file
    s = spec.loads(BASE.replace("functions:", "functions:\n  - " + json.dumps(NEW)), "f.yaml")
    rendered = next(
        o
        for o in render.render(s, TARGET)
        if o["kind"] == "Deployment" and "orders" in o["metadata"]["name"]
    )
    stored, wanted = (
        without_api_marks(deployments(kube)["demo-orders"]),
        without_api_marks(rendered),
    )
    stored["spec"].pop("replicas")  # the stand-in's default, as an API server's
    assert stored == wanted


async def test_what_functl_apply_deployed_is_listed_and_vice_versa(
    api: tuple[Api, Transport], kube: FakeKube, tmp_path: Path
) -> None:
    client, _ = api
    config = tmp_path / "functl-kubeconfig"  # functl is another client of the same cluster
    config.write_text(kubeconfig("https://fake.invalid:6443", "fns"))
    cluster = Cluster.connect("fns", kubeconfig=str(config), transport=kube.transport())
    # Given the file applied with functl (hello) and a function deployed through the API
    path = tmp_path / "base.yaml"
    path.write_text(BASE)
    flags = actions.Flags(
        functions=str(path),
        namespace="fns",
        release="demo",
        image=TARGET.image,
        skip_bus=True,
        prune=False,
    )
    await asyncio.to_thread(actions.apply_release, flags, lambda line: None, cluster)
    await client.call("POST", "/api/v1/functions", json=NEW)
    # Then the API lists both, and functl's own listing sees both
    _, body = await client.call("GET", "/api/v1/functions")
    assert {f["name"] for f in body["functions"]} == {"hello", "orders"}
    listed = await asyncio.to_thread(actions.cluster_functions, flags, cluster)
    assert {r["name"] for r in listed} == {"hello", "orders"}
    _, hello = await client.call("GET", "/api/v1/functions/{name}", name="hello")
    assert hello["spec"]["routes"][0]["prefix"] == "/hello/" and hello["replicas"]["desired"] == 1


async def test_update_changes_and_prunes_and_delete_removes(
    api: tuple[Api, Transport], kube: FakeKube
) -> None:
    client, _ = api
    await client.call("POST", "/api/v1/functions", json=NEW)
    # When the function is updated without its schedule and with more concurrency
    update = {k: v for k, v in NEW.items() if k != "schedule"} | {"concurrency": 9}
    status, body = await client.call("PUT", "/api/v1/functions/{name}", name="orders", json=update)
    assert status == 200, body
    assert body["spec"]["concurrency"] == 9 and body["spec"]["schedules"] == []
    # Then the CronJob is gone and the Deployment changed
    assert not any(k[0] == "cronjobs" for k in kube.objects)
    assert "deployment.apps/demo-orders configured" in body["changes"]
    # When it is deleted
    status, body = await client.call("DELETE", "/api/v1/functions/{name}", name="orders")
    assert status == 200 and "Deployment/demo-orders deleted" in body["changes"]
    assert "demo-orders" not in deployments(kube)
    status, _ = await client.call("DELETE", "/api/v1/functions/{name}", name="orders")
    assert status == 404


async def test_a_bad_field_is_a_422_with_the_path_functl_prints(api: tuple[Api, Transport]) -> None:
    client, _ = api
    bad = NEW | {"scaling": {"min": -1}}
    # When a function with a bad field is deployed (as YAML)
    import yaml

    status, body = await client.call(
        "POST",
        "/api/v1/functions",
        data=yaml.safe_dump(bad),
        headers={"X-Api-Key": "write-key-0123456789", "Content-Type": "application/yaml"},
    )
    # Then the answer is a 422 naming the field as functl does
    assert status == 422 and body["error"] == "invalid"
    assert [i["path"] for i in body["issues"]] == ["functions[0].scaling.min"]
    with pytest.raises(SpecError) as printed:
        ClusterCatalog.resolve(_catalog_stub(), bad)
    assert body["issues"][0]["problem"] == printed.value.issues[0].problem


def _catalog_stub() -> ClusterCatalog:
    stub = ClusterCatalog.__new__(ClusterCatalog)
    stub.base = {"version": 1, "bus": {"url": "valkey://valkey:6379/0"}}
    return stub


@pytest.mark.parametrize(
    ("method", "route", "body", "status", "error"),
    [
        ("POST", "/api/v1/functions", NEW, 409, "conflict"),
        (
            "PUT",
            "/api/v1/functions/{name}",
            {"name": "other", "topic": "x", "handler": "a:b"},
            422,
            "invalid",
        ),
        ("PUT", "/api/v1/functions/{name}", ["not", "a", "mapping"], 400, "bad_body"),
        ("POST", "/api/v1/functions", {"name": "x", "topic": "x"}, 422, "invalid"),
    ],
)
async def test_deploy_refusals(
    api: tuple[Api, Transport], method: str, route: str, body: Any, status: int, error: str
) -> None:
    client, _ = api
    await client.call("POST", "/api/v1/functions", json=NEW)
    got, answer = await client.call(method, route, name="orders", json=body)
    assert (got, answer["error"]) == (status, error), answer


async def test_updating_a_function_that_is_not_there_is_a_404(api: tuple[Api, Transport]) -> None:
    client, _ = api
    status, body = await client.call("PUT", "/api/v1/functions/{name}", name="orders", json=NEW)
    assert (status, body["error"]) == (404, "not_found")


async def test_a_deploy_with_a_route_reaches_the_gateway_and_a_delete_removes_it(
    api: tuple[Api, Transport], kube: FakeKube
) -> None:
    from kubefuncs.gateway.routes import loads

    client, _ = api
    routes = ("configmaps", "fns", "demo-routes")
    # When a function with a route is deployed through the API
    status, body = await client.call("POST", "/api/v1/functions", json={**NEW, "routes": "/o/"})
    assert status == 201, body
    # Then the release's routes file (the gateway's, gwroutes.py) routes it
    assert "configmap/demo-routes created" in body["changes"]
    table = loads(kube.objects[routes]["data"]["routes.yaml"])
    assert [(r.prefix, r.topic) for r in table.routes] == [("/o/", "orders")]
    # When it is deleted Then no function is left, and neither is the routes ConfigMap
    status, body = await client.call("DELETE", "/api/v1/functions/{name}", name="orders")
    assert status == 200, body
    assert routes not in kube.objects
