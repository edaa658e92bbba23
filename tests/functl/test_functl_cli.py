"""The command line: parsing and exit codes (behaviour is tested on the library)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from kubefuncs.functl.cli import COMMANDS, main

from tests.functl.functl_fixtures import DATA
from tests.functl.functl_kubeapi import FakeKube, kubeconfig, serve
from tests.functl.functl_schemas import keda_crds_or_skip, server_validator

NSQ = str(DATA / "nsq.yaml")
VALKEY = str(DATA / "valkey.yaml")
RELEASE = ["--namespace", "fns", "--release", "demo"]
_names = itertools.count()


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> CliRunner:
    for var in (
        "KUBECONFIG",
        "KF_BUS_URL",
        "KF_BUS_PASSWORD",
        "FUNCTL_NAMESPACE",
        "FUNCTL_RELEASE",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.kube/config of the developer
    return CliRunner()


@pytest.fixture
def kube() -> FakeKube:
    keda_crds_or_skip()
    return FakeKube(validator=server_validator)


@pytest.fixture
def config(kube: FakeKube, tmp_path: Path) -> Iterator[str]:
    with serve(kube) as url:
        path = tmp_path / "kubeconfig"
        path.write_text(kubeconfig(url, "fns"))
        yield str(path)


def run(runner: CliRunner, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_every_subcommand_is_registered_in_one_place(runner: CliRunner) -> None:
    code, out, _ = run(runner, "--help")
    assert code == 0
    for command in COMMANDS:
        assert command.name in out


def test_without_apply_the_kubefunctl_interface_prints_the_manifests(runner: CliRunner) -> None:
    code, out, _ = run(runner, "--image", "img:1", *RELEASE, "--functions", NSQ)
    assert code == 0
    docs = list(yaml.safe_load_all(out))
    assert [d["kind"] for d in docs] == ["NetworkPolicy", "Deployment", "ScaledObject"] * 2
    assert out.startswith("---\n")


def test_render_prints_json_for_machines(runner: CliRunner) -> None:
    code, out, _ = run(runner, "render", "-f", NSQ, "-o", "json")
    assert code == 0 and json.loads(out)["kind"] == "List"


def test_options_before_the_subcommand_apply_to_it(runner: CliRunner) -> None:
    code, out, _ = run(runner, "-n", "fns", "-r", "demo", "render", "-f", NSQ)
    assert code == 0 and "name: demo-echo" in out and "namespace: fns" in out
    code, out, _ = run(runner, "-n", "fns", "render", "-f", NSQ, "-n", "other")
    assert "namespace: other" in out and "namespace: fns" not in out


def test_an_invalid_file_exits_2_with_file_line_and_no_traceback(
    runner: CliRunner, tmp_path: Path
) -> None:
    bad = tmp_path / "functions.yaml"
    bad.write_text(
        "bus: {url: 'valkey://v:6379'}\nfunctions:\n  - name: a\n    topic: t\n    handler: m:f\n"
        "    concurency: 2\n"
    )
    code, out, err = run(runner, "validate", "-f", str(bad))
    assert code == 2 and out == ""
    assert (
        f"{bad}:6: functions[0].concurency: unknown field" in err
        and "did you mean 'concurrency'" in err
    )
    assert "Traceback" not in err


def test_validate_reports_a_summary(runner: CliRunner) -> None:
    code, out, _ = run(runner, "validate", "-f", VALKEY)
    assert code == 0 and "3 function(s), 3 schedule(s), 3 route(s), 14 object(s)" in out


def test_list_prints_a_table_or_yaml(runner: CliRunner) -> None:
    code, out, _ = run(runner, "list", "-f", NSQ)
    assert code == 0 and out.splitlines()[0].split() == [
        "NAME",
        "TOPIC",
        "CHANNEL",
        "SCALING",
        "SCHEDULES",
        "ROUTES",
        "EXPIRES",
    ]
    code, out, _ = run(runner, "list", "-f", NSQ, "-o", "yaml")
    assert code == 0 and yaml.safe_load(out)[1]["channel"] == "archive"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["render", "--bogus"], "No such option"),
        (["render", "-o", "xml"], "Invalid value"),
        (["render", "-f", NSQ, "-n", "Bad_NS"], "--namespace 'Bad_NS' is not a DNS label"),
        (["render", "-f", "/nonexistent.yaml"], "file not found"),
        (["publish", "t", "--bus", "memory://", "--data", "{nope"], "--data is not valid JSON"),
        (["publish", "t", "--bus", "memory://", "--data", "1", "--text", "x"], "only one of"),
        (["publish", "t", "--bus", "memory://", "-H", "novalue"], "expected NAME=VALUE"),
        (["dlq", "replay", "--topic", "t", "--bus", "memory://"], "--id ID (repeatable) or --all"),
        (["dlq", "show", "nosuch", "-f", NSQ, "--bus", "memory://"], "no function 'nosuch'"),
        (["status", "-f", NSQ, "--bus", "amqp://x"], "unknown scheme"),
    ],
)
def test_usage_errors_exit_2(runner: CliRunner, args: list[str], words: str) -> None:
    code, _, err = run(runner, *args)
    assert code == 2
    assert words in err


def test_no_cluster_exits_3(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    code, _, err = run(runner, "--apply", "--image", "i", *RELEASE, "-f", NSQ, "--skip-bus")
    assert code == 3 and "no usable Kubernetes configuration" in err


def test_apply_reapply_diff_prune_delete_end_to_end(
    runner: CliRunner, kube: FakeKube, config: str, tmp_path: Path
) -> None:
    bus = f"memory://functl-cli-{next(_names)}"
    flags = ["--image", "img:1", *RELEASE, "--kubeconfig", config, "--bus", bus]
    # Given a cluster and a bus When the release is applied with the kubefunctl interface
    code, out, err = run(runner, "--apply", *flags, "--functions", NSQ)
    assert (code, err) == (0, "")
    assert "bus topic echo channel echo ready" in out and "deployment.apps/demo-echo created" in out
    assert "configmap/demo-routes created" in out  # the gateway's routes (gwroutes.py)
    assert out.rstrip().endswith("release demo in namespace fns: 7 created")
    # Then re-applying changes nothing and diff agrees (exit 0)
    code, out, _ = run(runner, "apply", *flags, "-f", NSQ)
    assert code == 0 and out.rstrip().endswith("6 unchanged")
    assert run(runner, "diff", *flags[:-2], "-f", NSQ)[0] == 0
    # When a function leaves the file Then diff exits 1 and apply prunes it
    smaller = tmp_path / "functions.yaml"
    data = yaml.safe_load(Path(NSQ).read_text())
    data["functions"] = data["functions"][:1]
    smaller.write_text(yaml.safe_dump(data))
    code, out, _ = run(runner, "diff", *flags[:-2], "-f", str(smaller))
    assert code == 1 and "--- live/deployment.apps/demo-audit" in out
    code, out, _ = run(runner, "apply", *flags, "-f", str(smaller))
    assert code == 0 and "deployment.apps/demo-audit deleted" in out
    # And the cluster listing shows what runs
    code, out, _ = run(runner, "list", "--cluster", *flags[:-2], "-o", "json")
    assert code == 0 and [r["name"] for r in json.loads(out)] == ["echo"]
    # When the release is deleted Then nothing of it is left
    code, out, _ = run(runner, "delete", "--yes", *flags[:-2])
    assert code == 0 and kube.objects == {}


def test_forbidden_exits_4_and_rejected_exits_5(
    runner: CliRunner, kube: FakeKube, config: str
) -> None:
    flags = ["--image", "img:1", *RELEASE, "--kubeconfig", config, "--skip-bus", "-f", NSQ]
    kube.forbidden.add(("patch", "deployments"))
    code, _, err = run(runner, "apply", *flags)
    assert code == 4 and "forbidden" in err and "Traceback" not in err
    kube.forbidden.clear()
    kube.validator = lambda obj: ["spec.triggers: rejected for the test"]
    code, _, err = run(runner, "apply", *flags)
    assert code == 5 and "rejected for the test" in err


def test_dry_run_changes_nothing(runner: CliRunner, kube: FakeKube, config: str) -> None:
    code, out, _ = run(
        runner, "apply", "--dry-run", "--image", "i", *RELEASE, "--kubeconfig", config, "-f", NSQ
    )
    assert code == 0 and "(dry run)" in out and kube.objects == {}


def test_publish_status_and_dlq_on_the_memory_bus(runner: CliRunner) -> None:
    bus = f"memory://functl-cli-{next(_names)}"
    code, out, _ = run(runner, "publish", "echo", "--bus", bus, "--data", '{"a": 1}')
    assert code == 0 and len(out.strip()) == 32
    code, out, err = run(
        runner, "status", "-f", NSQ, "--bus", bus, "-o", "json", "--kubeconfig", "/nonexistent"
    )
    assert code == 0 and "replicas unknown" in err
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["echo"]["replicas"] is None
    assert set(rows["echo"]) >= {"depth", "in_flight", "delayed", "dead", "ready"}
    code, out, _ = run(runner, "dlq", "list", "-f", NSQ, "--bus", bus)
    assert code == 0 and out.splitlines()[0].split() == ["NAME", "TOPIC", "CHANNEL", "DEAD"]
    assert run(runner, "dlq", "show", "echo", "-f", NSQ, "--bus", bus, "-o", "json")[1] == "[]\n"
    assert run(runner, "dlq", "replay", "echo", "--all", "-f", NSQ, "--bus", bus)[0] == 0
    code, out, _ = run(runner, "dlq", "purge", "--topic", "echo", "--all", "--yes", "--bus", bus)
    assert code == 0 and "purged 0 dead letter(s) of echo/echo" in out
