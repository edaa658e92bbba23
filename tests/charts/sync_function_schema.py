"""Derive charts/function/values.schema.json from functl's functions.yaml schema.

The function chart takes a functions.yaml as its values, so its schema is functl's schema,
rewritten for Helm: draft-07 (``definitions`` instead of ``$defs``; Helm 3 validates with
a draft-04/06/07 validator), ``global`` allowed (Helm passes it to subcharts), the
chart-only values ``prepareBus`` and ``networkPolicy``, and an empty ``functions`` list
allowed (the chart's default installs nothing).

    python tests/charts/sync_function_schema.py    # rewrite the chart's schema

tests/charts/test_charts_function.py fails when the two drift apart.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
FUNCTL_SCHEMA = ROOT / "functl" / "functions.schema.json"
CHART_SCHEMA = ROOT / "charts" / "function" / "values.schema.json"


def _draft7(node: Any) -> Any:
    if isinstance(node, dict):
        out = {("definitions" if k == "$defs" else k): _draft7(v) for k, v in node.items()}
        ref = out.get("$ref")
        if isinstance(ref, str):
            out["$ref"] = ref.replace("#/$defs/", "#/definitions/")
        return out
    if isinstance(node, list):
        return [_draft7(v) for v in node]
    return node


def chart_schema(functl_schema: dict[str, Any]) -> dict[str, Any]:
    """The function chart's values schema for a given functl schema (pure)."""
    schema = _draft7(functl_schema)
    schema["$schema"] = "http://json-schema.org/draft-07/schema#"
    schema.pop("$id", None)
    schema["title"] = "kubefuncs function chart values (a functions.yaml)"
    props = schema["properties"]
    props["global"] = {"type": "object", "description": "Helm globals (from a parent chart)."}
    props["prepareBus"] = {
        "type": "boolean",
        "description": "Chart only: a pre-install/pre-upgrade Job creates every topic and channel.",
    }
    props["networkPolicy"] = {
        "type": "object",
        "additionalProperties": False,
        "properties": {"enabled": {"type": "boolean"}},
        "description": "Chart only: enabled false renders no NetworkPolicy "
        "(functl --no-network-policy).",
    }
    props["functions"] = {**props["functions"], "minItems": 0}
    return schema


def render() -> str:
    functl_schema = json.loads(FUNCTL_SCHEMA.read_text(encoding="utf-8"))
    return json.dumps(chart_schema(functl_schema), indent=2) + "\n"


def main() -> None:
    CHART_SCHEMA.write_text(render(), encoding="utf-8")
    print(f"wrote {CHART_SCHEMA.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
