"""Ephemeral functions (pure): ``ttl:`` / ``expires_at:`` -> the ``kubefuncs.io/expires-at``
annotation on every object of the function, and the release's janitor (a CronJob running
``functl gc`` with its own ServiceAccount and a Role that may delete only the objects of
the release's expiring functions)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from .model import Spec
from .naming import INSTANCE, Obj, Target, object_name
from .naming import labels as base_labels
from .workload import bus_password_env, container_security

EXPIRES_ANNOTATION = "kubefuncs.io/expires-at"
JANITOR = "janitor"
JANITOR_SCHEDULE = "*/5 * * * *"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_TTL = re.compile(r"^([0-9]+)([smhd])$")
Report = Callable[[tuple[Any, ...], str, str], None]


def now() -> datetime:
    """The clock ttl: counts from (replaced in tests)."""
    return datetime.now(UTC)


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else None


def ttl_s(text: str) -> int:
    m = _TTL.match(text)
    return int(m[1]) * _UNITS[m[2]] if m else 0


def resolve(i: int, raw: Mapping[str, Any], issue: Report) -> str | None:
    """The function's expiry as an RFC 3339 UTC time, or None when it does not expire."""
    ttl, at = raw.get("ttl"), raw.get("expires_at")
    if ttl is not None and at is not None:
        issue(("functions", i, "ttl"), "set either ttl: or expires_at:, not both", "")
        return None
    if ttl is not None:
        seconds = ttl_s(ttl)
        if seconds <= 0:
            issue(("functions", i, "ttl"), f"ttl {ttl!r} is not a duration above 0", "use 2h")
            return None
        return stamp(now() + timedelta(seconds=seconds))
    if at is not None:
        moment = parse(at)
        if moment is None:
            issue(
                ("functions", i, "expires_at"),
                f"{at!r} is not a time with a zone",
                "write it as 2026-12-31T18:00:00Z",
            )
            return None
        return stamp(moment)
    return None


def annotate(objects: list[Obj], expires_at: str | None) -> list[Obj]:
    if expires_at:
        for obj in objects:
            obj["metadata"].setdefault("annotations", {})[EXPIRES_ANNOTATION] = expires_at
    return objects


def janitor(spec: Spec, target: Target, image: str | None, doomed: list[Obj]) -> list[Obj]:
    """ServiceAccount, Role, RoleBinding and CronJob of the release's janitor; [] when no
    function expires. ``doomed``: the objects of the expiring functions (the only ones the
    Role lets it delete)."""
    if not any(fn.expires_at for fn in spec.functions):
        return []
    name = object_name(target, JANITOR)
    meta = _meta(target, name)
    names = sorted({o["metadata"]["name"] for o in doomed})
    rules = (
        [
            {"apiGroups": [group], "resources": [plural], "verbs": ["get", "list"]}
            for group, plural in _RESOURCES
        ]
        + [
            {
                "apiGroups": [group],
                "resources": [plural],
                "verbs": ["delete"],
                "resourceNames": names,
            }
            for group, plural in _RESOURCES
        ]
        + [
            {  # the routes of the functions it deletes leave the gateway's routes (gwroutes.py)
                "apiGroups": [""],
                "resources": ["configmaps"],
                "verbs": ["patch", "delete"],
                "resourceNames": [object_name(target, "routes")],
            }
        ]
    )
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": meta,
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": target.namespace}],
        },
        _cronjob(spec, target, image, name, meta),
    ]


# the kinds of a function's objects: what the janitor lists and deletes
JANITOR_KINDS = frozenset(
    {
        "Deployment",
        "CronJob",
        "ScaledObject",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
        "ConfigMap",
    }
)
# the same as RBAC names them (group, plural)
_RESOURCES = (
    ("apps", "deployments"),
    ("batch", "cronjobs"),
    ("keda.sh", "scaledobjects"),
    ("autoscaling", "horizontalpodautoscalers"),
    ("networking.k8s.io", "networkpolicies"),
    ("", "configmaps"),
)


def _meta(target: Target, name: str) -> Obj:
    return {
        "name": name,
        "namespace": target.namespace,
        "labels": base_labels(target, JANITOR, JANITOR),
    }


def _cronjob(spec: Spec, target: Target, image: str | None, name: str, meta: Obj) -> Obj:
    bus = spec.bus.url if spec.bus else ""
    command = ["functl", "gc", "-n", target.namespace, "-r", target.release, "--bus", bus]
    container: Obj = {
        "name": JANITOR,
        "image": image or "",
        "command": command,
        "env": bus_password_env(spec),
        "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}},
        "securityContext": container_security(),
    }
    pod: Obj = {
        "serviceAccountName": name,
        "restartPolicy": "Never",
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": meta,
        "spec": {
            "schedule": JANITOR_SCHEDULE,
            "concurrencyPolicy": "Forbid",
            "successfulJobsHistoryLimit": 1,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {
                "spec": {
                    "backoffLimit": 1,
                    "activeDeadlineSeconds": 240,
                    "template": {"metadata": {"labels": {INSTANCE: target.release}}, "spec": pod},
                }
            },
        },
    }
