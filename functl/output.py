"""Formatting for people (tables) and machines (YAML, JSON); no printing here."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import yaml

FORMATS = ("table", "yaml", "json")


class _Dumper(yaml.SafeDumper):
    """Block-style YAML without anchors/aliases, with multi-line strings as ``|`` blocks."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def to_yaml(value: Any) -> str:
    return yaml.dump(value, Dumper=_Dumper, sort_keys=False, default_flow_style=False)


def manifests_yaml(objects: Iterable[Mapping[str, Any]]) -> str:
    """A multi-document YAML stream, one ``---`` separated document per object."""
    return "".join(f"---\n{to_yaml(dict(obj))}" for obj in objects)


def manifests_json(objects: Iterable[Mapping[str, Any]]) -> str:
    """A Kubernetes ``List`` (what ``kubectl apply -f -`` accepts as JSON)."""
    return to_json({"apiVersion": "v1", "kind": "List", "items": list(objects)})


def to_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=False, default=str) + "\n"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A plain text table, columns padded to their widest cell, like kubectl's."""
    cells = [[str(h) for h in headers], *([_cell(c) for c in row] for row in rows)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list | tuple):
        return ",".join(map(str, value)) or "-"
    return str(value)


def render(value: Any, fmt: str, headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """``value`` as YAML/JSON for machines, or ``rows`` as a table for people."""
    if fmt == "yaml":
        return to_yaml(value)
    if fmt == "json":
        return to_json(value)
    return table(headers, rows)
