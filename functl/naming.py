"""Names, labels and metadata every rendered object shares (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .errors import UsageError
from .model import Function

MANAGER = "functl"
PART_OF = "kubefuncs"
NAME, INSTANCE, COMPONENT = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
)
MANAGED_BY = "app.kubernetes.io/managed-by"
TOPIC_ANNOTATION, CHANNEL_ANNOTATION = "kubefuncs.io/topic", "kubefuncs.io/channel"

Obj = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Target:
    """Where and as what the functions are deployed (the CLI flags)."""

    namespace: str
    release: str
    image: str | None = None  # --image: overrides the file's image:
    network_policy: bool | None = None  # --[no-]network-policy: overrides network.policy


def release_selector(release: str) -> dict[str, str]:
    """The labels that mark every object functl applied for ``release``."""
    return {INSTANCE: release, MANAGED_BY: MANAGER}


def object_name(target: Target, *parts: str, limit: int = 63) -> str:
    name = "-".join((target.release, *parts))
    if len(name) > limit:
        raise UsageError(
            f"object name {name!r} is {len(name)} characters, over Kubernetes' {limit}: "
            "use a shorter --release or function/schedule name"
        )
    return name


def labels(target: Target, name: str, component: str) -> dict[str, str]:
    return {
        NAME: name,
        INSTANCE: target.release,
        COMPONENT: component,
        "app.kubernetes.io/part-of": PART_OF,
        MANAGED_BY: MANAGER,
    }


def selector(target: Target, name: str, component: str) -> dict[str, str]:
    """The labels a workload's pods are selected by (Deployment selector, NetworkPolicy)."""
    return {
        k: v for k, v in labels(target, name, component).items() if k in (NAME, INSTANCE, COMPONENT)
    }


def metadata(target: Target, name: str, fn: Function, component: str) -> Obj:
    return {
        "name": name,
        "namespace": target.namespace,
        "labels": labels(target, fn.name, component),
        "annotations": {TOPIC_ANNOTATION: fn.topic, CHANNEL_ANNOTATION: fn.channel},
    }
