"""Bus preparation from inside the cluster, for when the bus is not reachable from here.

``functl apply`` creates every topic and channel before applying. When the bus URL of
functions.yaml is an in-cluster address (``kubefuncs-valkey:6379``) and no ``--bus`` reaches
it from this machine, the same preparation runs as a one-shot Job in the release's image
(``functl prepare-bus TOPIC/CHANNEL ...``, like the function chart's prepare-bus hook),
with a NetworkPolicy that lets it reach DNS and the bus only. A Job that succeeded is
deleted; a failed one is kept for ``kubectl describe`` (``ttlSecondsAfterFinished``), and
its pod's log is part of the error.

Rendering is pure; :func:`run` does the I/O through a :class:`JobCluster`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from . import netpol, render
from .errors import BusUnreachable, UsageError
from .model import Spec
from .naming import COMPONENT, INSTANCE, NAME, Obj, Target, labels, object_name
from .workload import bus_password_env, container_security

COMPONENT_NAME = "bus-prepare"
LOG_TAIL_LINES = 20
POLL_S = 1.0


class JobCluster(Protocol):
    """What running the Job needs of :class:`~kubefuncs.functl.kube.Cluster`."""

    def get(self, kind: str, name: str) -> Obj | None: ...
    def apply(
        self, obj: Mapping[str, Any], *, dry_run: bool = False, force: bool = False
    ) -> Obj: ...
    def delete(self, kind: str, name: str, *, dry_run: bool = False) -> bool: ...
    def pod_logs(self, selector: Mapping[str, str], tail_lines: int) -> str: ...


@dataclass(frozen=True, slots=True)
class PrepareJob:
    """The Job and its NetworkPolicy (None with --no-network-policy)."""

    name: str
    job: Obj
    policy: Obj | None
    pod_selector: dict[str, str]


# -- pure rendering -------------------------------------------------------------------


def pod_labels(target: Target) -> dict[str, str]:
    return labels(target, "bus", COMPONENT_NAME)


def prepare_job(
    spec: Spec, target: Target, channels: Sequence[tuple[str, str]], timeout_s: float
) -> PrepareJob:
    """The Job that runs ``functl prepare-bus`` on the bus of ``spec``, inside the cluster."""
    bus = render.deployable_bus(spec)
    image = target.image or spec.image
    if image is None:
        raise UsageError(
            "the bus is not reachable from here, and there is no kubefuncs image to prepare "
            f"it from inside the cluster\n    fix: pass --image IMAGE (or set image: in "
            f"{spec.file}), or --bus with an address reachable from here, or --skip-bus"
        )
    name = object_name(target, "prepare-bus")
    meta = {"name": name, "namespace": target.namespace, "labels": pod_labels(target)}
    selector = {k: v for k, v in pod_labels(target).items() if k in (NAME, INSTANCE, COMPONENT)}
    policy = None
    if target.network_policy is not False:
        policy = {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": dict(meta),
            "spec": {
                "podSelector": {"matchLabels": selector},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [],
                "egress": [netpol.dns_rule(), *netpol.bus_rules(bus, covered=frozenset())],
            },
        }
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta,
        "spec": {
            "backoffLimit": 2,
            "activeDeadlineSeconds": math.ceil(timeout_s),
            "ttlSecondsAfterFinished": 3600,
            "template": {
                "metadata": {"labels": pod_labels(target)},
                "spec": _pod(spec, image, channels),
            },
        },
    }
    return PrepareJob(name, job, policy, selector)


def _pod(spec: Spec, image: str, channels: Sequence[tuple[str, str]]) -> Obj:
    url = spec.bus.url if spec.bus else ""
    return {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "restartPolicy": "Never",
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "runAsGroup": 10001,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
        "containers": [
            {
                "name": "prepare-bus",
                "image": image,
                "command": ["functl", "prepare-bus"],
                "args": [f"{topic}/{channel}" for topic, channel in channels],
                "env": [{"name": "KF_BUS_URL", "value": url}, *bus_password_env(spec)],
                "resources": {
                    "requests": {"cpu": "10m", "memory": "64Mi"},
                    "limits": {"memory": "128Mi"},
                },
                "securityContext": container_security(),
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
            }
        ],
    }


def outcome(job: Mapping[str, Any] | None) -> str | None:
    """``succeeded``, ``failed`` (with the reason Kubernetes gives) or None while running."""
    status = (job or {}).get("status") or {}
    if int(status.get("succeeded") or 0) > 0:
        return "succeeded"
    for condition in status.get("conditions") or ():
        if condition.get("type") == "Failed" and condition.get("status") == "True":
            reason = condition.get("reason") or ""
            message = condition.get("message") or ""
            return f"failed: {reason}{': ' if reason and message else ''}{message}".rstrip(": ")
    return None


# -- I/O ------------------------------------------------------------------------------


def run(
    cluster: JobCluster,
    prepared: PrepareJob,
    *,
    timeout_s: float,
    echo: Callable[[str], None],
    poll_s: float = POLL_S,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Replace any earlier Job of the release, run this one, wait for it (``timeout_s``),
    echo its log; a failure or a time-out raises :class:`BusUnreachable` with the log."""
    for obj in (prepared.job, prepared.policy):
        if obj is not None:
            cluster.delete(str(obj["kind"]), prepared.name)
    try:
        if prepared.policy is not None:
            cluster.apply(prepared.policy)
        cluster.apply(prepared.job)
        result = _wait(cluster, prepared.name, timeout_s, poll_s, clock, sleep)
        log = cluster.pod_logs(prepared.pod_selector, LOG_TAIL_LINES).rstrip()
    finally:
        if prepared.policy is not None:
            cluster.delete("NetworkPolicy", prepared.name)
    if result != "succeeded":
        raise BusUnreachable(_failure(prepared.name, result, log))
    for line in log.splitlines():
        echo(line)
    cluster.delete("Job", prepared.name)


def _wait(
    cluster: JobCluster,
    name: str,
    timeout_s: float,
    poll_s: float,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> str:
    deadline = clock() + timeout_s
    while True:
        result = outcome(cluster.get("Job", name))
        if result is not None:
            return result
        if clock() >= deadline:
            return f"did not finish within {timeout_s:g} s"
        sleep(poll_s)


def _failure(name: str, result: str, log: str) -> str:
    shown = "\n".join(f"    | {line}" for line in log.splitlines()) or "    | (no log)"
    return (
        f"the bus preparation Job {name} {result}; its log:\n{shown}\n"
        f"    fix: check that the bus URL of functions.yaml is right and the bus runs "
        f"(kubectl describe job {name}); or pass --bus with an address reachable from here, "
        "or --skip-bus to leave bus preparation to the functions"
    )
