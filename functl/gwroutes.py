"""The release's routes ConfigMap: how the gateway learns the routes functl deploys (pure).

Every function Deployment with routes carries them in the ``kubefuncs.io/routes``
annotation (JSON, in routes-file form: ``{prefix: {topic, methods, ...}}``). After each
apply, deploy, delete and gc, functl rebuilds ``<release>-routes`` (key ``routes.yaml``, a
gateway routes file) from the release's live Deployments and applies it. The gateway chart
mounts that ConfigMap as a directory and the gateway re-reads the file when it changes
(``KF_GATEWAY_FUNCTION_ROUTES``, ``KF_GATEWAY_ROUTES_RELOAD_S``): no restart, no rollout.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

import yaml

from .errors import UsageError
from .model import Function, Spec
from .naming import MANAGED_BY, MANAGER, NAME, PART_OF, Obj, Target, object_name

ROUTES_ANNOTATION = "kubefuncs.io/routes"
ROUTES_KEY = "routes.yaml"
COMPONENT_ROUTES = "routes"


def function_routes(spec: Spec, fn: Function) -> dict[str, dict[str, Any]]:
    """``fn``'s routes as a routes file's ``routes:`` (options left unset are omitted)."""
    one = replace(spec, functions=(fn,))
    return {
        r["prefix"]: {k: v for k, v in r.items() if k != "prefix" and v is not None}
        for r in one.routes()
    }


def annotation(spec: Spec, fn: Function) -> dict[str, str]:
    """The Deployment annotation carrying ``fn``'s routes ({} for a function without)."""
    routes = function_routes(spec, fn)
    return {ROUTES_ANNOTATION: json.dumps(routes, sort_keys=True)} if routes else {}


def routes_of(deployment: Mapping[str, Any]) -> dict[str, Any]:
    """The routes a live Deployment's annotation declares ({} when none or unreadable)."""
    text = ((deployment.get("metadata") or {}).get("annotations") or {}).get(ROUTES_ANNOTATION)
    try:
        routes = json.loads(text) if text else {}
    except ValueError:
        return {}
    return routes if isinstance(routes, dict) else {}


def function_name(deployment: Mapping[str, Any]) -> str:
    meta = deployment.get("metadata") or {}
    return str((meta.get("labels") or {}).get(NAME) or meta.get("name"))


def table(deployments: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """The routes of every Deployment, by function name (a prefix taken twice: the first)."""
    out: dict[str, Any] = {}
    for d in sorted(deployments, key=function_name):
        for prefix, options in routes_of(d).items():
            out.setdefault(prefix, options)
    return out


def check_free(desired: Iterable[Mapping[str, Any]], live: Iterable[Mapping[str, Any]]) -> None:
    """UsageError when a Deployment to apply routes a prefix another function of the
    release already routes (the gateway would have to pick one)."""
    owner = {p: function_name(d) for d in live for p in routes_of(d)}
    for d in desired:
        name = function_name(d)
        for prefix in routes_of(d):
            other = owner.get(prefix)
            if other is not None and other != name:
                raise UsageError(
                    f"route {prefix} of function {name} is already the route of function "
                    f"{other} in this release: pick another path, or delete {other} first"
                )


def configmap(release: str, namespace: str | None, routes: Mapping[str, Any]) -> Obj:
    """``<release>-routes``: the routes file the gateway re-reads."""
    meta: Obj = {
        "name": object_name(Target(namespace or "default", release), COMPONENT_ROUTES),
        "labels": {
            "app.kubernetes.io/instance": release,
            "app.kubernetes.io/component": COMPONENT_ROUTES,
            "app.kubernetes.io/part-of": PART_OF,
            MANAGED_BY: MANAGER,
        },
    }
    if namespace:
        meta["namespace"] = namespace
    text = yaml.safe_dump({"routes": dict(routes)}, sort_keys=True)
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {ROUTES_KEY: text}}
