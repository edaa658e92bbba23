"""The Deployment of one function, and the pod pieces CronJobs reuse (pure)."""

from __future__ import annotations

import math

from . import gwroutes, source
from .model import HEALTH_PORT, Function, Spec
from .naming import Obj, Target, labels, metadata, object_name, selector

TERMINATION_MARGIN_S = 5


def deployment(
    spec: Spec, fn: Function, target: Target, image: str | None, packed: source.Packed | None = None
) -> Obj:
    """The function's Deployment; ``packed``: its source, for a source function."""
    name = object_name(target, fn.name)
    pod_selector = selector(target, fn.name, "function")
    # no spec.replicas: KEDA or the HPA own the replica count, and applying one would fight them
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _with_routes(metadata(target, name, fn, "function"), spec, fn),
        "spec": {
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": pod_selector},
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0},
            },
            "template": {
                "metadata": {
                    "labels": {**fn.labels, **labels(target, fn.name, "function")},
                    "annotations": {
                        **fn.annotations,
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(HEALTH_PORT),
                        "prometheus.io/path": "/metrics",
                    },
                },
                "spec": function_pod(spec, fn, target, image, packed),
            },
        },
    }


def _with_routes(meta: Obj, spec: Spec, fn: Function) -> Obj:
    """The Deployment's metadata with its routes for the gateway (gwroutes.py): on the
    Deployment, not its pods, so a route change does not roll them."""
    meta["annotations"].update(gwroutes.annotation(spec, fn))
    return meta


def function_pod(
    spec: Spec, fn: Function, target: Target, image: str | None, packed: source.Packed | None
) -> Obj:
    if fn.source is None or packed is None:
        return pod_spec(fn, [container(spec, fn, fn.image or image or "")])
    node = fn.source.runtime == "node"
    own = fn.image or (source.node_image(image or "") if node else image or "")
    c = container(spec, fn, own)
    if node:
        c["command"] = ["node", "/app/node/function.js"]
        c["env"].append({"name": "KF_HANDLER", "value": fn.handler or ""})
    c["env"][:0] = source.env(fn)
    c["volumeMounts"] += source.mounts(fn)
    pod = pod_spec(fn, [c])
    pod["volumes"] += source.volumes(target, fn, packed)
    if source.has_dependencies(fn):
        pod["initContainers"] = [source.install_container(fn, container_security())]
    return pod


def pod_spec(fn: Function, containers: list[Obj], *, restart: str | None = None) -> Obj:
    pod: Obj = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": fn.run_as_user,
            "runAsGroup": fn.run_as_user,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "terminationGracePeriodSeconds": termination_grace_s(fn),
        "containers": containers,
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
    }
    if restart:
        pod["restartPolicy"] = restart
    if fn.service_account:
        pod["serviceAccountName"] = fn.service_account
    if fn.node_selector:
        pod["nodeSelector"] = dict(fn.node_selector)
    if fn.tolerations:
        pod["tolerations"] = [dict(t) for t in fn.tolerations]
    if fn.affinity:
        pod["affinity"] = dict(fn.affinity)
    return pod


def termination_grace_s(fn: Function) -> int:
    """Kubernetes' SIGKILL deadline: the runtime's drain time (KF_GRACE_S, by default
    timeout_s + 5 s) plus a margin for shutting down."""
    return math.ceil(max(fn.grace_s, fn.timeout_s) + TERMINATION_MARGIN_S)


def container_security() -> Obj:
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container(spec: Spec, fn: Function, image: str) -> Obj:
    c: Obj = {"name": "function", "image": image}
    if fn.command is not None:
        c["command"] = list(fn.command)
    elif fn.handler is not None:
        c["command"] = ["python", "-m", "kubefuncs", fn.handler]
    if fn.args:
        c["args"] = list(fn.args)
    c["env"] = runtime_env(spec, fn) + [dict(v) for v in fn.env]
    if fn.env_from:
        c["envFrom"] = [dict(v) for v in fn.env_from]
    c["ports"] = [{"name": "health", "containerPort": HEALTH_PORT, "protocol": "TCP"}]
    c["livenessProbe"] = _probe("/healthz", period_s=10, failures=3)
    c["readinessProbe"] = _probe("/readyz", period_s=5, failures=2)
    c["resources"] = {k: dict(v) for k, v in fn.resources.items()}
    c["securityContext"] = container_security()
    c["volumeMounts"] = [{"name": "tmp", "mountPath": "/tmp"}]
    return c


def _probe(path: str, *, period_s: int, failures: int) -> Obj:
    return {
        "httpGet": {"path": path, "port": "health"},
        "periodSeconds": period_s,
        "timeoutSeconds": 2,
        "failureThreshold": failures,
    }


def runtime_env(spec: Spec, fn: Function) -> list[Obj]:
    """The KF_* variables the kubefuncs runtime reads (see client/README)."""
    env: list[Obj] = [{"name": "KF_BUS_URL", "value": spec.bus.url if spec.bus else ""}]
    env.extend(bus_password_env(spec))
    values = {
        "KF_FUNCTION_NAME": fn.name,
        "KF_TOPIC": fn.topic,
        "KF_CHANNEL": fn.channel,
        "KF_CONCURRENCY": str(fn.concurrency),
        "KF_TIMEOUT_S": number(fn.timeout_s),
        "KF_MAX_ATTEMPTS": str(fn.retry.max_attempts),
        "KF_BACKOFF_S": number(fn.retry.backoff_s),
        "KF_BACKOFF_MAX_S": number(fn.retry.backoff_max_s),
        "KF_GRACE_S": number(fn.grace_s),
        "KF_HEALTH_ADDR": f"0.0.0.0:{HEALTH_PORT}",
        "KF_LOG_LEVEL": fn.log_level,
        "KF_LOG_FORMAT": fn.log_format,
    }
    if fn.batch is not None:  # only a batch handler reads them (and refuses KF_BATCH else)
        values["KF_BATCH"] = str(fn.batch)
    if fn.batch_wait_s is not None:
        values["KF_BATCH_WAIT_S"] = number(fn.batch_wait_s)
    return env + [{"name": k, "value": v} for k, v in values.items()]


def bus_password_env(spec: Spec) -> list[Obj]:
    if spec.bus is None or spec.bus.password_secret is None:
        return []
    secret, key = spec.bus.password_secret
    return [
        {"name": "KF_BUS_PASSWORD", "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}
    ]


def number(value: float) -> str:
    """Seconds as the runtime parses them: ``30`` rather than ``30.0``."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))
