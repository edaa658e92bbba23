"""Scalers: KEDA ScaledObject + TriggerAuthentication, or an HPA on CPU (pure).

Trigger metadata keys are the ones KEDA v2.20 reads (checked against
pkg/scalers/redis_streams_scaler.go and nsq_scaler.go and the scaler docs):

* ``redis-streams``: ``address``, ``databaseIndex``, ``enableTLS``, ``stream``,
  ``consumerGroup``; with ``lagCount`` (+ ``activationLagCount``) KEDA scales on the
  consumer group's lag (XINFO GROUPS; Redis/Valkey 7+), the only mode that scales from
  zero; without ``lagCount`` it scales on ``pendingEntriesCount`` (XPENDING), which is
  what keeps replicas that are still working from being scaled away. The password comes
  from a TriggerAuthentication (``parameter: password``).
* ``redis-cluster-streams`` (a ``valkey+cluster://`` bus): the same modes, with
  ``addresses`` (every seed node, comma-separated) instead of ``address`` and no
  ``databaseIndex`` (a cluster has only database 0). Stream names carry the topic as their
  hash tag (``kf:topic:{T}``, ``kf:retry:{T}:C``), so a topic's streams share one slot.
* ``nsq``: ``nsqLookupdHTTPAddresses``, ``topic``, ``channel``, ``depthThreshold``,
  ``activationDepthThreshold``.
* ``external-push``: ``scalerAddress``; the other keys reach the gateway's scaler as
  ``scalerMetadata`` (gateway/scaler.py reads ``topic``, ``channel``, ``targetSize``).

``fallback`` (``failureThreshold``, ``replicas``) and
``advanced.horizontalPodAutoscalerConfig.behavior.scaleDown`` come from ``scaling:``
(:func:`degrading`); docs/scaling.md explains the defaults.
"""

from __future__ import annotations

from .busurl import BusTarget
from .model import DEFAULT_PREFIX, Function, Spec
from .naming import Obj, Target, labels, metadata, object_name

KEDA_API = "keda.sh/v1alpha1"


def trigger_authentication(spec: Spec, target: Target, bus: BusTarget) -> Obj | None:
    """The release's TriggerAuthentication for the bus password, when KEDA needs one."""
    if spec.bus is None or spec.bus.password_secret is None or bus.kind != "valkey":
        return None
    if not any(fn.scaling.keda for fn in spec.functions):
        return None
    secret, key = spec.bus.password_secret
    return {
        "apiVersion": KEDA_API,
        "kind": "TriggerAuthentication",
        "metadata": {
            "name": auth_name(target),
            "namespace": target.namespace,
            "labels": labels(target, "bus", "bus-auth"),
        },
        "spec": {"secretTargetRef": [{"parameter": "password", "name": secret, "key": key}]},
    }


def auth_name(target: Target) -> str:
    return object_name(target, "bus")


def scaler(spec: Spec, fn: Function, target: Target, bus: BusTarget) -> Obj:
    """The ScaledObject of ``fn``, or its HorizontalPodAutoscaler when ``keda: false``."""
    return scaled_object(spec, fn, target, bus) if fn.scaling.keda else hpa(fn, target)


def scaled_object(spec: Spec, fn: Function, target: Target, bus: BusTarget) -> Obj:
    name = object_name(target, fn.name)
    s = fn.scaling
    triggers = (
        valkey_triggers(spec, fn, target, bus) if bus.kind == "valkey" else nsq_triggers(fn, bus)
    )
    triggers += push_triggers(fn, target)
    return {
        "apiVersion": KEDA_API,
        "kind": "ScaledObject",
        "metadata": metadata(target, name, fn, "scaler"),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "pollingInterval": s.polling_s,
            "cooldownPeriod": s.cooldown_s,
            "minReplicaCount": s.min,
            "maxReplicaCount": s.max,
            **degrading(fn),
            "triggers": triggers,
        },
    }


SCALER_PORT = 9090  # the gateway chart's scaler.port


def push_triggers(fn: Function, target: Target) -> list[Obj]:
    """The ``external-push`` trigger on the gateway's scaler, when ``scaling.push``."""
    s = fn.scaling
    if not s.push:
        return []
    address = s.push_address or f"{target.release}-gateway.{target.namespace}.svc:{SCALER_PORT}"
    meta = {
        "scalerAddress": address,
        "topic": fn.topic,
        "channel": fn.channel,
        "targetSize": str(s.target),
    }
    return [{"type": "external-push", "name": "push", "metadata": meta}]


def degrading(fn: Function) -> Obj:
    """``fallback`` and the HPA's scale-down behaviour of a ScaledObject."""
    s = fn.scaling
    out: Obj = {}
    if s.fallback is not None:
        out["fallback"] = {
            "failureThreshold": s.fallback.failures,
            "replicas": s.fallback.replicas,
        }
    behavior = scale_down_behavior(fn)
    if behavior is not None:
        out["advanced"] = {"horizontalPodAutoscalerConfig": {"behavior": behavior}}
    return out


def scale_down_behavior(fn: Function) -> Obj | None:
    """An autoscaling/v2 ``behavior`` with the function's scale-down window and step."""
    down = fn.scaling.scale_down
    if down is None:
        return None
    policy = {"type": "Percent", "value": down.percent, "periodSeconds": down.period_s}
    return {"scaleDown": {"stabilizationWindowSeconds": down.stabilization_s, "policies": [policy]}}


def streams(fn: Function, prefix: str = DEFAULT_PREFIX) -> tuple[str, str]:
    """The Valkey stream of the topic and the channel's retry stream."""
    return f"{prefix}:topic:{fn.topic}", f"{prefix}:retry:{fn.topic}:{fn.channel}"


def cluster_streams(fn: Function, prefix: str = DEFAULT_PREFIX) -> tuple[str, str]:
    """The cluster's stream of the topic and the channel's retry stream (topic = hash tag)."""
    return f"{prefix}:topic:{{{fn.topic}}}", f"{prefix}:retry:{{{fn.topic}}}:{fn.channel}"


def valkey_triggers(spec: Spec, fn: Function, target: Target, bus: BusTarget) -> list[Obj]:
    if bus.cluster:
        return cluster_triggers(spec, fn, target, bus)
    connection = {"address": bus.address, "databaseIndex": str(bus.db), "consumerGroup": fn.channel}
    if bus.tls:
        connection["enableTLS"] = "true"
    lag = {"lagCount": str(fn.scaling.target), "activationLagCount": str(fn.scaling.activation)}
    # pending entries per replica = what one replica holds at once, so working replicas stay
    pending = {"pendingEntriesCount": str(fn.concurrency)}
    topic_stream, retry_stream = streams(fn, bus.prefix or DEFAULT_PREFIX)
    triggers: list[Obj] = [
        _redis("lag", {**connection, "stream": topic_stream, **lag}),
        _redis("pending", {**connection, "stream": topic_stream, **pending}),
        _redis("retry-lag", {**connection, "stream": retry_stream, **lag}),
        _redis("retry-pending", {**connection, "stream": retry_stream, **pending}),
    ]
    if spec.bus is not None and spec.bus.password_secret is not None:
        for trigger in triggers:
            trigger["authenticationRef"] = {"name": auth_name(target)}
    return triggers


def cluster_triggers(spec: Spec, fn: Function, target: Target, bus: BusTarget) -> list[Obj]:
    """``redis-cluster-streams`` triggers, in the same four modes as :func:`valkey_triggers`."""
    connection = {"addresses": ",".join(bus.nodes), "consumerGroup": fn.channel}
    if bus.tls:
        connection["enableTLS"] = "true"
    lag = {"lagCount": str(fn.scaling.target), "activationLagCount": str(fn.scaling.activation)}
    pending = {"pendingEntriesCount": str(fn.concurrency)}
    topic_stream, retry_stream = cluster_streams(fn, bus.prefix or DEFAULT_PREFIX)
    kind = "redis-cluster-streams"
    triggers: list[Obj] = [
        _redis("lag", {**connection, "stream": topic_stream, **lag}, kind),
        _redis("pending", {**connection, "stream": topic_stream, **pending}, kind),
        _redis("retry-lag", {**connection, "stream": retry_stream, **lag}, kind),
        _redis("retry-pending", {**connection, "stream": retry_stream, **pending}, kind),
    ]
    if spec.bus is not None and spec.bus.password_secret is not None:
        for trigger in triggers:
            trigger["authenticationRef"] = {"name": auth_name(target)}
    return triggers


def _redis(name: str, meta: dict[str, str], kind: str = "redis-streams") -> Obj:
    return {"type": kind, "name": name, "metadata": meta}


def nsq_triggers(fn: Function, bus: BusTarget) -> list[Obj]:
    return [
        {
            "type": "nsq",
            "name": "depth",
            "metadata": {
                "nsqLookupdHTTPAddresses": ",".join(bus.lookupd),
                "topic": bus.prefix + fn.topic,
                "channel": fn.channel,
                "depthThreshold": str(fn.scaling.target),
                "activationDepthThreshold": str(fn.scaling.activation),
            },
        }
    ]


def hpa(fn: Function, target: Target) -> Obj:
    """The ``keda: false`` alternative: an autoscaling/v2 HPA on CPU utilisation."""
    name = object_name(target, fn.name)
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(target, name, fn, "scaler"),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": fn.scaling.min,
            "maxReplicas": fn.scaling.max,
            **_behavior(fn),
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": fn.scaling.cpu_percent,
                        },
                    },
                }
            ],
        },
    }


def _behavior(fn: Function) -> Obj:
    behavior = scale_down_behavior(fn)
    return {} if behavior is None else {"behavior": behavior}
