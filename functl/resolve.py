"""Turn schema-valid functions.yaml data into a :class:`Spec` (pure).

Settings resolve built-in default <- ``defaults:`` <- the function's own value. Mappings
(retry, scaling, resources, nodeSelector, labels, annotations, log) merge key by key;
``env`` merges by variable name; ``envFrom`` and ``secrets`` are appended; every other
list replaces. Checks the schema cannot express (unique names, min <= max, ...) are made
here and reported as :class:`Issue` with the line of the field at fault.
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Mapping
from typing import Any

from . import expiry, netpol, resolve_source
from .errors import Issue
from .model import (
    Bus,
    Function,
    Network,
    Retry,
    Route,
    Scaling,
    Schedule,
    Spec,
)
from .resolve_scaling import fallback, scale_down
from .yamlmarks import Marked, Path, format_path

BUILTIN: dict[str, Any] = {
    "concurrency": 1,
    "timeout_s": 30,
    "retry": {"max_attempts": 5, "backoff_s": 1, "backoff_max_s": 60},
    "scaling": {
        "keda": True,
        "max": 10,
        "target": 10,
        "activation": 0,
        "cooldown_s": 300,
        "polling_s": 15,
        "cpu_percent": 80,
    },
    "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
    "run_as_user": 10001,
    "log": {"level": "INFO", "format": "json"},
    "network": {"policy": True, "metrics_from": [{"podSelector": {}}], "egress": []},
}
_MERGED = ("retry", "scaling", "nodeSelector", "labels", "annotations", "log", "network")
_APPENDED = ("envFrom", "secrets")
GRACE_MARGIN_S = 5.0

# set by the renderer; a user value would silently break the runtime contract
RESERVED_ENV = frozenset(
    {
        "KF_BUS_URL",
        "KF_BUS_PASSWORD",
        "KF_FUNCTION_NAME",
        "KF_TOPIC",
        "KF_CHANNEL",
        "KF_CONCURRENCY",
        "KF_TIMEOUT_S",
        "KF_MAX_ATTEMPTS",
        "KF_BACKOFF_S",
        "KF_BACKOFF_MAX_S",
        "KF_GRACE_S",
        "KF_HEALTH_ADDR",
        "KF_LOG_LEVEL",
        "KF_LOG_FORMAT",
        "KF_SOURCE_DIR",
        "KF_DEPS_DIR",
        "KF_BATCH",
        "KF_BATCH_WAIT_S",
    }
)


class Resolver:
    """Resolves one document; collects issues instead of stopping at the first."""

    def __init__(self, marked: Marked, file: str) -> None:
        self.marked = marked
        self.file = file
        self.data: dict[str, Any] = marked.data
        self.defaults: dict[str, Any] = self.data.get("defaults") or {}
        self.issues: list[Issue] = []

    def issue(self, path: Path, problem: str, hint: str = "") -> None:
        self.issues.append(
            Issue(self.file, self.marked.line(path), format_path(path), problem, hint)
        )

    def spec(self) -> Spec:
        raw = self.data["functions"]
        functions = tuple(self.function(i, fn) for i, fn in enumerate(raw))
        self.check_unique(functions)
        return Spec(
            file=self.file,
            image=self.data.get("image"),
            bus=_bus(self.data.get("bus")),
            functions=functions,
        )

    # -- one function ------------------------------------------------------------------

    def setting(self, raw: Mapping[str, Any], key: str) -> Any:
        own, default, builtin = raw.get(key), self.defaults.get(key), BUILTIN.get(key)
        if key in _MERGED:
            return {**(builtin or {}), **(default or {}), **(own or {})}
        if key in _APPENDED:
            return [*(default or []), *(own or [])]
        if key == "env":
            return _merge_env(_env_list(default), _env_list(own))
        return own if own is not None else default if default is not None else builtin

    def where(self, i: int, raw: Mapping[str, Any], *keys: str) -> Path:
        """Path of a resolved value: the function's own field, else the defaults'."""
        node: Any = raw
        for key in keys:
            if not isinstance(node, Mapping) or key not in node:
                return ("defaults", *keys)
            node = node[key]
        return ("functions", i, *keys)

    def function(self, i: int, raw: Mapping[str, Any]) -> Function:
        s = {key: self.setting(raw, key) for key in _SETTING_KEYS}
        timeout_s = float(s["timeout_s"])
        self.check_entrypoint(i, raw)
        env = tuple(s["env"]) + tuple(_secret_env(x) for x in s["secrets"] if isinstance(x, dict))
        self.check_env(i, raw, env)
        self.check_hpa(i, raw, s)
        return Function(
            name=raw["name"],
            topic=raw["topic"],
            channel=raw.get("channel") or raw["name"],
            handler=raw.get("handler"),
            command=tuple(raw["command"]) if "command" in raw else None,
            args=tuple(raw.get("args") or ()),
            image=raw.get("image") or self.defaults.get("image"),
            concurrency=int(s["concurrency"]),
            timeout_s=timeout_s,
            grace_s=float(s["grace_s"]) if s["grace_s"] is not None else timeout_s + GRACE_MARGIN_S,
            retry=self.retry(i, raw, s["retry"]),
            scaling=self.scaling(i, raw, s["scaling"], bool(raw.get("routes"))),
            resources=s["resources"],
            env=env,
            env_from=tuple(s["envFrom"])
            + tuple(_secret_from(x) for x in s["secrets"] if isinstance(x, str)),
            node_selector=s["nodeSelector"],
            tolerations=tuple(s["tolerations"] or ()),
            affinity=s["affinity"],
            service_account=s["serviceAccountName"],
            run_as_user=int(s["run_as_user"]),
            labels=s["labels"],
            annotations=s["annotations"],
            log_level=s["log"]["level"],
            log_format=s["log"]["format"],
            network=self.network(i, raw, s["network"]),
            schedules=self.schedules(i, raw.get("schedule")),
            routes=self.routes(i, raw.get("routes"), timeout_s),
            source=resolve_source.resolve(self.file, i, raw, self.defaults, self.issue),
            expires_at=expiry.resolve(i, raw, self.issue),
            batch=raw.get("batch"),
            batch_wait_s=raw.get("batch_wait_s"),
        )

    def check_entrypoint(self, i: int, raw: Mapping[str, Any]) -> None:
        if "handler" in raw and "command" in raw:
            self.issue(
                ("functions", i, "command"),
                "set either handler: or command:, not both",
                "handler: runs `python -m kubefuncs module:function`; "
                "command: runs your own entrypoint",
            )
        elif not ({"handler", "command", "image"} & set(raw)):
            self.issue(
                ("functions", i),
                f"function {raw['name']!r} has no handler:, command: or image:",
                "add handler: module:function (Python), or image:/command: for another language",
            )

    def check_env(self, i: int, raw: Mapping[str, Any], env: tuple[Mapping[str, Any], ...]) -> None:
        for var in env:
            if var["name"] in RESERVED_ENV:
                self.issue(
                    self.where(i, raw, "env"),
                    f"environment variable {var['name']} is set by functl",
                    "use the matching functions.yaml field (timeout_s, retry, log, ...) instead",
                )

    def check_hpa(self, i: int, raw: Mapping[str, Any], s: Mapping[str, Any]) -> None:
        if not s["scaling"]["keda"] and "cpu" not in (s["resources"].get("requests") or {}):
            self.issue(
                self.where(i, raw, "resources"),
                "scaling.keda: false scales on CPU use, which needs a CPU request",
                "set resources.requests.cpu (for example 100m)",
            )

    def retry(self, i: int, raw: Mapping[str, Any], r: Mapping[str, Any]) -> Retry:
        retry = Retry(int(r["max_attempts"]), float(r["backoff_s"]), float(r["backoff_max_s"]))
        if retry.backoff_max_s < retry.backoff_s:
            self.issue(
                self.where(i, raw, "retry", "backoff_max_s"),
                f"backoff_max_s ({retry.backoff_max_s:g}) is below backoff_s ({retry.backoff_s:g})",
                "make backoff_max_s at least backoff_s",
            )
        return retry

    def scaling(
        self, i: int, raw: Mapping[str, Any], s: Mapping[str, Any], routed: bool = False
    ) -> Scaling:
        keda = bool(s["keda"])
        low = s.get("min", 0 if keda else 1)
        if not keda and low == 0:
            self.issue(
                self.where(i, raw, "scaling", "min"),
                "scaling.min 0 needs KEDA (keda: true)",
                "a HorizontalPodAutoscaler cannot scale to zero: set min: 1 or keda: true",
            )
        if low > s["max"]:
            self.issue(
                self.where(i, raw, "scaling", "max"),
                f"scaling.max ({s['max']}) is below scaling.min ({low})",
                "make max at least min",
            )
        return Scaling(
            keda,
            int(low),
            int(s["max"]),
            int(s["target"]),
            int(s["activation"]),
            int(s["cooldown_s"]),
            int(s["polling_s"]),
            int(s["cpu_percent"]),
            push=bool(s.get("push", keda and low == 0 and routed)),
            push_address=s.get("push_address"),
            fallback=fallback(s.get("fallback"), int(low)),
            scale_down=scale_down(s.get("scale_down")),
        )

    def network(self, i: int, raw: Mapping[str, Any], n: Mapping[str, Any]) -> Network:
        for rel, problem, hint in netpol.check(n):
            self.issue((*self.where(i, raw, "network", str(rel[0])), *rel[1:]), problem, hint)
        return Network(bool(n["policy"]), tuple(n["metrics_from"]), tuple(n["egress"]))

    def schedules(self, i: int, raw: Any) -> tuple[Schedule, ...]:
        items = [] if raw is None else raw if isinstance(raw, list) else [raw]
        out: list[Schedule] = []
        for j, item in enumerate(items):
            path: Path = (
                ("functions", i, "schedule", j)
                if isinstance(raw, list)
                else ("functions", i, "schedule")
            )
            name = item.get("name") or (f"cron{j}" if len(items) > 1 else "cron")
            tz = item.get("timezone")
            if tz is not None and not _known_zone(tz):
                self.issue(
                    (*path, "timezone"),
                    f"unknown time zone {tz!r}",
                    "use an IANA name such as Europe/Berlin or UTC",
                )
            if name in {s.name for s in out}:
                self.issue(
                    (*path, "name"),
                    f"schedule name {name!r} is used twice",
                    "give each schedule its own name:",
                )
            out.append(Schedule(name, item["cron"], tz, item.get("payload")))
        return tuple(out)

    def routes(self, i: int, raw: Any, timeout_s: float) -> tuple[Route, ...]:
        items = [] if raw is None else [raw] if isinstance(raw, str) else raw
        return tuple(_route(item, timeout_s) for item in items)

    # -- whole file --------------------------------------------------------------------

    def check_unique(self, functions: tuple[Function, ...]) -> None:
        seen: dict[Any, int] = {}
        for i, fn in enumerate(functions):
            for key, what, field in (
                (("name", fn.name), f"function name {fn.name!r}", "name"),
                (
                    ("consumer", fn.topic, fn.channel),
                    f"topic {fn.topic!r} with channel {fn.channel!r}",
                    "channel",
                ),
            ):
                if key in seen:
                    self.issue(
                        ("functions", i, field),
                        f"{what} is already used by functions[{seen[key]}]",
                        "two functions in one channel would take each other's messages: rename one",
                    )
                seen.setdefault(key, i)
            for j, route in enumerate(fn.routes):
                key = ("route", route.prefix)
                if key in seen:
                    self.issue(
                        ("functions", i, "routes", j),
                        f"route {route.prefix!r} is already used by functions[{seen[key]}]",
                        "every path prefix may lead to one function only",
                    )
                seen.setdefault(key, i)


_SETTING_KEYS = (
    "concurrency",
    "timeout_s",
    "grace_s",
    "retry",
    "scaling",
    "resources",
    "env",
    "envFrom",
    "secrets",
    "nodeSelector",
    "tolerations",
    "affinity",
    "serviceAccountName",
    "run_as_user",
    "labels",
    "annotations",
    "log",
    "network",
)


def _bus(raw: Mapping[str, Any] | None) -> Bus | None:
    if raw is None:
        return None
    secret = raw.get("password_secret")
    return Bus(raw["url"], (secret["name"], secret["key"]) if secret else None)


def _env_list(raw: Any) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if isinstance(raw, list):
        return [dict(v) for v in raw]
    return [{"name": k, "value": _env_value(v)} for k, v in raw.items()]


def _env_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _merge_env(base: list[dict[str, Any]], own: list[dict[str, Any]]) -> list[dict[str, Any]]:
    names = {v["name"] for v in own}
    return [v for v in base if v["name"] not in names] + own


def _secret_env(item: Mapping[str, Any]) -> dict[str, Any]:
    ref: dict[str, Any] = {"name": item["secret"], "key": item["key"]}
    if "optional" in item:
        ref["optional"] = item["optional"]
    return {"name": item["env"], "valueFrom": {"secretKeyRef": ref}}


def _secret_from(name: str) -> dict[str, Any]:
    return {"secretRef": {"name": name}}


def _route(item: Any, timeout_s: float) -> Route:
    if isinstance(item, str):
        return Route(item, None, timeout_s, False, None, None, None)
    methods = item.get("methods")
    return Route(
        prefix=item["path"],
        methods=tuple(methods) if methods else None,
        timeout_s=float(item.get("timeout_s", timeout_s)),
        async_=bool(item.get("async", False)),
        auth=item.get("auth"),
        cors=item.get("cors"),
        rate_limit=item.get("rate_limit"),
        middleware=tuple(item.get("middleware") or ()),
        idempotency=item.get("idempotency"),
        cold_start_timeout_s=item.get("cold_start_timeout_s"),
    )


def _known_zone(name: str) -> bool:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True
