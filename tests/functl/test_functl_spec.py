"""functions.yaml: loading, defaults, the routes API, and errors that name file:line:field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from kubefuncs.functl import spec
from kubefuncs.functl.model import Fallback, ScaleDown
from kubefuncs.functl.schema import schema

from tests.functl.functl_fixtures import load

HEAD = "bus: {url: 'valkey://valkey:6379/0'}\nimage: img\n"


def loads(body: str) -> spec.Spec:
    return spec.loads(HEAD + textwrap.dedent(body), "f.yaml")


def issues(body: str) -> list[spec.Issue]:
    with pytest.raises(spec.SpecError) as e:
        loads(body)
    return e.value.issues


def test_defaults_fill_every_setting() -> None:
    # Given a function with nothing but name, handler and topic
    fn = loads("functions: [{name: a, handler: m:f, topic: t}]").functions[0]
    # Then channel is the name and every setting has its built-in default
    assert (fn.channel, fn.concurrency, fn.timeout_s, fn.grace_s) == ("a", 1, 30.0, 35.0)
    assert fn.retry == spec.Retry(5, 1.0, 60.0)
    assert fn.scaling == spec.Scaling(
        True,
        0,
        10,
        10,
        0,
        300,
        15,
        80,
        push=False,  # no routes: the gateway never sees work for it arrive
        fallback=Fallback(failures=3, replicas=1),
        scale_down=ScaleDown(stabilization_s=300, percent=50, period_s=60),
    )
    assert (fn.log_level, fn.log_format, fn.run_as_user) == ("INFO", "json", 10001)


def test_function_settings_win_over_defaults_which_win_over_builtins() -> None:
    s = loads("""
        defaults:
          concurrency: 8
          retry: {max_attempts: 9}
          env: {A: "1", B: "2"}
          secrets: [common]
        functions:
          - {name: a, handler: m:f, topic: t, retry: {backoff_s: 2}, env: {B: three},
             secrets: [own]}
    """)
    fn = s.functions[0]
    assert fn.concurrency == 8
    assert fn.retry == spec.Retry(9, 2.0, 60.0)
    assert list(fn.env) == [{"name": "A", "value": "1"}, {"name": "B", "value": "three"}]
    assert list(fn.env_from) == [{"secretRef": {"name": "common"}}, {"secretRef": {"name": "own"}}]


def test_keda_false_defaults_min_to_one() -> None:
    fn = loads("functions: [{name: a, handler: m:f, topic: t, scaling: {keda: false}}]").functions[
        0
    ]
    assert (fn.scaling.keda, fn.scaling.min) == (False, 1)


def test_routes_are_plain_dicts_for_the_gateway() -> None:
    # Given the full example When the gateway asks for routes
    routes = load("valkey").routes()
    # Then it gets plain dicts with exactly the documented keys, in file order
    assert [r["prefix"] for r in routes] == ["/hello/", "/resize/", "/thumbnails/"]
    assert all(
        set(r)
        == {
            "prefix",
            "topic",
            "methods",
            "timeout_s",
            "async",
            "auth",
            "cors",
            "rate_limit",
            "middleware",
            "idempotency",
            "cold_start_timeout_s",
        }
        for r in routes
    )
    assert routes[0] == {
        "prefix": "/hello/",
        "topic": "hello",
        "methods": None,
        "timeout_s": 20.0,
        "async": False,
        "auth": None,
        "cors": None,
        "rate_limit": None,
        "middleware": None,
        "idempotency": None,
        "cold_start_timeout_s": None,
    }
    assert routes[1] == {
        "prefix": "/resize/",
        "topic": "images",
        "methods": ["POST"],
        "timeout_s": 60.0,
        "async": True,
        "auth": {"type": "bearer"},
        "cors": {"origins": ["https://example.com"]},
        "rate_limit": {"rps": 10, "burst": 20},
        "middleware": None,
        "idempotency": None,
        "cold_start_timeout_s": None,
    }
    assert routes[2]["timeout_s"] == 120.5, (
        "a short-form route waits as long as the function may run"
    )


def test_a_single_path_is_the_short_form_of_routes() -> None:
    fn = loads("functions: [{name: a, handler: m:f, topic: t, routes: /a/}]").functions[0]
    assert [r.prefix for r in fn.routes] == ["/a/"]


ERRORS = [
    # (case, yaml body, line, field path, words in the problem, words in the hint)
    (
        "unknown field",
        "functions:\n  - name: a\n    handler: m:f\n    topic: t\n    scalling: {}\n",
        7,
        "functions[0].scalling",
        "unknown field",
        "did you mean 'scaling'",
    ),
    (
        "wrong type",
        "functions:\n  - name: a\n    handler: m:f\n    topic: t\n    concurrency: eight\n",
        7,
        "functions[0].concurrency",
        "expected an integer",
        "",
    ),
    (
        "below minimum",
        "functions:\n  - name: a\n    handler: m:f\n    topic: t\n    scaling:\n      min: -1\n",
        8,
        "functions[0].scaling.min",
        "expected an integer from 0",
        "",
    ),
    (
        "missing field",
        "functions:\n  - name: a\n    handler: m:f\n",
        4,
        "functions[0]",
        "missing required field 'topic'",
        "",
    ),
    (
        "bad topic",
        "functions:\n  - name: a\n    handler: m:f\n    topic: 'a b'\n",
        6,
        "functions[0].topic",
        "A-Z a-z 0-9",
        "",
    ),
    (
        "bad name",
        "functions:\n  - name: Hello\n    handler: m:f\n    topic: t\n",
        4,
        "functions[0].name",
        "DNS label",
        "",
    ),
    (
        "bad method",
        "functions:\n  - name: a\n    handler: m:f\n    topic: t\n    routes:\n      - path: /a\n"
        "        methods: [get]\n",
        9,
        "functions[0].routes[0].methods[0]",
        "upper case",
        "",
    ),
    (
        "bad cron",
        "functions:\n  - name: a\n    handler: m:f\n    topic: t\n"
        "    schedule: {cron: 'every day'}\n",
        7,
        "functions[0].schedule.cron",
        "5-field cron",
        "",
    ),
    (
        "bad zone",
        "functions:\n  - name: a\n    handler: m:f\n    topic: t\n"
        "    schedule: {cron: '@daily', timezone: Mars/Base}\n",
        7,
        "functions[0].schedule.timezone",
        "unknown time zone",
        "IANA",
    ),
    (
        "duplicate name",
        "functions:\n  - {name: a, handler: m:f, topic: t}\n"
        "  - {name: a, handler: m:f, topic: u}\n",
        5,
        "functions[1].name",
        "already used by functions[0]",
        "",
    ),
    (
        "shared channel",
        "functions:\n  - {name: a, handler: m:f, topic: t, channel: c}\n"
        "  - {name: b, handler: m:f, topic: t, channel: c}\n",
        5,
        "functions[1].channel",
        "already used",
        "rename",
    ),
    (
        "duplicate route",
        "functions:\n  - {name: a, handler: m:f, topic: t, routes: /x/}\n"
        "  - {name: b, handler: m:f, topic: u, routes: [/x/]}\n",
        5,
        "functions[1].routes[0]",
        "'/x/' is already used",
        "",
    ),
    (
        "min above max",
        "functions:\n  - {name: a, handler: m:f, topic: t, scaling: {min: 5, max: 2}}\n",
        4,
        "functions[0].scaling.max",
        "below scaling.min",
        "at least min",
    ),
    (
        "hpa to zero",
        "functions:\n  - {name: a, handler: m:f, topic: t, scaling: {keda: false, min: 0}}\n",
        4,
        "functions[0].scaling.min",
        "needs KEDA",
        "min: 1",
    ),
    (
        "hpa without cpu",
        "functions:\n  - name: a\n    handler: m:f\n    topic: t\n    scaling: {keda: false}\n"
        "    resources: {requests: {memory: 1Gi}}\n",
        8,
        "functions[0].resources",
        "CPU request",
        "requests.cpu",
    ),
    (
        "no entrypoint",
        "functions:\n  - {name: a, topic: t}\n",
        4,
        "functions[0]",
        "no handler",
        "handler:",
    ),
    (
        "both entrypoints",
        "functions:\n  - {name: a, topic: t, handler: m:f, command: [x]}\n",
        4,
        "functions[0].command",
        "not both",
        "",
    ),
    (
        "reserved env",
        "defaults:\n  env: {KF_TOPIC: x}\nfunctions:\n  - {name: a, topic: t, handler: m:f}\n",
        4,
        "defaults.env",
        "set by functl",
        "",
    ),
    (
        "backoff order",
        "functions:\n  - {name: a, handler: m:f, topic: t,"
        " retry: {backoff_s: 9, backoff_max_s: 1}}\n",
        4,
        "functions[0].retry.backoff_max_s",
        "below backoff_s",
        "",
    ),
    ("duplicate key", "functions:\n  - name: a\n    name: b\n", 5, "", "duplicate key 'name'", ""),
    ("not yaml", "functions: [\n", 4, "", "not valid YAML", "indentation"),
    (
        "top-level typo",
        "function: []\n",
        3,
        "function",
        "unknown field",
        "did you mean 'functions'",
    ),
]


@pytest.mark.parametrize(
    ("body", "line", "path", "problem", "hint"), [c[1:] for c in ERRORS], ids=[c[0] for c in ERRORS]
)
def test_errors_name_the_line_the_field_and_the_fix(
    body: str, line: int, path: str, problem: str, hint: str
) -> None:
    # Given a functions.yaml with one mistake When it is loaded
    found = issues(body)
    # Then an issue points at the right line and field, says what was expected and how to fix it
    first = next((i for i in found if i.path == path), found[0])
    assert (first.file, first.line, first.path) == ("f.yaml", line, path), str(first)
    assert problem in first.problem
    assert hint in first.hint
    assert str(first).startswith(f"f.yaml:{line}:")


def test_all_issues_are_reported_at_once_in_line_order() -> None:
    found = issues(
        "functions:\n  - {name: a, handler: m:f, topic: t, concurrency: 0, timeout_s: -1}\n"
        "  - {name: B, handler: m:f, topic: t}\n"
    )
    assert [i.path for i in found] == [
        "functions[0].concurrency",
        "functions[0].timeout_s",
        "functions[1].name",
    ]
    assert [i.line for i in found] == [4, 4, 5]


@pytest.mark.parametrize(("text", "problem"), [("", "empty document"), ("- a\n", "list")])
def test_a_document_that_is_not_a_mapping_is_refused(text: str, problem: str) -> None:
    with pytest.raises(spec.SpecError, match=problem):
        spec.loads(text, "f.yaml")


def test_a_missing_file_says_which(tmp_path: Path) -> None:
    with pytest.raises(spec.SpecError, match="file not found"):
        spec.load(tmp_path / "nope.yaml")


def test_the_shipped_schema_is_a_valid_json_schema() -> None:
    import jsonschema

    jsonschema.Draft202012Validator.check_schema(schema())


def test_yaml_anchors_and_merge_keys_work() -> None:
    s = loads("""
        functions:
          - &base {name: a, handler: m:f, topic: t, concurrency: 3}
          - {<<: *base, name: b, topic: u}
    """)
    assert [(f.name, f.topic, f.concurrency) for f in s.functions] == [("a", "t", 3), ("b", "u", 3)]


def test_route_middleware_is_handed_to_the_gateway_by_name() -> None:
    s = loads(
        "functions: [{name: a, handler: m:f, topic: t,"
        " routes: [{path: /a/, middleware: [myco.audit:log, myco.quota:check]}]}]"
    )
    assert s.routes()[0]["middleware"] == ["myco.audit:log", "myco.quota:check"]


def test_a_middleware_that_is_not_a_name_is_a_spec_error() -> None:
    with pytest.raises(spec.SpecError, match=r"routes\[0\]\.middleware\[0\]"):
        loads(
            "functions: [{name: a, handler: m:f, topic: t, routes: [{path: /a/, middleware: [x]}]}]"
        )
