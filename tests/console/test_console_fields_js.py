"""The deploy form's pure part (functl/console/static/fields.js) under node: the merge of
the form over the advanced part, the split of a mapping into the two, which field an API
issue belongs to, and the mapping made from a resolved summary."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

FIELDS_JS = Path(__file__).resolve().parents[2] / "functl" / "console" / "static" / "fields.js"


def run(expression: str) -> Any:
    """The JSON value of a JavaScript expression over fields.js's exports (as `f`)."""
    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI") == "true":
            pytest.fail("node not found: .ci/setup installs it")
        pytest.skip("node not found")
    script = f"import * as f from {json.dumps(FIELDS_JS.as_uri())};\n"
    script += f"process.stdout.write(JSON.stringify(({expression}) ?? null));\n"
    done = subprocess.run(
        [node, "--input-type=module", "-e", script], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize(
    ("issue", "field"),
    [
        ("functions[0].scaling.min", "scaling.min"),
        ("functions[0].routes[0].methods[1]", "routes[0].methods"),
        ("functions[0].routes[0].path", "routes[0].path"),
        ("functions[0].colour", None),
        ("functions[0].scaling", None),
        ("functions[0].scaling.minimum", None),
        ("functions[0].routes[1].path", None),
        ("", None),
    ],
)
def test_an_issue_goes_to_the_field_its_path_names(issue: str, field: str | None) -> None:
    assert run(f"f.fieldFor({json.dumps(issue)}, f.FIELDS.map((x) => x.path))") == field


def test_the_form_wins_over_the_advanced_part_and_arrays_merge_by_index() -> None:
    # Given an advanced part with a scaling min, a route setting and a second route
    advanced = {"scaling": {"min": 7, "cooldown_s": 60}, "routes": [{"cors": True}, "/b/"]}
    values = {"scaling.min": 1, "routes[0].path": "/a/", "name": "x"}
    # When the form's values are merged over it
    merged = run(f"f.merge({json.dumps(advanced)}, {json.dumps(values)})")
    # Then the form's min wins and the first route gets its path beside the cors setting
    assert merged == {
        "scaling": {"min": 1, "cooldown_s": 60},
        "routes": [{"cors": True, "path": "/a/"}, "/b/"],
        "name": "x",
    }


def test_split_leaves_in_the_advanced_part_only_what_the_form_cannot_show() -> None:
    source = {
        "name": "orders",
        "topic": "orders",
        "image": "img:1",
        "command": ["sh", "-c", "echo two words"],
        "routes": "/orders/",
        "scaling": {"min": 0, "max": 2},
        "retry": {"max_attempts": 3, "backoff_s": 1},
        "env": {"A": "1"},
    }
    parts = run(f"f.split({json.dumps(source)})")
    assert parts["values"] == {
        "name": "orders",
        "topic": "orders",
        "image": "img:1",
        "routes[0].path": "/orders/",
        "scaling.min": "0",
        "scaling.max": "2",
        "retry.max_attempts": "3",
    }
    # a command word with a space cannot be shown as words: it stays whole
    assert parts["rest"] == {
        "command": ["sh", "-c", "echo two words"],
        "retry": {"backoff_s": 1},
        "env": {"A": "1"},
    }


def test_split_then_merge_gives_the_mapping_back() -> None:
    source = {
        "name": "o",
        "topic": "t",
        "handler": "m:f",
        "routes": [{"path": "/a/", "methods": ["GET"], "async": False, "auth": "jwt"}, "/b/"],
        "scaling": {"min": 1, "target": 4, "keda": True},
        "timeout_s": 2.5,
    }
    expression = (
        f"(() => {{ const s = f.split({json.dumps(source)}); const values = {{}};"
        " for (const x of f.FIELDS) if (x.path in s.values)"
        " values[x.path] = f.parseValue(x, s.values[x.path]);"
        " return f.merge(s.rest, values); })()"
    )
    assert run(expression) == source


def test_text_that_is_no_number_goes_to_the_server_as_written() -> None:
    assert run('f.parseValue(f.FIELDS.find((x) => x.path === "scaling.min"), " -1 ")') == -1
    assert run('f.parseValue(f.FIELDS.find((x) => x.path === "scaling.min"), "two")') == "two"
    assert run('f.parseValue(f.FIELDS.find((x) => x.path === "scaling.min"), "  ")') is None


def test_a_mapping_from_the_resolved_summary() -> None:
    spec = {
        "topic": "t",
        "channel": "c",
        "handler": "m:f",
        "command": None,
        "image": None,
        "concurrency": 8,
        "timeout_s": 30,
        "max_attempts": 5,
        "scaling": {"keda": True, "min": 0, "max": 10, "target": 5},
        "routes": [{"prefix": "/a/", "methods": None, "async": False}],
    }
    assert run(f'f.fromSpec("o", {json.dumps(spec)})') == {
        "name": "o",
        "topic": "t",
        "channel": "c",
        "handler": "m:f",
        "concurrency": 8,
        "timeout_s": 30,
        "retry": {"max_attempts": 5},
        "scaling": {"min": 0, "max": 10, "target": 5},
        "routes": [{"path": "/a/", "async": False}],
    }
