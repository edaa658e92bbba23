"""One file (or directory) to a function, without writing a functions.yaml.

``functl deploy handler.py --topic orders --route /orders/`` and ``functl dev handler.py``
build the functions.yaml entry here: the source is the file (or directory), the handler
the one ``@function`` of the module (else its ``handle``), name and topic from the
decorator, the flags, or the file name. The entry then goes through the same validation
as a written functions.yaml (:func:`kubefuncs.functl.spec.loads`).

Finding the handler imports the module: whatever it does at import time runs (the same
happens when the runtime starts it). A Node source is read the same way by ``node``
(nodedecl.py): its exported handlers' ``kubefuncs`` declarations.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import nodedecl, source
from . import spec as specs
from .errors import UsageError
from .model import Spec
from .resolve_source import infer_runtime

SOURCE_SUFFIXES = (".py", ".js", ".mjs", ".cjs")


@dataclass(frozen=True, slots=True)
class Given:
    """What the command line says about the function (None: not given)."""

    name: str | None = None
    topic: str | None = None
    routes: tuple[str, ...] = ()
    requirements: tuple[str, ...] = ()
    handler: str | None = None  # the attribute: handle, or module:attr
    bus_url: str | None = None
    image: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # more functions.yaml fields


def is_source_path(path: str) -> bool:
    """A file or directory to deploy as is, rather than a functions.yaml."""
    p = Path(path)
    return p.is_dir() or (p.is_file() and p.suffix in SOURCE_SUFFIXES)


def dns_name(text: str) -> str:
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower().replace("_", "-")).strip("-")
    return name[:40].strip("-") or "fn"


def module_names(path: Path) -> list[str]:
    """The modules of a source: a file's own, or every .py under a directory (dotted,
    relative to where the mount puts them)."""
    if path.is_file():
        return [path.stem]
    base = source.import_root(path)
    out = []
    for file in sorted(path.rglob("*.py")):
        rel = file.relative_to(base).with_suffix("")
        if any(part in source.SKIPPED for part in rel.parts):
            continue
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        if parts:
            out.append(".".join(parts))
    return out


def discover(path: Path) -> list[tuple[str, Any]]:
    """(module:attr, Function) of every ``@function`` the source defines. Imports every
    module of it: their import-time code runs."""
    from kubefuncs.function import Function

    root = source.import_root(path)
    found = []
    for name in module_names(path):
        module = import_from(root, name)
        for attr, value in vars(module).items():
            if isinstance(value, Function) and getattr(value.handler, "__module__", "") == name:
                found.append((f"{name}:{attr}", value))
    return found


def find_handler(path: Path, attr: str | None) -> tuple[str, Any]:
    """(module:attr, the object) of a Python source: ``attr`` if given (an attribute, or
    module:attr), else the one ``@function`` it defines, else a file's ``handle``."""
    if attr and ":" in attr:
        module_name, _, name = attr.partition(":")
        module = import_from(source.import_root(path), module_name)
        if not hasattr(module, name):
            raise UsageError(f"{path}: module {module_name} has no {name!r}")
        return attr, getattr(module, name)
    found = discover(path)
    if attr:
        found = [(k, v) for k, v in found if k.split(":")[1] == attr]
        if not found and path.is_file():
            return find_handler(path, f"{path.stem}:{attr}")
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        names = ", ".join(k.split(":")[1] for k, _ in found)
        raise UsageError(
            f"{path} declares several functions ({names}): pass --handler NAME to pick one"
        )
    module = import_from(source.import_root(path), path.stem) if path.is_file() else None
    if module is not None and callable(getattr(module, "handle", None)):
        return f"{path.stem}:handle", module.handle
    raise UsageError(
        f"{path} has no @function and no handle(): decorate the handler with @function(...) "
        "or pass --handler NAME (module:function for a directory)"
    )


def import_from(root: Path, module_name: str) -> Any:
    """Import ``module_name`` with ``root`` first on the import path."""
    folder = str(root.resolve())
    if folder not in sys.path:
        sys.path.insert(0, folder)
    if module_name in sys.modules:
        return sys.modules[module_name]
    try:
        found = importlib.util.find_spec(module_name)
        if found is None:
            raise ImportError(f"no module {module_name} in {folder}")
        return importlib.import_module(module_name)
    except Exception as e:  # the user's import-time code: any failure is theirs to fix
        raise UsageError(f"cannot import {module_name} from {folder}: {e}") from e


def entry(path: Path, given: Given) -> dict[str, Any]:
    """The functions.yaml entry for ``path`` (declarations, then the flags over them)."""
    runtime = infer_runtime(path)
    declared: dict[str, Any] = {}
    if runtime == "python":
        handler, obj = find_handler(path, given.handler)
        declared = declarations_of(obj)
    else:
        handler, declared = find_node_handler(path, given.handler)
    name = given.name or declared.pop("name", None) or dns_name(path.stem)
    item: dict[str, Any] = {
        "name": name,
        "topic": given.topic or declared.pop("topic", None) or name,
        "source": path.name,
        "handler": handler,
    }
    declared.pop("name", None)
    declared.pop("topic", None)
    item.update(declared)
    if given.routes:
        item["routes"] = list(given.routes)
    if given.requirements:
        item["requirements"] = list(given.requirements)
    item.update(given.extra)
    return item


def declarations_of(obj: Any) -> dict[str, Any]:
    """What ``@function(...)`` declared, as functions.yaml fields (name, topic, ...)."""
    from kubefuncs.function import Function

    if not isinstance(obj, Function):
        return {}
    out: dict[str, Any] = {}
    if obj.settings.function_name:
        out["name"] = obj.settings.function_name
    if obj.settings.topic:
        out["topic"] = obj.settings.topic
    declared = getattr(obj, "declarations", None)
    if declared:
        out.update(declared)
    return out


def api_entry(path_text: str, given: Given) -> dict[str, Any]:
    """The functions.yaml entry ``functl deploy PATH --api URL`` sends: the source as an
    absolute path, which the API reads on its own machine (functl dev: this one)."""
    path = Path(path_text).resolve()
    if not path.exists():
        raise UsageError(f"{path_text}: no such file or directory")
    item = entry(path, given)
    item["source"] = str(path)
    return item


def spec_for(path_text: str, given: Given, functions_file: str | None = None) -> Spec:
    """A one-function Spec for a source file or directory; the entry of the same name in
    ``functions_file`` (when it exists) overrides it field by field and gives the bus,
    image and defaults."""
    from kubefuncs.declare import merge

    path = Path(path_text).resolve()
    if not path.exists():
        raise UsageError(f"{path_text}: no such file or directory")
    file = Path(functions_file) if functions_file and Path(functions_file).is_file() else None
    data: dict[str, Any] = {"version": 1}
    if file:
        data = _mapping(yaml.safe_load(file.read_text(encoding="utf-8")))
    base = file.resolve().parent if file else path.parent
    item = entry(path, given)
    item["source"] = os.path.relpath(path, base)
    own = {e.get("name"): e for e in data.get("functions") or [] if isinstance(e, dict)}
    data["functions"] = [merge(item, own.get(item["name"], {}))]
    if given.bus_url or "bus" not in data:
        if not given.bus_url:
            raise UsageError(
                "no bus: pass --bus-url URL (the bus as the function reaches it), or -f a "
                "functions.yaml with bus:"
            )
        data["bus"] = {"url": given.bus_url}
    if given.image and "image" not in data:
        data["image"] = given.image
    name = str(file) if file else str(path.parent / f"{path.name} (functl deploy)")
    return specs.loads(yaml.safe_dump(data, sort_keys=False), name)


def how_to_call(spec: Spec, namespace: str, release: str) -> list[str]:
    """What to tell the user after deploying: where it runs and how to reach it."""
    fn = spec.functions[0]
    lines = [f"function {fn.name} deployed as release {release} in namespace {namespace}"]
    for r in spec.routes():
        methods = ",".join(r["methods"] or ["*"])
        method = (r["methods"] or ["POST"])[0]
        lines.append(
            f"  route {methods} {r['prefix']} -> topic {r['topic']}: "
            f'curl -X {method} http://<gateway>{r["prefix"]} -d \'{{"hello": "world"}}\''
        )
    lines.append(f'  on the bus: functl call {fn.topic} --data \'{{"hello": "world"}}\'')
    lines.append(f"  remove it: functl delete {fn.name} -n {namespace} -r {release}")
    return lines


def split_list(values: Sequence[str]) -> tuple[str, ...]:
    """``--route /a/ --route /b/`` or ``--route /a/,/b/``."""
    return tuple(v.strip() for value in values for v in value.split(",") if v.strip())


def find_node_handler(path: Path, attr: str | None) -> tuple[str, dict[str, Any]]:
    """(KF_HANDLER, declaration) of a Node source: ``attr`` (an export, or module:export),
    else its one declared export, else ``handle`` of the file (index.js of a folder)."""
    found = nodedecl.discover(path)
    if attr:
        hits = [(h, d) for h, d in found if attr in (h, h.split(":")[1])]
        if len(hits) == 1:
            return hits[0]
        return (attr if ":" in attr else f"{_node_module(path)}:{attr}"), {}
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        names = ", ".join(h for h, _ in found)
        raise UsageError(f"{path} declares several functions ({names}): pass --handler NAME")
    return f"{_node_module(path)}:handle", {}


def _node_module(path: Path) -> str:
    if path.is_dir():
        return "index"
    return path.stem if path.suffix == ".js" else path.name


def declared_entries(path: Path, source_field: str) -> list[dict[str, Any]]:
    """A functions.yaml entry per ``@function`` (Node: per declared export) of the
    source, from its declarations."""
    if infer_runtime(path) == "node":
        hint = "declares no function: export a handler with declare(options, handler)"
        return _entries(path, source_field, nodedecl.discover(path), hint)
    found = [(handler, declarations_of(fn)) for handler, fn in discover(path)]
    return _entries(
        path, source_field, found, "defines no @function: decorate the handlers to declare them"
    )


def _entries(
    path: Path, source_field: str, found: list[tuple[str, dict[str, Any]]], none: str
) -> list[dict[str, Any]]:
    out = []
    for handler, declared in found:
        declared = dict(declared)
        name = declared.pop("name", None) or dns_name(handler.split(":")[1])
        topic = declared.pop("topic", None) or name
        out.append(
            {"name": name, "topic": topic, "source": source_field, "handler": handler, **declared}
        )
    if not out:
        raise UsageError(f"{path} {none}")
    return out


def spec_for_code(
    path_text: str, functions_file: str | None, bus_url: str | None, image: str | None
) -> Spec:
    """The functions declared in a module or package, each overridden field by field by
    the entry of the same name in ``functions_file`` (when that file exists); the file's
    other functions, bus, image and defaults are kept."""
    from kubefuncs.declare import merge

    path = Path(path_text).resolve()
    if not path.exists():
        raise UsageError(f"{path_text}: no such file or directory")
    file = Path(functions_file) if functions_file and Path(functions_file).is_file() else None
    data: dict[str, Any] = {"version": 1}
    if file:
        data = _mapping(yaml.safe_load(file.read_text(encoding="utf-8")))
    base = file.resolve().parent if file else path.parent
    own = {e.get("name"): e for e in data.get("functions") or [] if isinstance(e, dict)}
    merged = [
        merge(entry, own.pop(entry["name"], {}))
        for entry in declared_entries(path, os.path.relpath(path, base))
    ]
    data["functions"] = merged + list(own.values())
    if "bus" not in data:
        if not bus_url:
            raise UsageError(
                f"no bus for the functions of {path_text}: pass --bus-url URL, or -f a "
                "functions.yaml with bus:"
            )
        data["bus"] = {"url": bus_url}
    if image and "image" not in data:
        data["image"] = image
    name = str(file) if file else str(base / f"{path.name} (declarations)")
    return specs.loads(yaml.safe_dump(data, sort_keys=False), name)


def _mapping(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise UsageError("the functions.yaml to override declarations with is not a mapping")
    return value
