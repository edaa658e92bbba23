"""Code-first declarations of Node source functions, the Node side of ``@function(...)``.

A handler declares what functions.yaml would say in a ``kubefuncs`` property (the Node
library's ``declare(options, handler)`` sets it)::

    exports.take = declare({ name: 'take-order', topic: 'orders', routes: ['/orders/'],
                             scaling: { min: 0, max: 5 } }, async (payload) => ...);

functl reads them with ``node`` on a tiny loader (:data:`LOADER`) that imports each module
of the source and prints its exported functions' ``kubefuncs``; nothing else of the
runtime starts, but the modules' import-time code runs here (it is the user's, as for the
Python side). The fields are checked against functions.schema.json, as ``@function``'s.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from .errors import UsageError

NODE_FILES = (".js", ".cjs", ".mjs")
SKIPPED_DIRS = frozenset({"node_modules", ".git"})
LOAD_TIMEOUT_S = 20.0
IDENTITY = ("name", "topic")

# argv: OUT FILE...; writes {file: {"declared": {export: kubefuncs}} | {"error": message}}
LOADER = r"""
const fs = require('node:fs');
const { pathToFileURL } = require('node:url');
(async () => {
  const [out, ...files] = process.argv.slice(1);
  const result = {};
  for (const file of files) {
    try {
      const ns = await import(pathToFileURL(file).href);
      const table = { ...ns };
      if (ns.default && typeof ns.default === 'object') Object.assign(table, ns.default);
      const declared = {};
      for (const [name, value] of Object.entries(table)) {
        if (typeof value === 'function' && value.kubefuncs !== undefined) {
          declared[name] = value.kubefuncs;
        }
      }
      result[file] = { declared: JSON.parse(JSON.stringify(declared)) };
    } catch (e) {
      result[file] = { error: String((e && e.message) || e) };
    }
  }
  fs.writeFileSync(out, JSON.stringify(result));
  process.exit(0);
})();
"""


def modules(path: Path) -> list[Path]:
    """The JavaScript files of a source: a file itself, or every one under a directory
    (outside node_modules and dot folders)."""
    if path.is_file():
        return [path]
    return [
        f
        for f in sorted(path.rglob("*"))
        if f.suffix in NODE_FILES
        and f.is_file()
        and not any(p in SKIPPED_DIRS or p.startswith(".") for p in f.relative_to(path).parts)
    ]


def handler_name(root: Path, file: Path, export: str) -> str:
    """KF_HANDLER for ``export`` of ``file``: the module path the runtime require()s from
    the source folder (.js without its suffix), a colon and the export."""
    base = root if root.is_dir() else root.parent
    rel = file.relative_to(base).as_posix()
    module = rel[: -len(".js")] if rel.endswith(".js") else rel
    return f"{module}:{export}"


def may_declare(file: Path) -> bool:
    """Only a module whose text says ``kubefuncs`` or ``declare(`` can declare: the others
    are not loaded (nor their import-time code run, nor their dependencies needed)."""
    try:
        text = file.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return "kubefuncs" in text or "declare(" in text


def load(path: Path) -> dict[str, dict[str, Any]]:
    """{file: {export: declaration}} of every module of ``path`` that may declare;
    UsageError naming the file when one cannot be loaded."""
    files = [f for f in modules(path) if may_declare(f)]
    if not files:
        return {}
    node = shutil.which("node")
    if node is None:
        raise UsageError(f"{path}: reading Node declarations needs node on PATH")
    with tempfile.TemporaryDirectory(prefix="kf-node-decl-") as folder:
        out = Path(folder) / "declared.json"
        try:
            done = subprocess.run(
                [node, "-e", LOADER, str(out), *map(str, files)],
                capture_output=True,
                text=True,
                timeout=LOAD_TIMEOUT_S,
                check=False,
                cwd=path if path.is_dir() else path.parent,
                env={**os.environ, "NODE_ENV": os.environ.get("NODE_ENV", "production")},
            )
        except subprocess.TimeoutExpired as e:
            raise UsageError(
                f"{path}: loading its modules to read their declarations took over "
                f"{LOAD_TIMEOUT_S:.0f} s: keep import-time code short (start work in the handler)"
            ) from e
        if not out.is_file():
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise UsageError(f"{path}: node could not read the declarations: {' / '.join(tail)}")
        result = json.loads(out.read_text(encoding="utf-8"))
    found = {}
    for file in files:
        one = result.get(str(file)) or {}
        if "error" in one:
            hint = (
                " (run npm install in the source folder: reading declarations imports it)"
                if "Cannot find module" in one["error"]
                else ""
            )
            raise UsageError(f"cannot load {file} to read its declarations: {one['error']}{hint}")
        found[str(file)] = one.get("declared") or {}
    return found


def check(declared: Any, file: str, export: str) -> dict[str, Any]:
    """The declaration as functions.yaml fields (with name and topic); UsageError naming
    the file, the export, the field path and what to write instead."""
    from kubefuncs.declare import check as check_fields

    where = f"{file}: export {export}: kubefuncs"
    if not isinstance(declared, dict):
        raise UsageError(f"{where} must be an object of functions.yaml fields, got {declared!r}")
    out: dict[str, Any] = {}
    for key in IDENTITY:
        value = declared.get(key)
        if value is not None and not isinstance(value, str):
            raise UsageError(f"{where}.{key}: expected a string, got {value!r}")
        if value is not None:
            out[key] = value
    rest = {k: v for k, v in declared.items() if k not in IDENTITY}
    try:
        out.update(check_fields(rest, where))
    except TypeError as e:
        raise UsageError(str(e).removeprefix("@function ")) from e
    return out


def discover(path: Path) -> list[tuple[str, dict[str, Any]]]:
    """(KF_HANDLER, declaration) of every declared export of a Node source."""
    out = []
    for file, exports in load(path).items():
        for export, declared in exports.items():
            checked = check(declared, file, export)
            out.append((handler_name(path, Path(file), export), checked))
    return out
