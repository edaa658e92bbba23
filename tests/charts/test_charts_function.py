"""The function chart is fed by a functions.yaml and renders what functl renders."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from charts_helm import NAMESPACE, RELEASE, ROOT, Obj, render, render_error
from sync_function_schema import CHART_SCHEMA
from sync_function_schema import render as derived_schema

IMAGE = "registry.example.com/kubefuncs:test"
FUNCTIONS_FILES = [
    ROOT / "example" / "functions.yaml",
    ROOT / "tests" / "functl" / "data" / "valkey.yaml",
    ROOT / "tests" / "functl" / "data" / "nsq.yaml",
    ROOT / "tests" / "functl" / "data" / "cluster.yaml",
    Path(__file__).resolve().parent / "values" / "function-tls-hpa.yaml",
]


def functl_objects(path: Path) -> list[Obj]:
    from kubefuncs.functl import render as functl_render
    from kubefuncs.functl import spec

    return functl_render.render(spec.load(path), functl_render.Target(NAMESPACE, RELEASE, IMAGE))


def comparable(obj: Obj) -> Obj:
    """``obj`` without what legitimately differs: the manager label (Helm vs functl, so
    `functl --prune` never deletes Helm's objects), helm.sh/chart, and the order of the
    user's environment variables (a mapping has no order once Helm has read it)."""
    obj = json.loads(json.dumps(obj))
    _walk(obj)
    return obj


def _walk(node: Any) -> None:
    if isinstance(node, dict):
        labels = node.get("labels")
        if isinstance(labels, dict):
            labels.pop("helm.sh/chart", None)
            if labels.get("app.kubernetes.io/managed-by") in ("Helm", "functl"):
                labels["app.kubernetes.io/managed-by"] = "<manager>"
        if isinstance(node.get("env"), list):
            node["env"].sort(key=lambda v: v["name"])
        for value in node.values():
            _walk(value)
    elif isinstance(node, list):
        for value in node:
            _walk(value)


def by_identity(objects: Any) -> dict[str, Obj]:
    return {f"{o['kind']}/{o['metadata']['name']}": comparable(o) for o in objects}


def is_hook(obj: Obj) -> bool:
    return "helm.sh/hook" in (obj["metadata"].get("annotations") or {})


@pytest.mark.parametrize("path", FUNCTIONS_FILES, ids=lambda p: p.stem)
def test_the_chart_renders_what_functl_renders(path: Path) -> None:
    # Given a functions.yaml
    # When functl renders it and Helm renders the function chart with it as values
    expected = by_identity(functl_objects(path))
    rendered = render("function", (str(path),), (f'image="{IMAGE}"',))
    actual = by_identity(o for o in rendered if not is_hook(o))
    # Then both produce the same objects, field for field
    assert sorted(actual) == sorted(expected)
    for key, obj in expected.items():
        assert actual[key] == obj, key


def test_the_chart_schema_is_functls_schema() -> None:
    # Given functl's functions.yaml schema
    # Then the chart's values.schema.json is derived from it (sync_function_schema.py)
    assert CHART_SCHEMA.read_text() == derived_schema(), (
        "charts/function/values.schema.json is out of date: "
        "run python tests/charts/sync_function_schema.py"
    )


def test_a_hook_prepares_every_channel_before_install_like_functl_apply(tmp_path: Path) -> None:
    # Given a functions.yaml with several topics and channels
    path = ROOT / "tests" / "functl" / "data" / "valkey.yaml"
    job = next(o for o in render("function", (str(path),)) if is_hook(o) and o["kind"] == "Job")
    # Then a pre-install/pre-upgrade Job runs before the functions exist ...
    assert job["kind"] == "Job"
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    container = job["spec"]["template"]["spec"]["containers"][0]
    # ... for exactly the channels functl apply prepares
    from kubefuncs.functl import spec

    expected = {f"{fn.topic}/{fn.channel}" for fn in spec.load(path).functions}
    assert set(container["args"]) == expected
    # and its script runs against the client library (here on the in-process bus)
    result = subprocess.run(
        [sys.executable, *container["command"][1:], *container["args"]],
        env={**os.environ, "KF_BUS_URL": "memory://"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(" ready") == len(expected)
    # and it can be turned off
    assert not [o for o in render("function", (str(path),), ("prepareBus=false",)) if is_hook(o)]


def test_the_defaults_render_nothing_but_notes() -> None:
    assert render("function") == ()


def write(tmp_path: Path, values: dict[str, Any]) -> str:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return str(path)


HELLO = {"name": "hello", "topic": "hello", "handler": "example.hello:handle"}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"functions": [{**HELLO, "name": "Hello_World"}]},
            "functions.0.name: Does not match pattern",
        ),
        (
            {"functions": [{**HELLO, "concurrency": "eight"}]},
            "functions.0.concurrency: Invalid type. Expected: integer, given: string",
        ),
        (
            {"functions": [{**HELLO, "scalling": {"max": 3}}]},
            "functions.0: Additional property scalling is not allowed",
        ),
        ({"bus": {"url": "amqp://rabbit"}}, "bus.url: Does not match pattern"),
    ],
    ids=["bad-name", "wrong-type", "unknown-field", "bad-bus-url"],
)
def test_values_that_break_the_schema_are_refused_readably(
    tmp_path: Path, values: dict[str, Any], message: str
) -> None:
    # Given values that functl's schema refuses
    # When Helm renders the chart with them
    error = render_error("function", (write(tmp_path, values),))
    # Then Helm names the chart, the field and what is wrong
    assert "values don't meet the specifications of the schema(s)" in error
    assert "function:" in error
    assert message in error


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"functions": [{**HELLO, "scaling": {"min": 5, "max": 2}}]},
            "functions[0].scaling.max: scaling.max (2) is below scaling.min (5)",
        ),
        (
            {"functions": [{**HELLO, "command": ["/app/run"]}]},
            "functions[0].command: set either handler: or command:, not both",
        ),
        (
            {"functions": [{"name": "bare", "topic": "t"}]},
            'functions[0]: function "bare" has no handler:, command: or image:',
        ),
        (
            {"functions": [HELLO, {**HELLO, "topic": "other"}]},
            'functions[1]: function name "hello" is already used by functions[0]',
        ),
        (
            {"functions": [{**HELLO, "env": {"KF_TOPIC": "x"}}]},
            "functions[0].env: environment variable KF_TOPIC is set by functl",
        ),
        (
            {
                "functions": [
                    {
                        **HELLO,
                        "scaling": {"keda": False, "min": 1},
                        "resources": {"requests": {"memory": "64Mi"}},
                    }
                ]
            },
            "functions[0].resources: scaling.keda: false scales on CPU use",
        ),
        (
            {"functions": [{**HELLO, "retry": {"backoff_s": 10, "backoff_max_s": 1}}]},
            "functions[0].retry.backoff_max_s: backoff_max_s (1) is below backoff_s (10)",
        ),
        (
            {"bus": {"url": "valkey://:secret@valkey:6379/0"}, "functions": [HELLO]},
            "bus.url: the URL contains a password",
        ),
        (
            {"bus": {"url": "memory://"}, "functions": [HELLO]},
            "bus.url: memory:// lives inside one process",
        ),
    ],
    ids=[
        "min-above-max",
        "handler-and-command",
        "no-entrypoint",
        "duplicate-name",
        "reserved-env",
        "hpa-without-cpu",
        "backoff",
        "password-in-url",
        "memory-bus",
    ],
)
def test_what_the_schema_cannot_express_is_refused_like_functl_does(
    tmp_path: Path, values: dict[str, Any], message: str
) -> None:
    error = render_error("function", (write(tmp_path, values),))
    assert message in error


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"source": "handler.py"}, "hello has source: - a chart cannot read your files"),
        ({"ttl": "2h"}, "hello has ttl:/expires_at: - the chart renders no janitor"),
        (
            {"expires_at": "2026-12-31T18:00:00Z"},
            "hello has ttl:/expires_at: - the chart renders no janitor",
        ),
    ],
    ids=["source", "ttl", "expires-at"],
)
def test_what_only_functl_can_deploy_is_refused_with_the_way(
    tmp_path: Path, extra: dict[str, Any], message: str
) -> None:
    values = {
        "image": "ghcr.io/kubefuncs/kubefuncs:0.1.0",
        "bus": {"url": "valkey://kubefuncs-valkey:6379/0"},
        "functions": [{**HELLO, **extra}],
    }
    assert message in render_error("function", (write(tmp_path, values),))
