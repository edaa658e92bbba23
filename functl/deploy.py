"""Apply, prune, diff and delete a release; decisions are pure, I/O goes through Cluster.

Apply is server-side apply with field manager ``functl``: re-applying the same objects
changes nothing. Prune deletes objects that carry this release's labels
(``app.kubernetes.io/instance=<release>``, ``app.kubernetes.io/managed-by=functl``) but are
no longer rendered, e.g. a function removed from functions.yaml.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from . import gwroutes
from .kube import DELETE_ORDER, KINDS, Obj, ref
from .naming import (
    CHANNEL_ANNOTATION,
    COMPONENT,
    INSTANCE,
    MANAGED_BY,
    MANAGER,
    NAME,
    TOPIC_ANNOTATION,
    release_selector,
)
from .output import to_yaml

VOLATILE_METADATA = (
    "managedFields",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "uid",
    "selfLink",
)
SERVER_ANNOTATIONS = ("deployment.kubernetes.io/revision",)
KEDA_HPA_LABEL = "scaledobject.keda.sh/name"


class ClusterLike(Protocol):
    def get(self, kind: str, name: str) -> Obj | None: ...
    def apply(
        self, obj: Mapping[str, Any], *, dry_run: bool = False, force: bool = False
    ) -> Obj: ...
    def list(self, kind: str, selector: Mapping[str, str]) -> list[Obj]: ...
    def delete(self, kind: str, name: str, *, dry_run: bool = False) -> bool: ...
    def pod_logs(self, selector: Mapping[str, str], tail_lines: int) -> str: ...


@dataclass(frozen=True, slots=True)
class Change:
    """What happened (or would happen) to one object."""

    ref: str  # deployment.apps/name
    action: str  # created, configured, unchanged, deleted, gone
    dry_run: bool = False

    def __str__(self) -> str:
        return f"{self.ref} {self.action}{' (dry run)' if self.dry_run else ''}"


Progress = Callable[[Change], None]


# -- pure decisions --------------------------------------------------------------------


def comparable(obj: Mapping[str, Any] | None) -> Obj:
    """``obj`` without status and the metadata the server maintains."""
    if obj is None:
        return {}
    out = {k: v for k, v in obj.items() if k != "status"}
    meta = {k: v for k, v in dict(out.get("metadata") or {}).items() if k not in VOLATILE_METADATA}
    annotations = {
        k: v for k, v in (meta.get("annotations") or {}).items() if k not in SERVER_ANNOTATIONS
    }
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)
    out["metadata"] = meta
    return out


def classify(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> str:
    if before is None:
        return "created"
    return "unchanged" if comparable(before) == comparable(after) else "configured"


def key(obj: Mapping[str, Any]) -> tuple[str, str]:
    return str(obj["kind"]), str(obj["metadata"]["name"])


def prunable(live: Iterable[Mapping[str, Any]], desired: Iterable[Mapping[str, Any]]) -> list[Obj]:
    """Live objects of the release that are not rendered any more, in deletion order."""
    wanted = {key(o) for o in desired}
    gone = [dict(o) for o in live if key(o) not in wanted and ours(o)]
    return sorted(gone, key=lambda o: (DELETE_ORDER.index(str(o["kind"])), o["metadata"]["name"]))


def ours(obj: Mapping[str, Any]) -> bool:
    """Applied by functl: our labels, functl among the field managers, and not one of the
    HPAs KEDA generates (KEDA copies the ScaledObject's labels onto them); of ConfigMaps
    only the source ones (``app.kubernetes.io/component: source``)."""
    meta = obj.get("metadata") or {}
    labels = meta.get("labels") or {}
    if labels.get(MANAGED_BY) != MANAGER or KEDA_HPA_LABEL in labels:
        return False
    if obj.get("kind") == "ConfigMap" and labels.get(COMPONENT) != "source":
        return False  # only source functions' ConfigMaps are functl's to prune
    managers = {m.get("manager") for m in meta.get("managedFields") or []}
    return not managers or MANAGER in managers


def unified(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None, name: str) -> str:
    """A unified diff of two objects as YAML ('' when equal)."""
    a = to_yaml(comparable(before)).splitlines(keepends=True) if before else []
    b = to_yaml(comparable(after)).splitlines(keepends=True) if after else []
    return "".join(difflib.unified_diff(a, b, f"live/{name}", f"rendered/{name}"))


def summary(changes: Sequence[Change]) -> str:
    counts: dict[str, int] = {}
    for c in changes:
        counts[c.action] = counts.get(c.action, 0) + 1
    text = ", ".join(f"{n} {action}" for action, n in counts.items()) or "nothing to do"
    return text + (" (dry run)" if any(c.dry_run for c in changes) else "")


# -- I/O -------------------------------------------------------------------------------


def live_objects(cluster: ClusterLike, release: str, function: str | None = None) -> list[Obj]:
    """The release's objects (of one ``function`` only, when given)."""
    selector = release_selector(release)
    if function is not None:
        selector = {**selector, NAME: function}
    return [o for kind in DELETE_ORDER for o in cluster.list(kind, selector) if ours(o)]


def apply_all(
    cluster: ClusterLike,
    objects: Sequence[Mapping[str, Any]],
    *,
    release: str,
    prune: bool = True,
    dry_run: bool = False,
    force: bool = False,
    progress: Progress = lambda c: None,
    function: str | None = None,
) -> list[Change]:
    """Server-side apply every object, then prune what left the release (with
    ``function``: only that function's leftovers, as ``functl deploy PATH`` does)."""
    changes: list[Change] = []
    deployments = [o for o in objects if o.get("kind") == "Deployment"]
    # the functions that stay as they are: not re-applied here, and not pruned by it
    names = {gwroutes.function_name(d) for d in deployments}
    kept = [] if prune and function is None else live_deployments(cluster, release)
    gwroutes.check_free(deployments, [d for d in kept if gwroutes.function_name(d) not in names])
    for obj in objects:
        before = cluster.get(*key(obj))
        after = cluster.apply(obj, dry_run=dry_run, force=force)
        changes.append(Change(ref(obj), classify(before, after), dry_run))
        progress(changes[-1])
    if prune:
        for obj in prunable(live_objects(cluster, release, function), objects):
            deleted = cluster.delete(*key(obj), dry_run=dry_run)
            changes.append(Change(ref(obj), "deleted" if deleted else "gone", dry_run))
            progress(changes[-1])
    gone = {c.ref for c in changes if c.action in ("deleted", "gone")}
    changes.extend(sync_routes(cluster, release, deployments, gone, dry_run, progress))
    return changes


def diff_all(
    cluster: ClusterLike,
    objects: Sequence[Mapping[str, Any]],
    *,
    release: str,
    prune: bool = True,
    force: bool = False,
) -> str:
    """What apply would change, as one unified diff: server-side dry-run apply of each
    object compared with the live object (like ``kubectl diff``)."""
    parts = []
    for obj in objects:
        live = cluster.get(*key(obj))
        merged = cluster.apply(obj, dry_run=True, force=force)
        parts.append(unified(live, merged, ref(obj)))
    pruned = prunable(live_objects(cluster, release), objects) if prune else []
    parts.extend(unified(obj, None, ref(obj)) for obj in pruned)
    deployments = [o for o in objects if o.get("kind") == "Deployment"]
    routes, any_left = routes_configmap(cluster, release, deployments, {ref(o) for o in pruned})
    live_routes = cluster.get(*key(routes))
    after = cluster.apply(routes, dry_run=True, force=force) if any_left else None
    parts.append(unified(live_routes, after, ref(routes)))
    return "".join(parts)


def delete_all(
    cluster: ClusterLike,
    *,
    release: str,
    dry_run: bool = False,
    progress: Progress = lambda c: None,
    function: str | None = None,
) -> list[Change]:
    """Delete every object functl applied for ``release`` (of one ``function`` only, when
    given); the bus keeps its data."""
    changes = []
    for obj in live_objects(cluster, release, function):
        deleted = cluster.delete(*key(obj), dry_run=dry_run)
        changes.append(Change(ref(obj), "deleted" if deleted else "gone", dry_run))
        progress(changes[-1])
    gone = {c.ref for c in changes}
    changes.extend(sync_routes(cluster, release, [], gone, dry_run, progress))
    return changes


def live_deployments(cluster: ClusterLike, release: str) -> list[Obj]:
    return [d for d in cluster.list("Deployment", release_selector(release)) if ours(d)]


def routes_configmap(
    cluster: ClusterLike, release: str, applied: Sequence[Mapping[str, Any]], gone: set[str]
) -> tuple[Obj, bool]:
    """The release's routes ConfigMap (gwroutes.py) as its live Deployments make it once
    ``applied`` and ``gone`` (refs) took effect, and whether any function is left."""
    by_ref = {ref({**d, "kind": "Deployment"}): d for d in live_deployments(cluster, release)}
    by_ref.update({ref(d): dict(d) for d in applied})
    left = [d for r, d in by_ref.items() if r not in gone]
    namespace = next((d["metadata"].get("namespace") for d in left), None)
    return gwroutes.configmap(release, namespace, gwroutes.table(left)), bool(left)


def sync_routes(
    cluster: ClusterLike,
    release: str,
    applied: Sequence[Mapping[str, Any]],
    gone: set[str],
    dry_run: bool = False,
    progress: Progress = lambda c: None,
) -> list[Change]:
    """Apply the routes ConfigMap :func:`routes_configmap` makes (also in a dry run);
    delete it when no function is left."""
    wanted, any_left = routes_configmap(cluster, release, applied, gone)
    before = cluster.get(*key(wanted))
    if not any_left:
        if before is None:
            return []
        deleted = cluster.delete(*key(wanted), dry_run=dry_run)
        change = Change(ref(wanted), "deleted" if deleted else "gone", dry_run)
    else:
        after = cluster.apply(wanted, dry_run=dry_run)
        change = Change(ref(wanted), classify(before, after), dry_run)
    if change.action == "unchanged":
        return []
    progress(change)
    return [change]


def deployed_functions(cluster: ClusterLike, release: str | None) -> list[dict[str, Any]]:
    """The functions running in the namespace (of one release, or every functl release)."""
    selector = release_selector(release) if release else {MANAGED_BY: MANAGER}
    rows = []
    for d in cluster.list("Deployment", selector):
        meta, status = d.get("metadata", {}), d.get("status") or {}
        labels, notes = meta.get("labels") or {}, meta.get("annotations") or {}
        rows.append(
            {
                "name": labels.get(NAME, meta.get("name")),
                "release": labels.get(INSTANCE),
                "topic": notes.get(TOPIC_ANNOTATION),
                "channel": notes.get(CHANNEL_ANNOTATION),
                "ready": int(status.get("readyReplicas") or 0),
                "replicas": int(status.get("replicas") or 0),
                "deployment": meta.get("name"),
                "expires_at": notes.get("kubefuncs.io/expires-at"),
            }
        )
    return rows


__all__ = [
    "KINDS",
    "Change",
    "apply_all",
    "delete_all",
    "deployed_functions",
    "diff_all",
    "prunable",
]
