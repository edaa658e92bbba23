"""``@function(...)`` declarations: checked against the functions.yaml schema at once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kubefuncs import declare, function


def test_declarations_are_kept_with_the_decorator_settings_as_yaml_fields() -> None:
    @function(
        "orders",
        timeout_s=10,
        max_attempts=3,
        routes=[{"path": "/orders/", "methods": ["POST"], "async": True, "rate_limit": 5}],
        scaling={"min": 0, "max": 5, "target": 20},
        schedule={"cron": "*/5 * * * *", "timezone": "Europe/Berlin"},
        resources={"requests": {"cpu": "100m"}},
        retry={"backoff_s": 2},
    )
    def take(payload: object) -> object:
        return payload

    assert take.declarations == {
        "timeout_s": 10,
        "retry": {"max_attempts": 3, "backoff_s": 2},
        "routes": [{"path": "/orders/", "methods": ["POST"], "async": True, "rate_limit": 5}],
        "scaling": {"min": 0, "max": 5, "target": 20},
        "schedule": {"cron": "*/5 * * * *", "timezone": "Europe/Berlin"},
        "resources": {"requests": {"cpu": "100m"}},
    }
    # the settings the runtime uses are untouched, and with_settings keeps the declarations
    assert take.settings.timeout_s == 10
    assert take.with_settings(take.settings).declarations == take.declarations


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"rutes": ["/x/"]}, "unknown declaration(s) rutes"),
        ({"scaling": {"min": -1}}, "scaling.min: an integer from 0 to 1000"),
        ({"routes": [{"path": "no-slash"}]}, "routes"),
        ({"schedule": {"cron": "every minute"}}, "schedule"),
        ({"source": "x.py"}, "unknown declaration(s) source"),
    ],
)
def test_a_bad_declaration_fails_at_decoration_with_the_field(
    kwargs: dict[str, object], problem: str
) -> None:
    with pytest.raises(TypeError) as e:
        function("t", **kwargs)(lambda p: p)
    assert "@function '<lambda>'" in str(e.value) and problem in str(e.value)


def test_the_declarable_fields_are_the_schemas_function_fields() -> None:
    # one place defines the fields: the functions.yaml schema the file is checked with
    schema = json.loads(
        (Path(__file__).parents[2] / "functl" / "functions.schema.json").read_text()
    )
    props = set(schema["$defs"]["function"]["properties"])
    assert set(declare.fields()) == props - declare.NOT_DECLARABLE
    assert {"routes", "scaling", "resources", "schedule", "retry", "timeout_s"} <= set(
        declare.fields()
    )


def test_merge_overrides_field_by_field() -> None:
    base = {"scaling": {"min": 0, "max": 5}, "routes": ["/a/"], "timeout_s": 3}
    over = {"scaling": {"max": 9}, "routes": ["/b/"]}
    assert declare.merge(base, over) == {
        "scaling": {"min": 0, "max": 9},
        "routes": ["/b/"],
        "timeout_s": 3,
    }
