"""``functl dev`` for Node source functions: the stock Node runtime (example/node/
function.js, what Dockerfile.node ships) as a subprocess on the source path, with
package.json's dependencies installed once into a cache folder by the init container's own
script (source.NPM_INSTALL), keyed by package.json and the registry."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

from . import source
from .devdeps import cache_root, run_install
from .errors import UsageError
from .model import Function

NPM_REGISTRY = "https://registry.npmjs.org/"
REPO_RUNTIME = Path(__file__).resolve().parent.parent / "example" / "node" / "function.js"


def runtime(env: Mapping[str, str]) -> Path | None:
    """The stock Node runtime's function.js: KF_NODE_RUNTIME, else the repository's."""
    given = env.get("KF_NODE_RUNTIME")
    path = Path(given) if given else REPO_RUNTIME
    return path if path.is_file() else None


def source_dir(fn: Function) -> Path:
    """Where the runtime resolves KF_HANDLER's module: what the ConfigMap mount holds."""
    assert fn.source is not None
    path = Path(fn.source.path)
    return path if path.is_dir() else path.parent


def why_not(fn: Function, env: Mapping[str, str], memory: bool) -> str | None:
    """Why this Node source function cannot run here, or None."""
    if memory:
        return (
            "is a Node source function and needs a real bus: "
            "start functl dev with --bus valkey://localhost:6379/0"
        )
    if shutil.which("node", path=env.get("PATH")) is None:
        return "is a Node source function and node is not on PATH"
    if runtime(env) is None:
        return (
            "is a Node source function and the stock Node runtime was not found: set "
            "KF_NODE_RUNTIME to example/node/function.js (after npm ci --prefix example/node)"
        )
    return None


def runtime_env(fn: Function, env: Mapping[str, str], deps: Path | None) -> dict[str, str]:
    """What the runtime needs beyond the KF_* settings: the handler, its folder, its deps."""
    out = {"KF_HANDLER": fn.handler or "", "KF_SOURCE_DIR": str(source_dir(fn))}
    if deps is not None:
        out["KF_DEPS_DIR"] = str(deps)
        out["NODE_PATH"] = str(deps / "node_modules")
    return out


def install(fn: Function, env: Mapping[str, str]) -> Path | None:
    """The folder whose node_modules holds package.json's dependencies (installed now
    unless cached); None when the function has none."""
    if fn.source is None or fn.source.runtime != "node" or not source.has_dependencies(fn):
        return None
    package = source_dir(fn) / "package.json"
    registry = env.get("KF_NPM_REGISTRY") or fn.source.index_url or NPM_REGISTRY
    key = hashlib.sha256(registry.encode() + b"\n" + package.read_bytes()).hexdigest()[:16]
    target = cache_root(env) / f"node-{key}"
    if (target / source.INSTALL_TIME_FILE).is_file():
        return target
    if shutil.which("npm", path=env.get("PATH")) is None:
        raise UsageError(f"{fn.name} has dependencies in {package} and npm is not on PATH")
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kf-dev-npm-") as folder:
        shutil.copyfile(package, Path(folder) / "package.json")
        run_env = {**env, "KF_SOURCE_DIR": folder, "KF_NPM_REGISTRY": registry}
        run_install(
            ["node", "-e", source.NPM_INSTALL], run_env, target, f"the dependencies of {fn.name}"
        )
    return target
