"""Code-first declarations of Node source functions (functl/nodedecl.py, example/node/
declare.js): read by ``functl list/render/deploy PATH`` with node, checked against
functions.schema.json, overridden field by field by functions.yaml."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from kubefuncs.functl import quick, render
from kubefuncs.functl.actions import Flags, file_functions, load
from kubefuncs.functl.cli import main
from kubefuncs.functl.cmd_deploy import deploy_source
from kubefuncs.functl.errors import UsageError
from kubefuncs.functl.kube import Cluster
from kubefuncs.functl.output import to_yaml

from tests.functl.functl_fixtures import named
from tests.functl.functl_kubeapi import FakeKube
from tests.functl.functl_schemas import errors, keda_crds_or_skip

GOLDEN = Path(__file__).parent / "golden"
ORDERS = """\
'use strict';
const started = Date.now(); // import-time code runs when functl reads the declarations

async function take(payload) {
  return { took: payload };
}
take.kubefuncs = {
  name: 'orders',
  topic: 'orders',
  routes: [{ path: '/orders/', methods: ['POST'], async: true }],
  scaling: { min: 0, max: 5, target: 20 },
  schedule: { cron: '0 * * * *', timezone: 'UTC' },
  timeout_s: 10,
  retry: { max_attempts: 3 },
  resources: { limits: { memory: '128Mi' } },
};

exports.take = take;
exports.helper = () => started; // an export without a declaration is not a function
"""
REFUNDS = """\
export async function refund(payload) { return payload; }
refund.kubefuncs = { topic: 'refunds', batch: 10 };
"""
OVERRIDES = """\
bus: {url: valkey://kubefuncs-valkey:6379/0}
image: ghcr.io/kubefuncs/kubefuncs:0.1.0
functions:
  - name: orders
    topic: orders
    scaling: {max: 9}
    timeout_s: 20
"""

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None and os.environ.get("CI") != "true", reason="node not installed"
)


def shop(tmp_path: Path) -> Path:
    folder = tmp_path / "shop"
    folder.mkdir()
    (folder / "package.json").write_text('{"name": "shop", "version": "1.0.0"}\n')
    (folder / "orders.js").write_text(ORDERS)
    (folder / "refunds.mjs").write_text(REFUNDS)
    (tmp_path / "functions.yaml").write_text(OVERRIDES)
    return folder


def test_file_entries_override_node_declarations_field_by_field(tmp_path: Path) -> None:
    f = Flags(code=str(shop(tmp_path)), functions=str(tmp_path / "functions.yaml"))
    s = load(f)
    orders = s.function("orders")
    # declared in code and kept
    assert orders.handler == "orders:take" and orders.source is not None
    assert orders.source.runtime == "node"
    assert [r.prefix for r in orders.routes] == ["/orders/"] and orders.routes[0].async_
    assert (orders.scaling.min, orders.scaling.target) == (0, 20)
    assert orders.schedules[0].timezone == "UTC" and orders.retry.max_attempts == 3
    assert orders.resources["limits"] == {"memory": "128Mi"}
    # overridden by the file, key by key inside scaling
    assert orders.scaling.max == 9 and orders.timeout_s == 20
    # an ES module's declared export is there too, named after the export
    refund = s.function("refund")
    assert (refund.topic, refund.handler, refund.batch) == ("refunds", "refunds.mjs:refund", 10)
    rows = {r["name"]: r for r in file_functions(f)}
    assert rows["orders"]["scaling"] == "keda 0-9" and rows["orders"]["routes"] == ["/orders/"]


def test_rendering_node_declarations_matches_the_golden_file_and_the_schemas(
    tmp_path: Path,
) -> None:
    # (regenerate with FUNCTL_UPDATE_GOLDEN=1 and review the diff)
    s = load(Flags(code=str(shop(tmp_path)), functions=str(tmp_path / "functions.yaml")))
    objects = render.render(s, render.Target("fns", "demo"))
    text = to_yaml(objects)
    golden = GOLDEN / "node-declared.yaml"
    if os.environ.get("FUNCTL_UPDATE_GOLDEN") == "1":
        golden.write_text(text)
    assert text == golden.read_text()
    d = named(objects, "Deployment", "demo-orders")
    env = {e["name"]: e.get("value") for e in d["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["KF_HANDLER"] == "orders:take" and env["KF_TIMEOUT_S"] == "20"
    keda_crds_or_skip()
    for obj in objects:
        assert errors(obj) == [], obj["metadata"]["name"]


@pytest.mark.parametrize(
    ("declaration", "field", "fix"),
    [
        ("{ scaling: { min: 'zero' } }", "scaling.min", "integer"),
        ("{ routes: [{ path: 'orders' }] }", "routes", "/"),
        ("{ retries: 3 }", "unknown declaration(s) retries", "known: "),
        ("{ topic: 7 }", "kubefuncs.topic", "expected a string"),
        ("'orders'", "kubefuncs must be an object", "functions.yaml fields"),
    ],
)
def test_a_bad_node_declaration_names_the_file_the_field_and_the_fix(
    tmp_path: Path, declaration: str, field: str, fix: str
) -> None:
    bad = tmp_path / "bad.js"
    bad.write_text(f"exports.handle = async (p) => p;\nexports.handle.kubefuncs = {declaration};\n")
    with pytest.raises(UsageError) as e:
        quick.spec_for_code(str(bad), None, "valkey://v:6379/0", None)
    message = str(e.value)
    assert f"{bad}: export handle: kubefuncs" in message
    assert field in message and fix in message, message


def test_a_module_that_fails_at_import_is_named(tmp_path: Path) -> None:
    broken = tmp_path / "broken.js"
    broken.write_text("throw new Error('no config here');\nexports.h.kubefuncs = {};\n")
    with pytest.raises(UsageError) as e:
        quick.spec_for_code(str(broken), None, "valkey://v:6379/0", None)
    assert f"cannot load {broken}" in str(e.value) and "no config here" in str(e.value)


def test_functl_deploy_of_a_node_file_takes_its_declaration_and_its_route(
    kube: FakeKube, cluster: Cluster, tmp_path: Path
) -> None:
    handler = tmp_path / "orders.js"
    handler.write_text(ORDERS)
    f = Flags(
        code=str(handler),
        functions=str(tmp_path / "none.yaml"),
        namespace="fns",
        release="demo",
        image="ghcr.io/kubefuncs/kubefuncs:0.1.0",
        skip_bus=True,
    )
    out: list[str] = []
    deploy_source(f, quick.Given(bus_url="valkey://v:6379/0"), out.append, cluster)
    d = kube.objects[("deployments", "fns", "demo-orders")]
    container = d["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "ghcr.io/kubefuncs/kubefuncs-node:0.1.0"
    assert {"name": "KF_HANDLER", "value": "orders:take"} in container["env"]
    assert "/orders/" in kube.objects[("configmaps", "fns", "demo-routes")]["data"]["routes.yaml"]
    assert any("route POST /orders/" in line for line in out)


def test_functl_list_of_a_node_source_on_the_command_line(tmp_path: Path) -> None:
    folder = shop(tmp_path)
    result = CliRunner().invoke(main, ["list", str(folder), "-f", str(tmp_path / "functions.yaml")])
    assert result.exit_code == 0, result.output
    assert "orders" in result.output and "refund" in result.output


def test_modules_that_cannot_declare_are_not_loaded(tmp_path: Path) -> None:
    # Given a folder whose index.js needs a package not installed here, and no declaration
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "index.js").write_text(
        "const x = require('not-installed-here');\nexports.handle = async (p) => x(p);\n"
    )
    # Then deploy's default handler is found without loading it
    assert quick.find_node_handler(folder, None) == ("index:handle", {})
    # while a module that declares and cannot load is named, with the fix
    (folder / "decl.js").write_text(
        "require('not-installed-here');\nexports.h = async (p) => p;\nexports.h.kubefuncs = {};\n"
    )
    with pytest.raises(UsageError, match="run npm install in the source folder"):
        quick.find_node_handler(folder, None)
