"""Source functions: a function's code shipped in a ConfigMap instead of an image.

``source: handler.py`` (or a directory) is packed into a ConfigMap whose name carries a
hash of the content, so a change of one byte renames it and rolls the Deployment. The
ConfigMap is mounted read-only at :data:`SOURCE_DIR` into the stock image (the release's
``--image`` for Python, the stock Node runtime image for Node); the runtime puts that
directory first on its import path (``KF_SOURCE_DIR``).

Dependencies (``requirements:`` for Python, ``package.json`` dependencies for Node) are
installed before the function starts by an init container into an emptyDir mounted at
:data:`DEPS_DIR`; it writes the install time to :data:`INSTALL_TIME_FILE`, which the
runtime adds to its cold-start metric. Without dependencies there is no init container.

Kubernetes keeps a ConfigMap under 1 MiB (:data:`CONFIGMAP_LIMIT_BYTES`), counted here on
the object as it is sent to the API server.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import UsageError
from .model import Function
from .naming import Obj, Target, labels, object_name

SOURCE_DIR = "/kf/source"
DEPS_DIR = "/kf/deps"
INSTALL_TIME_FILE = ".kf-install-s"  # inside DEPS_DIR: seconds the install took
REQUIREMENTS_FILE = ".kf-requirements.txt"  # inside SOURCE_DIR: the resolved requirements
CONFIGMAP_LIMIT_BYTES = 1024 * 1024
PYPI = "https://pypi.org/simple"
NPM = "https://registry.npmjs.org/"
PYTHON_INSTALL_IMAGE = "python:3.11-slim-bookworm"  # the stock image's Python: same ABI
NODE_INSTALL_IMAGE = "node:20-bookworm-slim"
SKIPPED = frozenset({"__pycache__", ".git", ".venv", "node_modules", ".mypy_cache", ".DS_Store"})
_KEY_CHARS = re.compile(r"[^-._a-zA-Z0-9]")

# Run by the init container with the install image's python: pip into DEPS_DIR from the
# index (KF_PIP_INDEX_URL; a file:// URL or a path is a folder of wheels), timed.
PIP_INSTALL = """\
import os, subprocess, sys, time
index, deps = os.environ["KF_PIP_INDEX_URL"], os.environ["KF_DEPS_DIR"]
where = ["--index-url", index]
if index.startswith("file://") or index.startswith("/"):
    where = ["--no-index", "--find-links", index.removeprefix("file://")]
started = time.monotonic()
done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-cache-dir",
    "--disable-pip-version-check", "--no-input", "--target", deps, *where,
    "-r", os.path.join(os.environ["KF_SOURCE_DIR"], ".kf-requirements.txt")])
if done.returncode:
    sys.exit(done.returncode)
with open(os.path.join(deps, ".kf-install-s"), "w") as f:
    f.write(f"{time.monotonic() - started:.3f}\\n")
"""

# The same for Node: npm install of package.json's dependencies into DEPS_DIR/node_modules.
NPM_INSTALL = """\
const { execFileSync } = require('child_process');
const fs = require('fs'); const path = require('path');
const deps = process.env.KF_DEPS_DIR; const started = process.hrtime.bigint();
fs.copyFileSync(path.join(process.env.KF_SOURCE_DIR, 'package.json'),
  path.join(deps, 'package.json'));
execFileSync('npm', ['install', '--omit=dev', '--no-audit', '--no-fund',
  '--registry', process.env.KF_NPM_REGISTRY], { cwd: deps, stdio: 'inherit' });
const s = Number(process.hrtime.bigint() - started) / 1e9;
fs.writeFileSync(path.join(deps, '.kf-install-s'), s.toFixed(3) + '\\n');
"""


@dataclass(frozen=True, slots=True)
class Packed:
    """The files of a source, as the ConfigMap holds them."""

    files: tuple[tuple[str, bytes], ...]  # (path relative to the source root, content)
    digest: str  # 10 hex digits of the content's sha256

    def key(self, index: int) -> str:
        """The ConfigMap key of file ``index``: unique, made of the allowed characters."""
        name = _KEY_CHARS.sub("_", self.files[index][0].rsplit("/", 1)[-1])
        return f"f{index:04d}-{name}"[:253]


def is_package(root: Path) -> bool:
    """A Python package directory: shipped as the package (``shop/...`` in the mount)."""
    return root.is_dir() and (root / "__init__.py").is_file()


def import_root(root: Path) -> Path:
    """The folder a source's modules are imported from, as the mount lays it out."""
    return root.parent if root.is_file() or is_package(root) else root


def collect(root: Path) -> list[tuple[str, bytes]]:
    """Every file under ``root`` (or ``root`` itself), sorted, without caches and VCS; a
    package directory keeps its name as the first path part."""
    if root.is_file():
        return [(root.name, root.read_bytes())]
    prefix = f"{root.name}/" if is_package(root) else ""
    out = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part in SKIPPED for part in rel.parts) or path.suffix == ".pyc":
            continue
        if path.is_file():
            out.append((prefix + rel.as_posix(), path.read_bytes()))
    return out


def pack(fn: Function) -> Packed:
    """Read the function's source (and add its requirements) into a :class:`Packed`."""
    src = fn.source
    assert src is not None
    root = Path(src.path)
    try:
        files = collect(root)
    except OSError as e:
        raise UsageError(
            f"function {fn.name}: cannot read its source {src.path}: {e.strerror or e}"
        ) from e
    if src.requirements:
        files.append((REQUIREMENTS_FILE, ("\n".join(src.requirements) + "\n").encode()))
    h = hashlib.sha256()
    for rel, content in files:
        h.update(rel.encode() + b"\0" + hashlib.sha256(content).digest())
    return Packed(tuple(files), h.hexdigest()[:10])


def has_dependencies(fn: Function) -> bool:
    """Whether the function needs the install init container."""
    src = fn.source
    if src is None:
        return False
    if src.runtime == "python":
        return bool(src.requirements)
    package = Path(src.path) / "package.json"
    if not package.is_file():
        return False
    try:
        data = json.loads(package.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UsageError(f"function {fn.name}: {package} is not valid JSON: {e}") from e
    return bool(isinstance(data, dict) and data.get("dependencies"))


def configmap_name(target: Target, fn: Function, packed: Packed) -> str:
    return object_name(target, fn.name, "src", packed.digest)


def configmap(target: Target, fn: Function, packed: Packed) -> Obj:
    """The ConfigMap holding the source; UsageError when it is over Kubernetes' limit."""
    data: dict[str, str] = {}
    binary: dict[str, str] = {}
    for i, (_, content) in enumerate(packed.files):
        try:
            data[packed.key(i)] = content.decode("utf-8")
        except UnicodeDecodeError:
            binary[packed.key(i)] = base64.b64encode(content).decode()
    obj: Obj = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": configmap_name(target, fn, packed),
            "namespace": target.namespace,
            "labels": labels(target, fn.name, "source"),
            "annotations": {"kubefuncs.io/source": Path(fn.source.path).name if fn.source else ""},
        },
        "immutable": True,
        "data": data,
    }
    if binary:
        obj["binaryData"] = binary
    size = len(json.dumps(obj, separators=(",", ":")).encode())
    if size > CONFIGMAP_LIMIT_BYTES:
        raise UsageError(
            f"function {fn.name}: its source {fn.source.path if fn.source else ''} packs into "
            f"a ConfigMap of {size} bytes ({size / 1048576:.2f} MiB), over Kubernetes' limit of "
            f"{CONFIGMAP_LIMIT_BYTES} bytes (1 MiB)\n"
            "    fix: leave large files (data, build output, virtualenvs) out of the source "
            "directory, move dependencies to requirements:, or build an image and set image:"
        )
    return obj


def volumes(target: Target, fn: Function, packed: Packed) -> list[Obj]:
    items = [{"key": packed.key(i), "path": rel} for i, (rel, _) in enumerate(packed.files)]
    out: list[Obj] = [
        {
            "name": "source",
            "configMap": {
                "name": configmap_name(target, fn, packed),
                "items": items,
                "defaultMode": 0o444,
            },
        }
    ]
    if has_dependencies(fn):
        out.append({"name": "deps", "emptyDir": {"sizeLimit": "512Mi"}})
    return out


def mounts(fn: Function) -> list[Obj]:
    out: list[Obj] = [{"name": "source", "mountPath": SOURCE_DIR, "readOnly": True}]
    if has_dependencies(fn):
        out.append({"name": "deps", "mountPath": DEPS_DIR, "readOnly": True})
    return out


def env(fn: Function) -> list[Obj]:
    """What the function container needs to find its code (and its dependencies)."""
    out = [{"name": "KF_SOURCE_DIR", "value": SOURCE_DIR}]
    if has_dependencies(fn):
        out.append({"name": "KF_DEPS_DIR", "value": DEPS_DIR})
        if fn.source is not None and fn.source.runtime == "node":
            out.append({"name": "NODE_PATH", "value": f"{DEPS_DIR}/node_modules"})
    return out


def install_container(fn: Function, security: Obj) -> Obj:
    """The init container that installs the dependencies into the emptyDir."""
    src = fn.source
    assert src is not None
    python = src.runtime == "python"
    index_var = "KF_PIP_INDEX_URL" if python else "KF_NPM_REGISTRY"
    return {
        "name": "install",
        "image": src.install_image or (PYTHON_INSTALL_IMAGE if python else NODE_INSTALL_IMAGE),
        "command": ["python", "-c", PIP_INSTALL] if python else ["node", "-e", NPM_INSTALL],
        "env": [
            {"name": "KF_SOURCE_DIR", "value": SOURCE_DIR},
            {"name": "KF_DEPS_DIR", "value": DEPS_DIR},
            {"name": index_var, "value": src.index_url or (PYPI if python else NPM)},
            {"name": "HOME", "value": "/tmp"},
        ],
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"memory": "512Mi"},
        },
        "securityContext": security,
        "volumeMounts": [
            {"name": "source", "mountPath": SOURCE_DIR, "readOnly": True},
            {"name": "deps", "mountPath": DEPS_DIR},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }


def node_image(release_image: str) -> str:
    """The stock Node runtime image next to the release's: ``repo/kubefuncs:1.0`` ->
    ``repo/kubefuncs-node:1.0`` (Dockerfile.node builds it)."""
    name = release_image.partition("@")[0]  # a digest names one image, not its sibling
    repo, colon, tag = name.rpartition(":")
    if not colon or "/" in tag:
        repo, tag = name, "latest"
    return f"{repo}-node:{tag}"
