"""Shared helpers for the functl tests (no conftest: module names stay unique)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubefuncs.functl import render, spec

HERE = Path(__file__).parent
DATA = HERE / "data"
GOLDEN = HERE / "golden"
EXAMPLES = ("valkey", "nsq", "source", "cluster")
TARGET = render.Target("fns", "demo")


def load(name: str) -> spec.Spec:
    return spec.load(DATA / f"{name}.yaml")


def rendered(name: str, target: render.Target = TARGET) -> list[dict[str, Any]]:
    return render.render(load(name), target)


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def named(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)
