"""``functl list/render PATH``: functions declared in code, overridden by functions.yaml."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from kubefuncs.functl import render
from kubefuncs.functl.actions import Flags, file_functions, load

from tests.functl.functl_fixtures import named
from tests.functl.functl_schemas import errors, keda_crds_or_skip

ORDERS = """\
from kubefuncs import function

from . import util


@function(
    "orders",
    name="orders",
    routes=[{"path": "/orders/", "methods": ["POST"], "async": True}],
    scaling={"min": 0, "max": 5, "target": 20},
    schedule={"cron": "0 * * * *", "timezone": "UTC"},
    timeout_s=10,
    resources={"limits": {"memory": "128Mi"}},
)
def take(payload):
    return util.double(payload)


@function("refunds")
def refund(payload):
    return payload
"""


def package(tmp_path: Path, name: str) -> Path:
    pkg = tmp_path / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "orders.py").write_text(ORDERS)
    (pkg / "util.py").write_text("def double(x):\n    return x * 2\n")
    return pkg


OVERRIDES = """\
bus: {url: valkey://kubefuncs-valkey:6379/0}
image: ghcr.io/kubefuncs/kubefuncs:0.1.0
functions:
  - name: orders
    topic: orders
    scaling: {max: 9}
    timeout_s: 20
"""


def test_file_entries_override_declarations_field_by_field(tmp_path: Path) -> None:
    pkg = package(tmp_path, "declshop")
    (tmp_path / "functions.yaml").write_text(OVERRIDES)
    f = Flags(code=str(pkg), functions=str(tmp_path / "functions.yaml"))
    s = load(f)
    orders = s.function("orders")
    # declared in code and kept
    assert orders.handler == "declshop.orders:take"
    assert [r.prefix for r in orders.routes] == ["/orders/"] and orders.routes[0].async_
    assert (orders.scaling.min, orders.scaling.target) == (0, 20)
    assert orders.schedules[0].timezone == "UTC"
    assert orders.resources["limits"] == {"memory": "128Mi"}
    # overridden by the file, key by key inside scaling
    assert orders.scaling.max == 9 and orders.timeout_s == 20
    # a function only declared in code is there too, named after the handler
    assert s.function("refund").topic == "refunds"
    rows = {r["name"]: r for r in file_functions(f)}
    assert rows["orders"]["scaling"] == "keda 0-9" and rows["orders"]["routes"] == ["/orders/"]


def test_render_path_ships_the_package_as_the_package(tmp_path: Path) -> None:
    pkg = package(tmp_path, "declshop2")
    (tmp_path / "functions.yaml").write_text(OVERRIDES.replace("declshop", "declshop2"))
    s = load(Flags(code=str(pkg), functions=str(tmp_path / "functions.yaml")))
    objects = render.render(s, render.Target("fns", "demo"))
    d = named(objects, "Deployment", "demo-orders")
    volume = next(v for v in d["spec"]["template"]["spec"]["volumes"] if v["name"] == "source")
    paths = [i["path"] for i in volume["configMap"]["items"]]
    assert paths == ["declshop2/__init__.py", "declshop2/orders.py", "declshop2/util.py"]
    keda_crds_or_skip()
    for obj in objects:
        assert errors(obj) == [], obj["metadata"]["name"]


def test_functl_list_path_on_the_command_line(tmp_path: Path) -> None:
    from kubefuncs.functl.cli import main

    pkg = package(tmp_path, "declshop3")
    result = CliRunner().invoke(
        main,
        ["list", str(pkg), "-f", str(tmp_path / "none.yaml"), "--bus-url", "valkey://v:6379/0"],
    )
    assert result.exit_code == 0, result.output
    assert "orders" in result.output and "refund" in result.output
    result = CliRunner().invoke(main, ["render", str(pkg), "-f", str(tmp_path / "none.yaml")])
    assert result.exit_code == 2 and "pass --bus-url URL" in result.output
