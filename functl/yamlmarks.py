"""Load YAML into plain Python values and remember the line of every field.

PyYAML drops positions when it constructs objects; composing the node graph first and
building the values ourselves keeps a ``path -> line`` map for error messages, and lets us
reject duplicate keys (which PyYAML silently resolves to the last one).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

Path = tuple[str | int, ...]


@dataclass
class Marked:
    """A loaded document and where each field of it starts (1-based lines)."""

    data: Any
    lines: dict[Path, int] = field(default_factory=dict)

    def line(self, path: Path) -> int:
        """The line of ``path``, or of its nearest ancestor that has one."""
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), 1)


class YamlProblem(Exception):
    """The text is not valid YAML (or has a duplicate key); carries the line."""

    def __init__(self, line: int, problem: str) -> None:
        super().__init__(problem)
        self.line = line
        self.problem = problem


def format_path(path: Path) -> str:
    """``('functions', 0, 'scaling')`` -> ``functions[0].scaling``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def load(text: str) -> Marked:
    """Parse one YAML document. Raises :class:`YamlProblem` with the offending line."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        marked = Marked(None)
        marked.data = _build(loader, node, (), marked.lines) if node is not None else None
        return marked
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else 0
        raise YamlProblem(line, f"not valid YAML: {e.problem or e.context}") from e
    finally:
        loader.dispose()


def _build(loader: yaml.SafeLoader, node: yaml.Node, path: Path, lines: dict[Path, int]) -> Any:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        return _build_mapping(loader, node, path, lines)
    if isinstance(node, yaml.SequenceNode):
        return [_build(loader, item, (*path, i), lines) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


def _build_mapping(
    loader: yaml.SafeLoader, node: yaml.MappingNode, path: Path, lines: dict[Path, int]
) -> dict[str, Any]:
    own = {id(k) for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge"}
    loader.flatten_mapping(node)  # resolves merge keys (<<: *anchor); merged pairs come first
    out: dict[str, Any] = {}
    written_by_own: set[str] = set()
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        key = key if isinstance(key, str) else str(key)
        if key in written_by_own:
            where = format_path(path) or "the document"
            raise YamlProblem(key_node.start_mark.line + 1, f"duplicate key {key!r} in {where}")
        if id(key_node) in own:
            written_by_own.add(key)
        child = (*path, key)
        lines[child] = key_node.start_mark.line + 1
        out[key] = _build(loader, value_node, child, lines)
    return out
