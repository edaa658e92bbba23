"""A Kubernetes API server stand-in that speaks server-side apply faithfully enough.

No kube-apiserver can be installed from the registries CI reaches (Debian has only
kubectl 1.20 and etcd; PyPI and npm have no apiserver), so functl's apply, prune, diff and
delete are tested against this. It implements, for namespaced resources under
``/apis/{group}/{version}/namespaces/{ns}/{plural}[/{name}]``:

* ``PATCH`` with ``Content-Type: application/apply-patch+yaml``: requires ``fieldManager``,
  tracks field ownership per manager (``metadata.managedFields``, FieldsV1 style), removes
  fields a manager stops applying, answers 409 Conflict when another manager owns a field
  with a different value (unless ``force=true``), honours ``dryRun=All``, checks
  apiVersion/kind/name against the URL (400), validates with a schema hook (422 Invalid,
  "field not declared in schema" for unknown fields), bumps ``resourceVersion`` only
  when the object changed and ``generation`` only when ``spec`` changed, defaults
  Deployment ``spec.replicas`` to 1;
* ``GET`` one object (404 NotFound) or a list with ``labelSelector`` (``k=v,k2=v2``),
  list items without apiVersion/kind as real servers send them;
* ``DELETE`` (404 when gone, ``dryRun=All``);
* 403 Forbidden for verbs/resources listed in ``forbidden``; 404 for resources whose API
  group is not installed (``missing_groups``) and namespaces that do not exist;
* ``GET /version`` and ``/apis`` discovery;
* the core API's ConfigMaps and ServiceAccounts (``/api/v1/namespaces/{ns}/configmaps``,
  ``.../serviceaccounts``), like the above;
* the core API's pods (``/api/v1/namespaces/{ns}/pods``: list with ``labelSelector``, and a
  pod's ``/log`` as plain text, from :attr:`FakeKube.logs`);
* controllers: a test registers a callable per plural (:attr:`FakeKube.controllers`) that
  runs after each stored apply, as the Job controller would (status, pods, logs).

Use it in-process through :meth:`FakeKube.transport` (an httpx2.MockTransport for
lightkube) or over real HTTP with :func:`serve`.
"""

from __future__ import annotations

import copy
import http.server
import itertools
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import yaml

Obj = dict[str, Any]
Payload = Obj | str  # JSON object, or plain text (pod logs)
Validator = Callable[[Obj], list[str]]
Leaf = tuple[str, ...]

APPLY = "application/apply-patch+yaml"


class ApiFailure(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message

    def status(self) -> Obj:
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }


class FakeKube:
    """The state of the stand-in: objects by (plural, namespace, name)."""

    def __init__(
        self, validator: Validator | None = None, namespaces: tuple[str, ...] = ("default", "fns")
    ) -> None:
        self.objects: dict[tuple[str, str, str], Obj] = {}
        self.owners: dict[tuple[str, str, str], dict[str, set[Leaf]]] = {}
        self.validator = validator
        self.namespaces = set(namespaces)
        self.forbidden: set[tuple[str, str]] = set()  # (verb, plural)
        self.missing_groups: set[str] = set()
        self.requests: list[tuple[str, str]] = []
        self.logs: dict[tuple[str, str], str] = {}  # (namespace, pod) -> log text
        self.controllers: dict[str, Callable[[FakeKube, Obj], None]] = {}  # plural -> hook
        self._rv = itertools.count(1)
        self._uid = itertools.count(1)

    # -- HTTP plumbing -----------------------------------------------------------------

    def handle(
        self, method: str, url: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, Payload]:
        parts = urlsplit(url)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        self.requests.append((method, parts.path))
        try:
            return 200, self._route(method, parts.path, query, headers, body)
        except ApiFailure as e:
            return e.code, e.status()

    def transport(self) -> httpx2.MockTransport:
        def respond(request: httpx2.Request) -> httpx2.Response:
            code, payload = self.handle(
                request.method, str(request.url), dict(request.headers), request.content
            )
            if isinstance(payload, str):
                return httpx2.Response(code, text=payload)
            return httpx2.Response(code, json=payload)

        return httpx2.MockTransport(respond)

    def _route(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes
    ) -> Payload:
        segs = path.strip("/").split("/")
        if segs[:2] == ["api", "v1"] and segs[4:5] in (["configmaps"], ["serviceaccounts"]):
            segs = ["apis", "", *segs[1:]]  # core ConfigMaps: stored like the group kinds
        elif path.startswith("/api/v1/"):
            return self._core(method, path, query)
        if path == "/version":
            return {"major": "1", "minor": "31", "gitVersion": "v1.31.0-functl-fake"}
        if path == "/apis":
            return {"kind": "APIGroupList", "apiVersion": "v1", "groups": []}
        if len(segs) not in (6, 7) or segs[0] != "apis" or segs[3] != "namespaces":
            raise ApiFailure(404, "NotFound", "the server could not find the requested resource")
        group, version, ns, plural = segs[1], segs[2], segs[4], segs[5]
        name = segs[6] if len(segs) == 7 else None
        verb = _verb(method, name)
        self._check_access(verb, group, plural, ns)
        if name is None:
            return self._list(group, version, plural, ns, query.get("labelSelector", ""))
        if method == "GET":
            return self._get(group, plural, ns, name)
        if method == "PATCH":
            return self._apply(group, version, plural, ns, name, query, headers, body)
        if method == "DELETE":
            return self._delete(group, plural, ns, name, query.get("dryRun") == "All")
        raise ApiFailure(405, "MethodNotAllowed", f"{method} is not supported by the stand-in")

    def _core(self, method: str, path: str, query: dict[str, str]) -> Payload:
        """Pods of the core API: list, and one pod's log."""
        segs = path.strip("/").split("/")
        if (
            method != "GET"
            or len(segs) not in (5, 7)
            or segs[2] != "namespaces"
            or segs[4] != "pods"
        ):
            raise ApiFailure(404, "NotFound", "the server could not find the requested resource")
        ns = segs[3]
        self._check_access("list" if len(segs) == 5 else "get", "", "pods", ns)
        if len(segs) == 5:
            return self._list("", "v1", "pods", ns, query.get("labelSelector", ""))
        if segs[6] != "log" or ("pods", ns, segs[5]) not in self.objects:
            raise ApiFailure(404, "NotFound", f'pods "{segs[5]}" not found')
        return self.logs.get((ns, segs[5]), "")

    def _check_access(self, verb: str, group: str, plural: str, ns: str) -> None:
        if (verb, plural) in self.forbidden:
            raise ApiFailure(
                403,
                "Forbidden",
                f'{plural}.{group} is forbidden: User "test" cannot {verb} resource "{plural}" '
                f'in API group "{group}" in the namespace "{ns}"',
            )
        if group in self.missing_groups:
            raise ApiFailure(404, "NotFound", "the server could not find the requested resource")
        if ns not in self.namespaces:
            raise ApiFailure(404, "NotFound", f'namespaces "{ns}" not found')

    # -- verbs -------------------------------------------------------------------------

    def _get(self, group: str, plural: str, ns: str, name: str) -> Obj:
        obj = self.objects.get((plural, ns, name))
        if obj is None:
            raise ApiFailure(404, "NotFound", f'{plural}.{group} "{name}" not found')
        return copy.deepcopy(obj)

    def _list(self, group: str, version: str, plural: str, ns: str, selector: str) -> Obj:
        wanted = dict(pair.split("=", 1) for pair in selector.split(",") if pair)
        items = []
        for (p, n, _), obj in sorted(self.objects.items()):
            labels = obj["metadata"].get("labels") or {}
            if p == plural and n == ns and all(labels.get(k) == v for k, v in wanted.items()):
                item = copy.deepcopy(obj)
                item.pop("apiVersion", None)
                item.pop("kind", None)
                items.append(item)
        kind = next((o["kind"] for (p, _, _), o in self.objects.items() if p == plural), "Object")
        return {
            "apiVersion": f"{group}/{version}" if group else version,
            "kind": f"{kind}List",
            "metadata": {"resourceVersion": str(next(self._rv))},
            "items": items,
        }

    def _delete(self, group: str, plural: str, ns: str, name: str, dry_run: bool) -> Obj:
        key = (plural, ns, name)
        if key not in self.objects:
            raise ApiFailure(404, "NotFound", f'{plural}.{group} "{name}" not found')
        if not dry_run:
            del self.objects[key]
            self.owners.pop(key, None)
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Success",
            "details": {"name": name},
        }

    def _apply(
        self,
        group: str,
        version: str,
        plural: str,
        ns: str,
        name: str,
        query: dict[str, str],
        headers: dict[str, str],
        body: bytes,
    ) -> Obj:
        if headers.get("content-type", "").split(";")[0] != APPLY:
            raise ApiFailure(
                415, "UnsupportedMediaType", "the stand-in only speaks server-side apply patches"
            )
        manager = query.get("fieldManager")
        if not manager:
            raise ApiFailure(
                400, "BadRequest", "PATCH: fieldManager is required for apply requests"
            )
        config = yaml.safe_load(body)
        self._check_identity(config, group, version, ns, name)
        key = (plural, ns, name)
        live = copy.deepcopy(self.objects.get(key))
        owners = copy.deepcopy(self.owners.get(key, {}))
        merged = merge(live, config, owners, manager, force=query.get("force") == "true")
        _defaults(merged)
        problems = self.validator(merged) if self.validator else []
        if problems:
            raise ApiFailure(
                422,
                "Invalid",
                f'{config["kind"]}.{group} "{name}" is invalid: {"; ".join(problems)}',
            )
        stored = self._finish(merged, live, owners, ns, name)
        if query.get("dryRun") != "All":
            self.objects[key], self.owners[key] = stored, owners
            if plural in self.controllers:
                self.controllers[plural](self, self.objects[key])
        return copy.deepcopy(stored)

    def _check_identity(self, config: Any, group: str, version: str, ns: str, name: str) -> None:
        if not isinstance(config, dict):
            raise ApiFailure(400, "BadRequest", "apply patch must be a YAML or JSON object")
        api_version = f"{group}/{version}" if group else version
        meta = config.get("metadata") or {}
        if config.get("apiVersion") != api_version or not config.get("kind"):
            raise ApiFailure(
                400, "BadRequest", f"apiVersion must be {api_version} and kind must be set"
            )
        if meta.get("name") != name or meta.get("namespace", ns) != ns:
            raise ApiFailure(
                400, "BadRequest", "the name/namespace of the object does not match the URL"
            )

    def _finish(
        self, merged: Obj, live: Obj | None, owners: dict[str, set[Leaf]], ns: str, name: str
    ) -> Obj:
        meta = merged.setdefault("metadata", {})
        meta["name"], meta["namespace"] = name, ns
        if live is None:
            meta.update(
                {
                    "uid": f"uid-{next(self._uid)}",
                    "creationTimestamp": "2024-01-01T00:00:00Z",
                    "generation": 1,
                    "resourceVersion": str(next(self._rv)),
                }
            )
        else:
            old = live.get("metadata", {})
            for k in ("uid", "creationTimestamp", "generation", "resourceVersion"):
                meta[k] = old[k]
            if _content(merged) != _content(live):
                meta["resourceVersion"] = str(next(self._rv))
            if merged.get("spec") != live.get("spec"):
                meta["generation"] = old["generation"] + 1
        meta["managedFields"] = [
            {
                "manager": m,
                "operation": "Apply",
                "apiVersion": merged.get("apiVersion"),
                "fieldsType": "FieldsV1",
                "fieldsV1": fields_v1(leaves),
            }
            for m, leaves in sorted(owners.items())
            if leaves
        ]
        return merged

    def add_pod(self, ns: str, name: str, labels: dict[str, str], log: str) -> None:
        """A pod as a controller would create it, with its log."""
        self.objects[("pods", ns, name)] = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": ns,
                "labels": dict(labels),
                "creationTimestamp": "2024-01-01T00:00:00Z",
            },
        }
        self.logs[(ns, name)] = log

    def set_status(self, plural: str, ns: str, name: str, status: Obj) -> None:
        """What a controller would write (e.g. Deployment replicas)."""
        self.objects[(plural, ns, name)]["status"] = status


def _verb(method: str, name: str | None) -> str:
    if name is None:
        return "list"
    return {"GET": "get", "PATCH": "patch", "DELETE": "delete"}.get(method, method.lower())


def _content(obj: Obj) -> Obj:
    out = copy.deepcopy(obj)
    for k in ("resourceVersion", "generation", "managedFields"):
        out.get("metadata", {}).pop(k, None)
    return out


def _defaults(obj: Obj) -> None:
    if obj.get("kind") == "Deployment":
        obj.setdefault("spec", {}).setdefault("replicas", 1)


# -- server-side apply merge -----------------------------------------------------------


def leaves(value: Any, prefix: Leaf = ()) -> dict[Leaf, Any]:
    """Leaf fields of an applied config; lists are atomic (owned as a whole)."""
    if isinstance(value, dict) and value:
        out: dict[Leaf, Any] = {}
        for k, v in value.items():
            out.update(leaves(v, (*prefix, str(k))))
        return out
    return {prefix: value}


def _lookup(obj: Any, path: Leaf) -> tuple[bool, Any]:
    for part in path:
        if not isinstance(obj, dict) or part not in obj:
            return False, None
        obj = obj[part]
    return True, obj


def _set(obj: Obj, path: Leaf, value: Any) -> None:
    for part in path[:-1]:
        obj = obj.setdefault(part, {})
    obj[path[-1]] = copy.deepcopy(value)


def _remove(obj: Obj, path: Leaf) -> None:
    parents = [obj]
    for part in path[:-1]:
        nxt = parents[-1].get(part)
        if not isinstance(nxt, dict):
            return
        parents.append(nxt)
    parents[-1].pop(path[-1], None)
    for depth in range(len(path) - 1, 0, -1):  # drop parents the removal emptied
        if parents[depth] == {}:
            parents[depth - 1].pop(path[depth - 1], None)


def _overlaps(a: Leaf, b: Leaf) -> bool:
    n = min(len(a), len(b))
    return a[:n] == b[:n]


def _conflicts(
    result: Obj, applied: dict[Leaf, Any], owners: dict[str, set[Leaf]], manager: str, force: bool
) -> list[str]:
    """Fields other managers own with a different value (taken over when ``force``)."""
    tree = _tree(applied)
    found = []
    for other, owned in owners.items():
        if other == manager:
            continue
        for path in sorted(owned):
            hits = [n for n in applied if n not in IDENTITY and _overlaps(path, n)]
            if not hits:
                continue
            at = min([path, *hits], key=len)
            if _lookup(result, at) == _lookup(tree, at):
                continue  # same value: both managers own it
            if force:
                owned.discard(path)
            else:
                found.append(f'conflict with "{other}": .{".".join(at)}')
    return found


IDENTITY = {("apiVersion",), ("kind",), ("metadata", "name"), ("metadata", "namespace")}


def merge(
    live: Obj | None, config: Obj, owners: dict[str, set[Leaf]], manager: str, *, force: bool
) -> Obj:
    """Apply ``config`` as ``manager`` onto ``live``; updates ``owners`` in place."""
    result = copy.deepcopy(live) if live else {}
    applied = {k: v for k, v in leaves(config).items() if k[:1] != ("status",)}
    conflicts = _conflicts(result, applied, owners, manager, force)
    if conflicts:
        raise ApiFailure(
            409,
            "Conflict",
            f"Apply failed with {len(conflicts)} conflict(s): {'; '.join(conflicts)}",
        )
    held_by_others = set().union(*(o for m, o in owners.items() if m != manager))
    for path in owners.get(manager, set()) - set(applied):
        if path not in held_by_others and path not in IDENTITY:
            _remove(result, path)
    for path, value in applied.items():
        _set(result, path, value)
    owners[manager] = set(applied) - IDENTITY
    return result


def _tree(flat: dict[Leaf, Any]) -> Obj:
    out: Obj = {}
    for path, value in flat.items():
        if path:
            _set(out, path, value)
    return out


def fields_v1(owned: set[Leaf]) -> Obj:
    out: Obj = {}
    for path in sorted(owned):
        node = out
        for part in path:
            node = node.setdefault(f"f:{part}", {})
    return out


# -- real HTTP -------------------------------------------------------------------------


@contextmanager
def serve(kube: FakeKube) -> Iterator[str]:
    """Serve ``kube`` on 127.0.0.1 over plain HTTP; yields the base URL."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def _any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            code, payload = kube.handle(self.command, self.path, headers, body)
            text = isinstance(payload, str)
            data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "text/plain" if text else "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_PATCH = do_DELETE = do_POST = do_PUT = _any

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def kubeconfig(server: str, namespace: str = "default") -> str:
    """A kubeconfig document for ``server`` without credentials."""
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": server}}],
            "users": [{"name": "fake", "user": {}}],
            "contexts": [
                {
                    "name": "fake",
                    "context": {"cluster": "fake", "user": "fake", "namespace": namespace},
                }
            ],
        }
    )
