"""The resolved functions.yaml: frozen dataclasses with every default filled in.

Build them with :func:`kubefuncs.functl.spec.load`; rendering and the bus commands read
only these types, never the raw YAML.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

HEALTH_PORT = 8081
DEFAULT_PREFIX = "kf"


@dataclass(frozen=True, slots=True)
class Retry:
    max_attempts: int
    backoff_s: float
    backoff_max_s: float


@dataclass(frozen=True, slots=True)
class Fallback:
    """KEDA ``fallback``: replicas kept while the scaler cannot read the bus."""

    failures: int  # consecutive failed reads before the fallback applies
    replicas: int


@dataclass(frozen=True, slots=True)
class ScaleDown:
    """The HPA's scale-down behaviour: a stabilisation window and a step."""

    stabilization_s: int  # the highest recommendation of this window is used
    percent: int  # at most this share of the replicas is removed ...
    period_s: int  # ... per this many seconds


@dataclass(frozen=True, slots=True)
class Scaling:
    keda: bool
    min: int
    max: int
    target: int  # waiting messages per replica
    activation: int
    cooldown_s: int
    polling_s: int
    cpu_percent: int
    push: bool = False  # an external-push trigger on the gateway's scaler (wake at once)
    push_address: str | None = None  # host:port; None: <release>-gateway.<namespace>.svc:9090
    fallback: Fallback | None = None  # None: no fallback
    scale_down: ScaleDown | None = None  # None: Kubernetes' default behaviour


@dataclass(frozen=True, slots=True)
class Schedule:
    name: str
    cron: str
    timezone: str | None
    payload: Any


@dataclass(frozen=True, slots=True)
class Network:
    """The function's NetworkPolicy settings (``network:``)."""

    policy: bool
    metrics_from: tuple[Mapping[str, Mapping[str, str]], ...]  # {namespaceSelector, podSelector}
    egress: tuple[Mapping[str, Any], ...]  # {cidr, except, ports: [{port, protocol}]}


@dataclass(frozen=True, slots=True)
class Route:
    prefix: str
    methods: tuple[str, ...] | None  # None: any method
    timeout_s: float
    async_: bool
    auth: Any
    cors: Any
    rate_limit: Any
    middleware: tuple[str, ...] = ()  # module:function names, for the gateway
    idempotency: Any = None
    cold_start_timeout_s: float | None = None  # None: timeout_s also when at zero replicas


@dataclass(frozen=True, slots=True)
class Source:
    """``source:``: the function's code, shipped in a ConfigMap (functl/source.py)."""

    path: str  # absolute: a file or a directory
    runtime: str  # python | node
    requirements: tuple[str, ...] = ()  # Python requirement lines
    index_url: str | None = None  # None: PyPI / the npm registry
    install_image: str | None = None  # None: source.PYTHON_INSTALL_IMAGE / NODE_INSTALL_IMAGE


@dataclass(frozen=True, slots=True)
class Function:
    name: str
    topic: str
    channel: str
    handler: str | None
    command: tuple[str, ...] | None
    args: tuple[str, ...]
    image: str | None  # None: the release image
    concurrency: int
    timeout_s: float
    grace_s: float
    retry: Retry
    scaling: Scaling
    resources: Mapping[str, Any]
    env: tuple[Mapping[str, Any], ...]  # Kubernetes EnvVar objects
    env_from: tuple[Mapping[str, Any], ...]  # Kubernetes EnvFromSource objects
    node_selector: Mapping[str, str]
    tolerations: tuple[Mapping[str, Any], ...]
    affinity: Mapping[str, Any] | None
    service_account: str | None
    run_as_user: int
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    log_level: str
    log_format: str
    network: Network
    schedules: tuple[Schedule, ...]
    routes: tuple[Route, ...]
    source: Source | None = None
    expires_at: str | None = None  # RFC 3339 UTC (ttl: resolved at render), functl gc's cue
    batch: int | None = None  # a batch handler's most messages per call (KF_BATCH)
    batch_wait_s: float | None = None  # KF_BATCH_WAIT_S


@dataclass(frozen=True, slots=True)
class Bus:
    url: str
    password_secret: tuple[str, str] | None  # (Secret name, key)


@dataclass(frozen=True, slots=True)
class Spec:
    """A whole functions.yaml. ``routes()`` is the gateway's view of it."""

    file: str
    image: str | None
    bus: Bus | None
    functions: tuple[Function, ...]

    def function(self, name: str) -> Function:
        """The function called ``name``; KeyError when there is none."""
        for fn in self.functions:
            if fn.name == name:
                return fn
        raise KeyError(name)

    def routes(self) -> list[dict[str, Any]]:
        """Every HTTP route, in file order, as plain dicts with exactly the keys
        ``prefix, topic, methods, timeout_s, async, auth, cors, rate_limit, middleware,
        idempotency, cold_start_timeout_s``."""
        return [
            {
                "prefix": r.prefix,
                "topic": fn.topic,
                "methods": list(r.methods) if r.methods is not None else None,
                "timeout_s": r.timeout_s,
                "async": r.async_,
                "auth": r.auth,
                "cors": r.cors,
                "rate_limit": r.rate_limit,
                "middleware": list(r.middleware) or None,
                "idempotency": r.idempotency,
                "cold_start_timeout_s": r.cold_start_timeout_s,
            }
            for fn in self.functions
            for r in fn.routes
        ]
