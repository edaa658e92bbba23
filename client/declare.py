"""Code-first declarations: what ``@function(...)`` may say that functions.yaml says.

``@function("orders", routes=["/orders/"], scaling={"min": 0, "max": 5})`` declares the
deployment next to the handler. The fields and their shapes are the ones of a function in
functions.yaml, checked against the same JSON schema (kubefuncs/functl/
functions.schema.json), so the decorator and the file cannot drift apart. ``functl
deploy/render/list PATH`` read them; a functions.yaml entry of the same name overrides
them field by field. The runtime itself ignores them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any

# fields of a functions.yaml function that are not declared in code: the identity (the
# decorator's own topic/name/channel) and how the code is shipped
NOT_DECLARABLE = frozenset({"name", "topic", "channel", "handler", "command", "args", "source"})


@cache
def function_schema() -> dict[str, Any]:
    """The functions.yaml schema of one function, limited to the declarable fields."""
    text = resources.files("kubefuncs.functl").joinpath("functions.schema.json").read_text("utf-8")
    full = json.loads(text)
    props = full["$defs"]["function"]["properties"]
    return {
        "$schema": full["$schema"],
        "$defs": full["$defs"],
        "type": "object",
        "additionalProperties": False,
        "properties": {k: v for k, v in props.items() if k not in NOT_DECLARABLE},
    }


@cache
def _validator() -> Any:
    import jsonschema

    return jsonschema.Draft202012Validator(function_schema())


def fields() -> list[str]:
    """The keyword arguments ``@function`` accepts as declarations."""
    return sorted(function_schema()["properties"])


def check(declared: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``declared`` if it is valid functions.yaml, else TypeError naming every problem."""
    if not declared:
        return {}
    validator = _validator()
    problems = []
    for error in sorted(validator.iter_errors(dict(declared)), key=lambda e: list(e.path)):
        path = ".".join(str(p) for p in error.absolute_path) or "(declarations)"
        if error.validator == "additionalProperties":
            unknown = sorted(set(declared) - set(function_schema()["properties"]))
            problems.append(
                f"unknown declaration(s) {', '.join(unknown)} (known: {', '.join(fields())})"
            )
        else:
            expected = error.schema.get("x-expected") if isinstance(error.schema, dict) else None
            problems.append(f"{path}: {expected or error.message}")
    if problems:
        raise TypeError(f"@function {where}: " + "; ".join(problems))
    copy: dict[str, Any] = json.loads(json.dumps(dict(declared)))  # plain and detached
    return copy


def options(
    concurrency: int | None,
    timeout_s: float | None,
    max_attempts: int | None,
    backoff_s: float | None,
    backoff_max_s: float | None,
) -> dict[str, Any]:
    """The decorator's own settings as functions.yaml fields (only those given)."""
    out: dict[str, Any] = {}
    if concurrency is not None:
        out["concurrency"] = concurrency
    if timeout_s is not None:
        out["timeout_s"] = timeout_s
    retry = {
        k: v
        for k, v in (
            ("max_attempts", max_attempts),
            ("backoff_s", backoff_s),
            ("backoff_max_s", backoff_max_s),
        )
        if v is not None
    }
    if retry:
        out["retry"] = retry
    return out


def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` field by field over ``base``: mappings merge key by key, anything else
    (lists, scalars) replaces."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out
