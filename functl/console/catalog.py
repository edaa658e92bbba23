"""Where the functions come from: the cluster (deployed by functl, through the API or
``functl --apply``: the same render and apply code) or, without a cluster, a functions.yaml
read-only. Both answer plain :class:`FunctionView` rows; the calls are blocking (lightkube),
so the API runs them in a thread.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import yaml

from .. import deploy, render, spec
from ..errors import FunctlError, SpecError
from ..kube import DELETE_ORDER, Cluster, ref
from ..model import Function, Spec
from ..naming import CHANNEL_ANNOTATION, NAME, TOPIC_ANNOTATION, Target, release_selector

SPEC_ANNOTATION = "kubefuncs.io/function-spec"  # the body the API deployed, as JSON
METRICS_PORT = 8081


class NotFound(FunctlError):
    exit_code = 2


class Conflict(FunctlError):
    exit_code = 2


class ReadOnly(FunctlError):
    exit_code = 2


@dataclass(frozen=True, slots=True)
class FunctionView:
    name: str
    topic: str
    channel: str
    spec: Mapping[str, Any]  # resolved summary (summary())
    source: Mapping[str, Any] | None = None  # as written in functions.yaml / the API body
    ready: int | None = None
    desired: int | None = None
    origin: str = "file"  # file or cluster
    extra: Mapping[str, Any] = field(default_factory=dict)


class Catalog(Protocol):
    writable: bool
    mode: str

    def functions(self) -> list[FunctionView]: ...
    def deploy(
        self, body: Mapping[str, Any], *, update: bool
    ) -> tuple[FunctionView, list[str]]: ...
    def delete(self, name: str) -> list[str]: ...
    def scrape_urls(self, name: str) -> list[str]: ...


def summary(fn: Function) -> dict[str, Any]:
    """The settings a person looks for first, resolved (defaults filled in)."""
    return {
        "topic": fn.topic,
        "channel": fn.channel,
        "handler": fn.handler,
        "command": list(fn.command) if fn.command else None,
        "image": fn.image,
        "concurrency": fn.concurrency,
        "timeout_s": fn.timeout_s,
        "max_attempts": fn.retry.max_attempts,
        "scaling": {
            "keda": fn.scaling.keda,
            "min": fn.scaling.min,
            "max": fn.scaling.max,
            "target": fn.scaling.target,
        },
        "routes": [
            {
                "prefix": r.prefix,
                "methods": list(r.methods) if r.methods else None,
                "async": r.async_,
            }
            for r in fn.routes
        ],
        "schedules": [s.cron for s in fn.schedules],
    }


def _raw_functions(text: str) -> list[Any]:
    data = yaml.safe_load(text)
    found = data.get("functions") if isinstance(data, dict) else None
    return found if isinstance(found, list) else []


class FileCatalog:
    """The functions of one functions.yaml, read-only (no cluster to deploy to)."""

    writable = False
    mode = "file"

    def __init__(self, path: str) -> None:
        self.path = path

    def functions(self) -> list[FunctionView]:
        with open(self.path, encoding="utf-8") as f:
            text = f.read()
        s = spec.loads(text, self.path)
        raw = {r.get("name"): r for r in _raw_functions(text) if isinstance(r, dict)}
        return [
            FunctionView(fn.name, fn.topic, fn.channel, summary(fn), raw.get(fn.name))
            for fn in s.functions
        ]

    def deploy(self, body: Mapping[str, Any], *, update: bool) -> tuple[FunctionView, list[str]]:
        raise ReadOnly(self._why())

    def delete(self, name: str) -> list[str]:
        raise ReadOnly(self._why())

    def scrape_urls(self, name: str) -> list[str]:
        return []

    def _why(self) -> str:
        return (
            f"no cluster configured: this server shows {self.path} read-only; "
            "start functl serve with --cluster (a kubeconfig) to deploy, or edit the file"
        )


class ClusterCatalog:
    """The functions of one release in one namespace; deploys render and apply one function
    with the top-level settings (bus, defaults, image) of a base functions.yaml."""

    writable = True
    mode = "cluster"

    def __init__(self, cluster: Cluster, target: Target, base_text: str, base_file: str) -> None:
        self.cluster, self.target = cluster, target
        data = yaml.safe_load(base_text)
        self.base = {k: v for k, v in (data or {}).items() if k != "functions"}
        self.base_file = base_file
        self.known = {r.get("name"): r for r in _raw_functions(base_text) if isinstance(r, dict)}
        # the API's threads take turns on the one cluster client (and on a deploy's reads)
        self._lock = threading.RLock()

    def resolve(self, body: Mapping[str, Any]) -> Spec:
        """One function in the functions.yaml format, with the base's top-level settings;
        SpecError with functl's field paths (``functions[0].scaling.min``)."""
        document = {**self.base, "functions": [dict(body)]}
        return spec.loads(yaml.safe_dump(document, sort_keys=False), "request")

    def functions(self) -> list[FunctionView]:
        with self._lock:
            found = self.cluster.list("Deployment", release_selector(self.target.release))
        return [self._view(d) for d in found if deploy.ours(d)]

    def _view(self, d: Mapping[str, Any]) -> FunctionView:
        meta, status = d.get("metadata") or {}, d.get("status") or {}
        labels, notes = meta.get("labels") or {}, meta.get("annotations") or {}
        name = str(labels.get(NAME, meta.get("name")))
        source = _json(notes.get(SPEC_ANNOTATION)) or self.known.get(name)
        resolved = self._summary(source)
        return FunctionView(
            name,
            str(notes.get(TOPIC_ANNOTATION, resolved.get("topic", name))),
            str(notes.get(CHANNEL_ANNOTATION, resolved.get("channel", name))),
            resolved,
            source,
            int(status.get("readyReplicas") or 0),
            int((d.get("spec") or {}).get("replicas") or 0),
            "cluster",
            {"deployment": meta.get("name")},
        )

    def _summary(self, source: Mapping[str, Any] | None) -> dict[str, Any]:
        if not source:
            return {}
        try:
            return summary(self.resolve(source).functions[0])
        except FunctlError:  # deployed with another base file: show what is known
            return {}

    def deploy(self, body: Mapping[str, Any], *, update: bool) -> tuple[FunctionView, list[str]]:
        with self._lock:
            return self._deploy(body, update)

    def _deploy(self, body: Mapping[str, Any], update: bool) -> tuple[FunctionView, list[str]]:
        s = self.resolve(body)
        fn = s.functions[0]
        live = self._objects(fn.name)
        if update and not live:
            raise NotFound(f"no function {fn.name!r} in release {self.target.release}")
        if not update and live:
            raise Conflict(
                f"function {fn.name!r} is already deployed in release {self.target.release}: "
                f"update it with PUT /api/v1/functions/{fn.name}"
            )
        objects = render.render(s, self.target)
        for obj in objects:
            if obj["kind"] == "Deployment":
                obj["metadata"]["annotations"][SPEC_ANNOTATION] = json.dumps(dict(body))
        changes = deploy.apply_all(self.cluster, objects, release=self.target.release, prune=False)
        for obj in deploy.prunable(live, objects):  # e.g. a schedule the update removed
            self.cluster.delete(*deploy.key(obj))
            changes.append(deploy.Change(f"{obj['kind']}/{obj['metadata']['name']}", "deleted"))
        view = next(v for v in self.functions() if v.name == fn.name)
        return view, [str(c) for c in changes]

    def delete(self, name: str) -> list[str]:
        with self._lock:
            return self._delete(name)

    def _delete(self, name: str) -> list[str]:
        live = self._objects(name)
        if not live:
            raise NotFound(f"no function {name!r} in release {self.target.release}")
        gone = sorted(live, key=lambda o: DELETE_ORDER.index(str(o["kind"])))
        lines = [
            f"{o['kind']}/{o['metadata']['name']} "
            + ("deleted" if self.cluster.delete(*deploy.key(o)) else "gone")
            for o in gone
        ]
        refs = {ref(o) for o in gone}  # their routes leave the gateway's (gwroutes.py)
        routes = deploy.sync_routes(self.cluster, self.target.release, [], refs)
        return lines + [str(c) for c in routes]

    def _objects(self, name: str) -> list[dict[str, Any]]:
        selector = {**release_selector(self.target.release), NAME: name}
        return [
            o for kind in DELETE_ORDER for o in self.cluster.list(kind, selector) if deploy.ours(o)
        ]

    def scrape_urls(self, name: str) -> list[str]:
        from lightkube.resources.core_v1 import Pod

        selector: dict[str, Any] = {**release_selector(self.target.release), NAME: name}
        with self._lock:
            found = self.cluster.client.list(Pod, namespace=self.target.namespace, labels=selector)
            pods = list(found)
        ips = [p.status.podIP for p in pods if p.status is not None and p.status.podIP]
        return [f"http://{ip}:{METRICS_PORT}/metrics" for ip in ips]


def _json(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        return None
    return parsed if isinstance(parsed, dict) else None


__all__ = ["Catalog", "ClusterCatalog", "FileCatalog", "FunctionView", "SpecError"]
