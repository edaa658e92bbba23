"""The API reference of docs/console.md, generated from the OpenAPI document.

``python -m kubefuncs.functl.console.reference`` prints it; tests/console checks that the
doc carries exactly this text between its ``api-reference`` markers.
"""

from __future__ import annotations

from typing import Any

from .openapi import DOCUMENT

START, END = "<!-- api-reference:start -->", "<!-- api-reference:end -->"
METHODS = ("get", "post", "put", "delete")
SHOWN = (
    "FunctionList",
    "FunctionRow",
    "Point",
    "InvokeRequest",
    "InvokeResult",
    "Metrics",
    "Error",
)


def _schema_name(content: dict[str, Any]) -> str:
    schema = content.get("application/json", {}).get("schema", {})
    ref = schema.get("$ref", "")
    return f"`{ref.rsplit('/', 1)[-1]}`" if ref else "object"


def _endpoints(document: dict[str, Any]) -> list[str]:
    lines = [
        "| Method | Path | What | Role | Success | Errors |",
        "|---|---|---|---|---|---|",
    ]
    for path, item in document["paths"].items():
        for method in (m for m in METHODS if m in item):
            op = item[method]
            ok = next(c for c in op["responses"] if c.startswith("2"))
            errors = ", ".join(c for c in op["responses"] if not c.startswith("2"))
            role = "none" if op.get("security") == [] else ("read" if method == "get" else "write")
            body = _schema_name(op["responses"][ok].get("content", {}))
            lines.append(
                f"| {method.upper()} | `{path}` | {op['summary']} | {role} | {ok} {body} | "
                f"{errors or 'none'} |"
            )
    return lines


def _type(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return f"`{schema['$ref'].rsplit('/', 1)[-1]}`"
    if "oneOf" in schema:
        return " or ".join(_type(s) for s in schema["oneOf"])
    if "enum" in schema:
        return " \\| ".join(f"`{v}`" for v in schema["enum"])
    kind = schema.get("type", "any")
    if kind == "array":
        return f"array of {_type(schema.get('items', {}))}"
    return " or ".join(kind) if isinstance(kind, list) else str(kind)


def _schema(name: str, schema: dict[str, Any]) -> list[str]:
    required = set(schema.get("required", []))
    lines = [f"**{name}**", "", "| Field | Type | Required | Notes |", "|---|---|---|---|"]
    for field, sub in schema.get("properties", {}).items():
        note = sub.get("description", "")
        lines.append(
            f"| `{field}` | {_type(sub)} | {'yes' if field in required else ''} | {note} |"
        )
    return [*lines, ""]


def markdown(document: dict[str, Any] = DOCUMENT) -> str:
    schemas = document["components"]["schemas"]
    parts = [START, "", *_endpoints(document), ""]
    for name in SHOWN:
        parts += _schema(name, schemas[name])
    parts.append(
        "The deploy/update body is one entry of `functions:` in the functions.yaml format "
        "(`fy_function`, from functl/functions.schema.json; see docs/functions-yaml.md)."
    )
    return "\n".join([*parts, "", END])


if __name__ == "__main__":
    print(markdown())
