"""Ephemeral functions: the expiry on every object, the janitor, and ``functl gc`` deleting
exactly what expired (Kubernetes API stand-in; the bus part on a real Valkey)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from kubefuncs.functl import deploy, expiry, gc, render, spec
from kubefuncs.functl.errors import SpecError
from kubefuncs.functl.kube import Cluster

from tests.functl.functl_fixtures import by_kind, named
from tests.functl.functl_kubeapi import FakeKube, kubeconfig
from tests.functl.functl_schemas import errors, keda_crds_or_skip, server_validator

TARGET = render.Target("fns", "demo", "ghcr.io/kubefuncs/kubefuncs:0.1.0")
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
FILE = """\
bus: {url: valkey://kubefuncs-valkey:6379/0}
functions:
  - {name: keep, topic: keep, handler: m:h}
  - {name: soon, topic: soon, source: m.py, handler: m:h, ttl: 2h, schedule: {cron: '@hourly'}}
  - {name: later, topic: later, handler: m:h, expires_at: '2026-12-31T18:00:00+01:00'}
"""


@pytest.fixture
def objects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    monkeypatch.setattr(expiry, "now", lambda: NOW)
    (tmp_path / "m.py").write_text("def h(p):\n    return p\n")
    (tmp_path / "functions.yaml").write_text(FILE)
    return render.render(spec.load(tmp_path / "functions.yaml"), TARGET)


def annotation(obj: dict) -> str | None:
    return (obj["metadata"].get("annotations") or {}).get(expiry.EXPIRES_ANNOTATION)


def test_every_object_of_an_expiring_function_carries_its_expiry(objects: list[dict]) -> None:
    by_fn: dict[str, set[str | None]] = {}
    for obj in objects:
        by_fn.setdefault(obj["metadata"]["labels"]["app.kubernetes.io/name"], set()).add(
            annotation(obj)
        )
    assert by_fn["keep"] == {None}
    assert by_fn["soon"] == {"2026-12-03T14:00:00Z"}  # ttl 2h from the render
    assert by_fn["later"] == {"2026-12-31T17:00:00Z"}  # in UTC
    kinds = {o["kind"] for o in objects if annotation(o) == "2026-12-03T14:00:00Z"}
    assert kinds == {"NetworkPolicy", "ConfigMap", "Deployment", "ScaledObject", "CronJob"}


def test_the_janitor_may_delete_only_the_expiring_functions_objects(
    objects: list[dict],
) -> None:
    role = named(objects, "Role", "demo-janitor")
    deletable = {n for r in role["rules"] if "delete" in r["verbs"] for n in r["resourceNames"]}
    expiring = {o["metadata"]["name"] for o in objects if annotation(o)}
    # and the release's routes ConfigMap, which it updates (or deletes with the last route)
    assert deletable == expiring | {"demo-routes"} and "demo-keep" not in deletable
    assert all(r["verbs"] in (["get", "list"], ["delete"]) for r in role["rules"][:-1])
    assert role["rules"][-1] == {
        "apiGroups": [""],
        "resources": ["configmaps"],
        "verbs": ["patch", "delete"],
        "resourceNames": ["demo-routes"],
    }
    # the Role covers exactly the kinds gc lists and deletes
    from kubefuncs.functl.kube import KINDS

    granted = {(r["apiGroups"][0], r["resources"][0]) for r in role["rules"]}
    assert granted == {(KINDS[k][0], KINDS[k][2]) for k in expiry.JANITOR_KINDS}
    job = named(objects, "CronJob", "demo-janitor")
    pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "demo-janitor"
    assert pod["containers"][0]["command"][:2] == ["functl", "gc"]
    binding = named(objects, "RoleBinding", "demo-janitor")
    assert binding["subjects"][0]["name"] == "demo-janitor"
    keda_crds_or_skip()
    for obj in objects:
        assert errors(obj) == [], obj["metadata"]["name"]


def test_no_janitor_without_expiring_functions(tmp_path: Path) -> None:
    (tmp_path / "f.yaml").write_text(FILE.split("  - {name: soon")[0])
    objects = render.render(spec.load(tmp_path / "f.yaml"), TARGET)
    assert not by_kind(objects, "Role") and not by_kind(objects, "ServiceAccount")


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        (
            "{name: a, topic: a, handler: m:h, ttl: 2h, expires_at: '2026-01-01T00:00:00Z'}",
            "functions[0].ttl: set either ttl: or expires_at:, not both",
        ),
        (
            "{name: b, topic: b, handler: m:h, ttl: 2 hours}",
            "functions[0].ttl: expected a duration such as 30m, 2h or 7d",
        ),
        (
            "{name: c, topic: c, handler: m:h, ttl: 0h}",
            "functions[0].ttl: ttl '0h' is not a duration above 0",
        ),
        (
            "{name: d, topic: d, handler: m:h, expires_at: '2026-01-01T00:00:00'}",
            "functions[0].expires_at: expected an RFC 3339 time with a zone",
        ),
    ],
)
def test_bad_expiries_are_refused(tmp_path: Path, entry: str, problem: str) -> None:
    (tmp_path / "f.yaml").write_text(f"bus: {{url: valkey://v:6379/0}}\nfunctions:\n  - {entry}\n")
    with pytest.raises(SpecError) as e:
        spec.load(tmp_path / "f.yaml")
    assert problem in str(e.value)


@pytest.fixture
def cluster(tmp_path: Path) -> tuple[FakeKube, Cluster]:
    keda_crds_or_skip()
    kube = FakeKube(validator=server_validator)
    config = tmp_path / "kubeconfig"
    config.write_text(kubeconfig("https://fake.invalid:6443", "fns"))
    return kube, Cluster.connect("fns", kubeconfig=str(config), transport=kube.transport())


def names(kube: FakeKube) -> set[str]:
    return {n for (_, _, n) in kube.objects}


def test_gc_deletes_exactly_what_expired(
    objects: list[dict], cluster: tuple[FakeKube, Cluster]
) -> None:
    kube, c = cluster
    deploy.apply_all(c, objects, release="demo")
    # what the janitor's Role does not let it list
    kube.forbidden |= {
        ("list", p) for p in ("roles", "rolebindings", "serviceaccounts", "triggerauthentications")
    }
    before = names(kube)
    soon = {o["metadata"]["name"] for o in objects if annotation(o) == "2026-12-03T14:00:00Z"}
    # Given an hour before the first expiry: nothing goes
    changes = gc.run(c, "demo", datetime(2026, 12, 3, 13, 0, tzinfo=UTC), None)
    assert changes == [] and names(kube) == before
    # When gc runs after "soon" expired (a dry run first changes nothing)
    later = datetime(2026, 12, 3, 14, 0, 1, tzinfo=UTC)
    gc.run(c, "demo", later, None, dry_run=True)
    assert names(kube) == before
    out: list[str] = []
    changes = gc.run(c, "demo", later, None, echo=out.append)
    # Then every object of "soon" (its source ConfigMap included) is gone, nothing else
    assert {ch.ref.split("/")[1] for ch in changes} == soon
    assert names(kube) == before - soon
    assert any(n.startswith("demo-soon-src-") for n in soon)
    assert "expired functions: soon" in out[-1]
    assert "demo-janitor" in names(kube) and "demo-later" in names(kube)


def test_list_shows_the_time_left() -> None:
    assert gc.time_left("2026-12-03T14:00:00Z", NOW) == "2h00m"
    assert gc.time_left("2026-12-05T13:00:00Z", NOW) == "2d01h"
    assert gc.time_left("2026-12-03T12:00:30Z", NOW) == "0m30s"
    assert gc.time_left("2026-12-03T11:00:00Z", NOW) == "expired"
    assert gc.time_left(None, NOW) == "-"


def test_the_cli_list_has_an_expires_column(tmp_path: Path) -> None:
    from kubefuncs.functl.cli import main

    (tmp_path / "m.py").write_text("")
    (tmp_path / "functions.yaml").write_text(FILE)
    result = CliRunner().invoke(main, ["list", "-f", str(tmp_path / "functions.yaml")])
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split()[-1] for line in result.output.splitlines()[1:]}
    assert rows["keep"] == "-" and rows["soon"] in ("2h00m", "1h59m")


@pytest.mark.real
async def test_gc_removes_the_expired_channels_from_valkey_and_keeps_the_others(
    valkey_url: str,
) -> None:
    from kubefuncs.transport import from_url

    t = from_url(valkey_url)
    await t.connect()
    try:
        for channel in ("gone", "stays"):
            await t.ensure_channel("orders", channel)  # type: ignore[attr-defined]
            retry = t.keys.retry("orders", channel)  # type: ignore[attr-defined]
            await t.call("XADD", retry, "*", "b", "x")  # type: ignore[attr-defined]
            await t.call("XADD", t.keys.dead("orders", channel), "*", "b", "x")  # type: ignore[attr-defined]
        out: list[str] = []
        await gc.forget_channels(valkey_url, None, [("orders", "gone")], out.append)
        keys = t.keys  # type: ignore[attr-defined]
        groups = await t.call("XINFO", "GROUPS", keys.topic("orders"))  # type: ignore[attr-defined]
        names_ = {g[1].decode() if isinstance(g, list) else g[b"name"].decode() for g in groups}
        assert names_ == {"stays"}
        exists = [
            await t.call("EXISTS", k)
            for k in (  # type: ignore[attr-defined]
                keys.retry("orders", "gone"),
                keys.dead("orders", "gone"),
                keys.retry("orders", "stays"),
                keys.dead("orders", "stays"),
            )
        ]
        assert exists == [0, 0, 1, 1]
        assert "channel gone removed" in out[0]
    finally:
        await t.close()
