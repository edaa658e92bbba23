"""``functl dev``'s install step for source functions' ``requirements:``: the init
container's script (source.PIP_INSTALL), run here into a cache folder keyed by the
requirements and the index, so a second start installs nothing."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from . import source
from .errors import UsageError
from .model import Function


def cache_root(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "kubefuncs" / "dev-deps"


def pip_python(env: Mapping[str, str]) -> str | None:
    """An interpreter with pip: KF_PIP_PYTHON, this one, the one this venv was made from
    (a uv venv has no pip), or python3 on PATH."""
    base = getattr(sys, "_base_executable", None)
    for candidate in (env.get("KF_PIP_PYTHON"), sys.executable, base, shutil.which("python3")):
        if candidate and _has_pip(candidate):
            return candidate
    return None


def _has_pip(python: str) -> bool:
    probe = subprocess.run([python, "-m", "pip", "--version"], capture_output=True, check=False)
    return probe.returncode == 0


def install(fn: Function, env: Mapping[str, str]) -> Path | None:
    """The folder holding ``fn``'s requirements (installed now unless cached); None when
    it has none."""
    if fn.source is None or not fn.source.requirements:
        return None
    index = env.get("KF_PIP_INDEX_URL") or fn.source.index_url or source.PYPI
    text = "\n".join(fn.source.requirements) + "\n"
    key = hashlib.sha256(f"{index}\n{text}".encode()).hexdigest()[:16]
    target = cache_root(env) / key
    if (target / source.INSTALL_TIME_FILE).is_file():
        return target
    python = pip_python(env)
    if python is None:
        raise UsageError(
            f"{fn.name} needs {', '.join(fn.source.requirements)} and no python with pip was "
            "found: set KF_PIP_PYTHON, or install them into this environment"
        )
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kf-dev-req-") as folder:
        Path(folder, source.REQUIREMENTS_FILE).write_text(text)
        run_env = {**env, "KF_SOURCE_DIR": folder, "KF_PIP_INDEX_URL": index}
        run_install(
            [python, "-c", source.PIP_INSTALL], run_env, target, f"the requirements of {fn.name}"
        )
    return target


def run_install(command: list[str], env: Mapping[str, str], target: Path, what: str) -> None:
    """Run the init container's install script into ``target``; a failure removes the
    half-filled folder and says the last lines the installer printed."""
    done = subprocess.run(
        command,
        env={**env, "KF_DEPS_DIR": str(target)},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        shutil.rmtree(target, ignore_errors=True)
        tail = (done.stdout + done.stderr).strip().splitlines()[-3:]
        raise UsageError(f"installing {what} failed: {' / '.join(tail)}")
