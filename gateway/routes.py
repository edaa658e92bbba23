"""Routes: which path prefix leads to which topic, and how (pure).

A routes file is YAML, either the kubefuncs style (a mapping of path prefix to topic)::

    /test/: test

or with per-route options and the topics ``POST /topics/{topic}`` may publish to::

    routes:
      /test/: test
      /orders/: {topic: orders, methods: [POST], timeout_s: 5, async: true,
                 auth: api_key, cors: true, rate_limit: {rate: 10, burst: 20},
                 idempotency: {ttl_s: 86400}, cold_start_timeout_s: 60}
      /feed/: {topic: feed, auth: {type: jwt, require_exp: false}}
      /audit/: {topic: audit, middleware: [myco.audit:log_request]}
    publish: {topics: [orders], auth: api_key}

:func:`from_dicts` takes the route dicts of ``kubefuncs.functl.spec.Spec.routes()``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubefuncs.errors import ConfigError
from kubefuncs.transport import valid_name

from . import middleware
from .auth import ANY, parse_auth
from .cors import CorsPolicy, parse_cors
from .idempotency import Idempotency, parse_idempotency
from .middleware import Middleware
from .ratelimit import RateLimit, parse_rate_limit

RESERVED = ("/healthz", "/readyz", "/metrics", "/topics", "/calls")
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
ROUTE_KEYS = frozenset(
    {
        "topic",
        "methods",
        "timeout_s",
        "async",
        "auth",
        "cors",
        "rate_limit",
        "middleware",
        "idempotency",
        "cold_start_timeout_s",
    }
)


@dataclass(frozen=True, slots=True)
class Route:
    prefix: str  # as written (the metrics label)
    topic: str
    methods: frozenset[str] | None = None  # None: any method
    timeout_s: float = 30.0
    async_: bool = False
    auth: str = "none"
    cors: CorsPolicy | None = None
    rate_limit: RateLimit | None = None
    require_exp: bool = True  # a JWT must carry exp (auth: {type: jwt, require_exp: false})
    middleware: tuple[Middleware, ...] = ()  # the first outermost (gateway/middleware.py)
    idempotency: Idempotency | None = None  # honour Idempotency-Key (idempotency.py)
    # how long a request waits when no consumer of the topic runs (presence.py); None: timeout_s
    cold_start_timeout_s: float | None = None

    @property
    def base(self) -> str:
        """The prefix without its trailing slash: ``/test/`` serves ``/test`` and ``/test/x``."""
        return self.prefix.rstrip("/")

    def allows(self, method: str) -> bool:
        return self.methods is None or method in self.methods

    def allow_header(self) -> str:
        methods = set(self.methods or METHODS)
        if self.cors is not None:
            methods.add("OPTIONS")
        return ", ".join(sorted(methods))


@dataclass(frozen=True, slots=True)
class Publish:
    """What ``POST /topics/{topic}`` may do."""

    topics: frozenset[str] = frozenset()
    auth: str = ANY
    require_exp: bool = True


@dataclass(frozen=True, slots=True)
class RouteTable:
    routes: tuple[Route, ...] = ()  # longest prefix first
    publish: Publish = Publish()

    def match(self, path: str) -> Route | None:
        """The route with the longest prefix covering ``path`` (whole segments only)."""
        for route in self.routes:
            base = route.base
            if path.startswith(base) and (len(path) == len(base) or path[len(base)] == "/"):
                return route
        return None


def table(routes: Iterable[Route], publish: Publish | None = None) -> RouteTable:
    ordered = sorted(routes, key=lambda r: len(r.base), reverse=True)
    seen: dict[str, str] = {}
    for r in ordered:
        if r.base in seen:
            raise ConfigError(f"route {r.prefix!r}", f"duplicates route {seen[r.base]!r}")
        seen[r.base] = r.prefix
    return RouteTable(tuple(ordered), publish or Publish())


def load(path: str | Path, default_timeout_s: float = 30.0) -> RouteTable:
    """Read a routes file; ConfigError names the file and the field at fault."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError("KF_GATEWAY_ROUTES", f"cannot read {name!r}: {e.strerror}") from e
    return loads(text, name, default_timeout_s)


def loads(text: str, file: str = "routes.yaml", default_timeout_s: float = 30.0) -> RouteTable:
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(file, f"is not valid YAML: {e}") from e
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ConfigError(file, "must be a mapping of path prefix to topic, or have routes:")
    if all(isinstance(k, str) and k.startswith("/") for k in doc):
        doc = {"routes": doc}
    unknown = set(doc) - {"routes", "publish"}
    if unknown:
        raise ConfigError(file, f"has unknown keys {sorted(unknown)} (expected routes:, publish:)")
    raw_routes = doc.get("routes") or {}
    if not isinstance(raw_routes, dict):
        raise ConfigError(f"{file}: routes", "must be a mapping of path prefix to topic")
    routes = [
        parse_route(prefix, value, f"{file}: routes.{prefix}", default_timeout_s)
        for prefix, value in raw_routes.items()
    ]
    return table(routes, parse_publish(doc.get("publish"), f"{file}: publish"))


def parse_route(prefix: Any, value: Any, where: str, default_timeout_s: float) -> Route:
    """One route from ``prefix: topic`` or ``prefix: {topic:, methods:, ...}``."""
    if isinstance(value, str):
        value = {"topic": value}
    if not isinstance(value, Mapping):
        raise ConfigError(where, f"must be a topic name or a mapping, got {value!r}")
    unknown = set(value) - ROUTE_KEYS
    if unknown:
        raise ConfigError(where, f"has unknown keys {sorted(unknown)}")
    auth = parse_auth(value.get("auth"), f"{where}.auth")
    return Route(
        prefix=_prefix(prefix, where),
        topic=_topic(value.get("topic"), f"{where}.topic"),
        methods=_methods(value.get("methods"), f"{where}.methods"),
        timeout_s=_timeout(value.get("timeout_s"), f"{where}.timeout_s", default_timeout_s),
        async_=_flag(value.get("async", False), f"{where}.async"),
        auth=auth.policy,
        cors=parse_cors(value.get("cors"), f"{where}.cors"),
        rate_limit=parse_rate_limit(value.get("rate_limit"), f"{where}.rate_limit"),
        require_exp=auth.require_exp,
        middleware=middleware.parse(value.get("middleware"), f"{where}.middleware"),
        idempotency=parse_idempotency(value.get("idempotency"), f"{where}.idempotency"),
        cold_start_timeout_s=_cold_start(value.get("cold_start_timeout_s"), where),
    )


def from_dicts(
    items: Iterable[Mapping[str, Any]],
    default_timeout_s: float = 30.0,
    publish: Publish | None = None,
    *,
    file: str = "functions.yaml",
) -> RouteTable:
    """A table from ``Spec.routes()`` dicts (keys prefix, topic, methods, timeout_s, async,
    auth, cors, rate_limit, middleware, idempotency, cold_start_timeout_s)."""
    routes = []
    for item in items:
        prefix = item.get("prefix")
        options = {k: v for k, v in item.items() if k != "prefix" and v is not None}
        routes.append(parse_route(prefix, options, f"{file}: route {prefix}", default_timeout_s))
    return table(routes, publish)


def parse_publish(value: Any, where: str) -> Publish:
    if value is None:
        return Publish()
    if not isinstance(value, dict) or set(value) - {"topics", "auth"}:
        raise ConfigError(where, "must be a mapping with topics: [...] and auth:")
    topics = value.get("topics") or []
    if not isinstance(topics, list):
        raise ConfigError(f"{where}.topics", "must be a list of topic names")
    auth = parse_auth(value.get("auth", ANY), f"{where}.auth")
    return Publish(
        frozenset(_topic(t, f"{where}.topics") for t in topics), auth.policy, auth.require_exp
    )


def _prefix(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.startswith("/") or any(c in value for c in " ?#"):
        raise ConfigError(where, "must be a URL path prefix starting with '/', such as /test/")
    base = value.rstrip("/")
    for reserved in RESERVED:
        if base == reserved or base.startswith(reserved + "/"):
            raise ConfigError(where, f"is under {reserved}, which the gateway serves itself")
    return value


def _topic(value: Any, where: str) -> str:
    if not isinstance(value, str) or not valid_name(value):
        raise ConfigError(where, f"must be a topic name (1-64 of A-Z a-z 0-9 . _ -), got {value!r}")
    return value


def _methods(value: Any, where: str) -> frozenset[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        raise ConfigError(where, f"must be a non-empty list of HTTP methods, got {value!r}")
    methods = frozenset(str(m).upper() for m in value)
    bad = methods - METHODS
    if bad:
        raise ConfigError(where, f"has unknown methods {sorted(bad)}")
    return methods


def _timeout(value: Any, where: str, default: float) -> float:
    if value is None:
        return default
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
        raise ConfigError(where, f"must be a number of seconds > 0, got {value!r}")
    return float(value)


def _cold_start(value: Any, where: str) -> float | None:
    if value is None:
        return None
    return _timeout(value, f"{where}.cold_start_timeout_s", 0.0)


def _flag(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(where, f"must be true or false, got {value!r}")
    return value
