"""Resolve a function's ``source:``, ``requirements:``, ``runtime:``, ``index_url:`` and
``install_image:`` (see functl/source.py), reporting problems with the line at fault."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .model import Source
from .yamlmarks import Path as FieldPath

NODE_SUFFIXES = (".js", ".mjs", ".cjs")
Report = Callable[[FieldPath, str, str], None]


def infer_runtime(path: Path) -> str:
    """node for a JavaScript file or a directory with package.json, else python."""
    if path.is_dir():
        return "node" if (path / "package.json").is_file() else "python"
    return "node" if path.suffix in NODE_SUFFIXES else "python"


def resolve(
    file: str,
    i: int,
    raw: Mapping[str, Any],
    defaults: Mapping[str, Any],
    issue: Report,
) -> Source | None:
    """The function's Source, or None when it runs from an image."""
    here: FieldPath = ("functions", i)
    if "source" not in raw:
        for key in ("requirements", "runtime"):
            if key in raw:
                issue((*here, key), f"{key}: applies only to a source: function", "add source:")
        return None
    base = Path(file).resolve().parent
    path = (base / raw["source"]).resolve()
    if not path.exists():
        issue(
            (*here, "source"),
            f"source {raw['source']!r} does not exist (looked for {path})",
            f"give a file or directory path relative to {Path(file).name}",
        )
        return None
    runtime = raw.get("runtime") or infer_runtime(path)
    if "handler" not in raw:
        stem = path.stem if path.is_file() else "module"
        issue(
            here,
            f"source function {raw['name']!r} has no handler:",
            f"add handler: {stem}:handle (module:function inside the source)",
        )
    if "command" in raw:
        issue((*here, "command"), "a source function runs the stock runtime", "drop command:")
    return Source(
        path=str(path),
        runtime=runtime,
        requirements=requirements(base, raw, runtime, (*here, "requirements"), issue),
        index_url=raw.get("index_url") or defaults.get("index_url"),
        install_image=raw.get("install_image") or defaults.get("install_image"),
    )


def requirements(
    base: Path, raw: Mapping[str, Any], runtime: str, where: FieldPath, issue: Report
) -> tuple[str, ...]:
    given = raw.get("requirements")
    if given is None:
        return ()
    if runtime == "node":
        issue(where, "a Node function lists its dependencies in package.json", "drop requirements:")
        return ()
    if isinstance(given, list):
        return tuple(given)
    path = base / given
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        issue(where, f"cannot read requirements file {given!r}: {e.strerror or e}", "")
        return ()
    lines = [line.split(" #")[0].strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    options = [line for line in lines if line.startswith("-")]
    if options:
        issue(
            where,
            f"{given} has pip options ({options[0]}), which the install step does not take",
            "keep requirement specifiers only; set the package index with index_url:",
        )
    return tuple(line for line in lines if not line.startswith("-"))
