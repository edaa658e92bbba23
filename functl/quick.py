"""One file (or directory) to a function, without writing a functions.yaml.

``functl deploy handler.py --topic orders --route /orders/`` and ``functl dev handler.py``
build the functions.yaml entry here: the source is the file (or directory), the handler
the one ``@function`` of the module (else its ``handle``), name and topic from the
decorator, the flags, or the file name. The entry then goes through the same validation
as a written functions.yaml (:func:`kubefuncs.functl.spec.loads`).

Finding the handler imports the module: whatever it does at import time runs (the same
happens when the runtime starts it).
"""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

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
    bus_url: str = "memory://"
    image: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # more functions.yaml fields


def is_source_path(path: str) -> bool:
    """A file or directory to deploy as is, rather than a functions.yaml."""
    p = Path(path)
    return p.is_dir() or (p.is_file() and p.suffix in SOURCE_SUFFIXES)


def dns_name(text: str) -> str:
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower().replace("_", "-")).strip("-")
    return name[:40].strip("-") or "fn"


def find_handler(path: Path, attr: str | None) -> tuple[str, Any]:
    """(module:attr, the object) of a Python source: ``attr`` if given, else the one
    ``@function`` of the module, else its ``handle``. Imports the module."""
    from kubefuncs.function import Function

    root = path if path.is_dir() else path.parent
    module_name = _module_name(path, attr)
    if ":" in (attr or ""):
        attr = (attr or "").split(":", 1)[1]
    module = import_from(root, module_name)
    if attr:
        if not hasattr(module, attr):
            raise UsageError(f"{path}: module {module_name} has no {attr!r}")
        return f"{module_name}:{attr}", getattr(module, attr)
    found = [(k, v) for k, v in vars(module).items() if isinstance(v, Function)]
    found = [(k, v) for k, v in found if getattr(v.handler, "__module__", None) == module_name]
    if len(found) == 1:
        return f"{module_name}:{found[0][0]}", found[0][1]
    if len(found) > 1:
        names = ", ".join(k for k, _ in found)
        raise UsageError(
            f"{path} declares several functions ({names}): pass --handler NAME to pick one"
        )
    if callable(getattr(module, "handle", None)):
        return f"{module_name}:handle", module.handle
    raise UsageError(
        f"{path} has no @function and no handle(): decorate the handler with @function(...) "
        "or pass --handler NAME"
    )


def _module_name(path: Path, attr: str | None) -> str:
    if attr and ":" in attr:
        return attr.split(":", 1)[0]
    if path.is_dir():
        raise UsageError(
            f"{path} is a directory: pass --handler module:function (the module inside it)"
        )
    return path.stem


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
        handler = given.handler or f"{path.stem if path.is_file() else 'index'}:handle"
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


def spec_for(path_text: str, given: Given) -> Spec:
    """A one-function Spec for a source file or directory."""
    path = Path(path_text).resolve()
    if not path.exists():
        raise UsageError(f"{path_text}: no such file or directory")
    data: dict[str, Any] = {
        "version": 1,
        "bus": {"url": given.bus_url},
        "functions": [entry(path, given)],
    }
    if given.image:
        data["image"] = given.image
    virtual = path.parent / f"{path.name} (functl deploy)"
    return specs.loads(yaml.safe_dump(data, sort_keys=False), str(virtual))


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
