"""Check a loaded functions.yaml against the JSON schema shipped in this package.

Each jsonschema error becomes an :class:`~kubefuncs.functl.errors.Issue` that names the
file, the line and the field path, says what was expected (the schema's ``x-expected``
text where it has one) and, for unknown fields, suggests the nearest known name.
"""

from __future__ import annotations

import difflib
import json
from functools import cache
from importlib import resources
from typing import Any

import jsonschema

from .errors import Issue
from .yamlmarks import Marked, format_path

SCHEMA_FILE = "functions.schema.json"


@cache
def schema() -> dict[str, Any]:
    """The functions.yaml JSON schema (draft 2020-12)."""
    text = resources.files(__package__).joinpath(SCHEMA_FILE).read_text(encoding="utf-8")
    return json.loads(text)  # type: ignore[no-any-return]


@cache
def _validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(schema())


def check(marked: Marked, file: str) -> list[Issue]:
    """Every schema violation of ``marked.data``, one issue each (deepest first per field)."""
    issues: dict[tuple[int, str], Issue] = {}
    for error in _validator().iter_errors(marked.data):
        issue = to_issue(error, marked, file)
        issues.setdefault((issue.line, issue.path), issue)
    return list(issues.values())


def to_issue(error: jsonschema.ValidationError, marked: Marked, file: str) -> Issue:
    """Map one jsonschema error to file:line, field path, problem and hint."""
    error = _narrow(error)
    path = tuple(error.absolute_path)
    if error.validator == "additionalProperties":
        return _unknown_field(error, marked, file, path)
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        return Issue(
            file,
            marked.line(path),
            format_path(path),
            f"missing required field {missing!r}",
            _expected(error) or f"add {missing}: to this mapping",
        )
    got = _describe(error.instance)
    expected = _expected(error) or _fallback_expected(error)
    return Issue(
        file,
        marked.line(path),
        format_path(path) or "(document)",
        f"expected {expected}, got {got}",
    )


def _narrow(error: jsonschema.ValidationError) -> jsonschema.ValidationError:
    """Descend into the one oneOf/anyOf branch whose type fits the value, if there is one."""
    while error.validator in ("oneOf", "anyOf") and error.context:
        branches: dict[Any, list[jsonschema.ValidationError]] = {}
        for sub in error.context:
            branches.setdefault(sub.schema_path[0], []).append(sub)
        viable = [
            errs
            for errs in branches.values()
            if not any(e.validator == "type" and not e.relative_path for e in errs)
        ]
        if len(viable) != 1:
            break
        error = max(viable[0], key=lambda e: len(e.absolute_path))
    return error


def _unknown_field(
    error: jsonschema.ValidationError, marked: Marked, file: str, path: tuple[Any, ...]
) -> Issue:
    schema_ = error.schema if isinstance(error.schema, dict) else {}
    known = sorted(schema_.get("properties", {}))
    extra = sorted(set(error.instance) - set(known)) if isinstance(error.instance, dict) else []
    name = extra[0] if extra else "?"
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean {close[0]!r}?" if close else f"known fields here: {', '.join(known)}"
    field_path = (*path, name)
    return Issue(
        file, marked.line(field_path), format_path(field_path), f"unknown field {name!r}", hint
    )


def _expected(error: jsonschema.ValidationError) -> str:
    text = error.schema.get("x-expected") if isinstance(error.schema, dict) else None
    if text:
        return str(text)
    # a oneOf/anyOf branch failed: the parent schema usually carries the description
    parent = error.parent
    while parent is not None:
        if isinstance(parent.schema, dict) and parent.schema.get("x-expected"):
            return str(parent.schema["x-expected"])
        parent = parent.parent
    return ""


def _fallback_expected(error: jsonschema.ValidationError) -> str:
    v, value = error.validator, error.validator_value
    simple = {
        "type": f"a value of type {value}",
        "enum": f"one of {', '.join(map(str, value))}" if isinstance(value, list) else str(value),
        "const": repr(value),
        "minimum": f"a value >= {value}",
        "maximum": f"a value <= {value}",
        "exclusiveMinimum": f"a value > {value}",
        "minItems": f"at least {value} item(s)",
        "minLength": f"at least {value} character(s)",
        "maxLength": f"at most {value} characters",
        "pattern": f"text matching {value}",
        "uniqueItems": "no duplicates",
    }
    return simple.get(str(v), error.message)


def _describe(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    kind = {
        bool: "boolean",
        int: "integer",
        float: "number",
        str: "string",
        list: "a list",
        dict: "a mapping",
    }
    name = kind.get(type(value), type(value).__name__)
    if isinstance(value, dict | list):
        return name
    return f"{name} {json.dumps(value)[:60]}"
