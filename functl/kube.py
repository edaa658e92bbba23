"""The only module that talks to Kubernetes: a thin lightkube wrapper on plain dicts.

Objects go in and come out as dicts; every lightkube/httpx error becomes a
:class:`FunctlError` with an exit code: no configuration or no connection ->
ClusterUnreachable (3), 401/403 -> Forbidden (4), any other refusal -> Rejected (5) with
the server's own message.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from functools import cache
from typing import Any

import httpx2
import yaml
from lightkube import ApiError, Client, ConfigError, KubeConfig
from lightkube.generic_resource import create_namespaced_resource
from lightkube.resources.core_v1 import ConfigMap, Pod, ServiceAccount
from lightkube.types import CascadeType

from .errors import ClusterUnreachable, Forbidden, Rejected
from .naming import MANAGER

Obj = dict[str, Any]

# kind -> (group, version, plural); all namespaced
KINDS: dict[str, tuple[str, str, str]] = {
    "TriggerAuthentication": ("keda.sh", "v1alpha1", "triggerauthentications"),
    "NetworkPolicy": ("networking.k8s.io", "v1", "networkpolicies"),
    "Deployment": ("apps", "v1", "deployments"),
    "ScaledObject": ("keda.sh", "v1alpha1", "scaledobjects"),
    "HorizontalPodAutoscaler": ("autoscaling", "v2", "horizontalpodautoscalers"),
    "CronJob": ("batch", "v1", "cronjobs"),
    "Job": ("batch", "v1", "jobs"),  # only the bus preparation Job (busjob.py); never pruned
    # source functions' code (source.py); only those labelled component=source are pruned
    "ConfigMap": ("", "v1", "configmaps"),
    # the janitor of expiring functions (expiry.py)
    "ServiceAccount": ("", "v1", "serviceaccounts"),
    "Role": ("rbac.authorization.k8s.io", "v1", "roles"),
    "RoleBinding": ("rbac.authorization.k8s.io", "v1", "rolebindings"),
}
KEDA_KINDS = ("ScaledObject", "TriggerAuthentication")
# delete what scales or starts pods before what runs them, and a policy only after the
# pods it isolates
DELETE_ORDER = (
    "CronJob",
    "ScaledObject",
    "HorizontalPodAutoscaler",
    "Deployment",
    "ConfigMap",
    "NetworkPolicy",
    "TriggerAuthentication",
    "RoleBinding",
    "Role",
    "ServiceAccount",
)
RBAC_HINT = (
    "functl needs get, list, patch and delete on deployments.apps, cronjobs.batch, "
    "horizontalpodautoscalers.autoscaling, networkpolicies.networking.k8s.io, "
    "scaledobjects.keda.sh and triggerauthentications.keda.sh (and configmaps for source "
    "functions; serviceaccounts, roles and rolebindings for the janitor of expiring "
    "functions); when it prepares the bus "
    "from inside the cluster also on jobs.batch, and list on pods and get on pods/log"
)


CORE: dict[str, Any] = {"ConfigMap": ConfigMap, "ServiceAccount": ServiceAccount}


@cache
def resource(kind: str) -> Any:
    if kind in CORE:
        return CORE[kind]
    group, version, plural = KINDS[kind]
    return create_namespaced_resource(group, version, kind, plural)


def kind_of(obj: Mapping[str, Any]) -> str:
    return str(obj["kind"])


def ref(obj: Mapping[str, Any]) -> str:
    """``deployment.apps/name`` as kubectl prints it."""
    group = KINDS[kind_of(obj)][0]
    dotted = f".{group}" if group else ""
    return f"{kind_of(obj).lower()}{dotted}/{obj['metadata']['name']}"


class Cluster:
    """One namespace of one cluster, through a lightkube client."""

    def __init__(self, client: Client, namespace: str, server: str = "") -> None:
        self.client = client
        self.namespace = namespace
        self.server = server

    @classmethod
    def connect(
        cls,
        namespace: str,
        *,
        kubeconfig: str | None = None,
        context: str | None = None,
        transport: httpx2.BaseTransport | None = None,
    ) -> Cluster:
        """Use ``kubeconfig`` (else in-cluster config, else $KUBECONFIG, else ~/.kube/config)."""
        try:
            config = KubeConfig.from_file(kubeconfig) if kubeconfig else KubeConfig.from_env()
            single = config.get(context_name=context)
            if single is None:
                raise ConfigError("no current context in the kubeconfig")
            client = Client(single, namespace=namespace, field_manager=MANAGER, transport=transport)
        except (ConfigError, KeyError, OSError, ValueError, yaml.YAMLError) as e:
            raise ClusterUnreachable(
                f"no usable Kubernetes configuration: {e}\n"
                "    fix: set KUBECONFIG or pass --kubeconfig, or run functl inside the cluster"
            ) from e
        return cls(client, namespace, single.cluster.server)

    def get(self, kind: str, name: str) -> Obj | None:
        with self._errors(kind, name):
            try:
                return _plain(self.client.get(resource(kind), name, namespace=self.namespace))
            except ApiError as e:
                if e.status.code == 404:
                    return None
                raise

    def apply(self, obj: Mapping[str, Any], *, dry_run: bool = False, force: bool = False) -> Obj:
        kind, name = kind_of(obj), obj["metadata"]["name"]
        with self._errors(kind, name):
            res = resource(kind).from_dict(dict(obj))
            out = self.client.apply(res, field_manager=MANAGER, force=force, dry_run=dry_run)
            return _plain(out)

    def list(self, kind: str, selector: Mapping[str, str]) -> list[Obj]:
        """Objects of ``kind`` carrying every label of ``selector``; [] when the server does
        not know the kind (KEDA not installed)."""
        with self._errors(kind, ""):
            try:
                found = self.client.list(
                    resource(kind), namespace=self.namespace, labels=dict(selector)
                )
                return [{**_plain(o), "kind": kind} for o in found]
            except ApiError as e:
                if e.status.code == 404:
                    return []
                raise

    def delete(self, kind: str, name: str, *, dry_run: bool = False) -> bool:
        """Delete one object (its dependents, such as a Job's pods, in the background);
        False when it was already gone."""
        with self._errors(kind, name):
            try:
                self.client.delete(
                    resource(kind),
                    name,
                    namespace=self.namespace,
                    dry_run=dry_run,
                    cascade=CascadeType.BACKGROUND,
                )
            except ApiError as e:
                if e.status.code == 404:
                    return False
                raise
        return True

    def pod_logs(self, selector: Mapping[str, str], tail_lines: int) -> str:
        """The last ``tail_lines`` log lines of the newest pod carrying ``selector``;
        '' when there is none (yet)."""
        with self._errors("Pod", ""):
            pods = list(self.client.list(Pod, namespace=self.namespace, labels=dict(selector)))
            if not pods:
                return ""
            newest = max(pods, key=_created)
            name = (newest.metadata.name if newest.metadata else None) or ""
            lines = self.client.log(name, namespace=self.namespace, tail_lines=tail_lines)
            return "".join(lines)

    @contextlib.contextmanager
    def _errors(self, kind: str, name: str) -> Iterator[None]:
        what = f"{kind} {name}".strip()
        try:
            yield
        except ApiError as e:
            raise api_error(e, what, self.namespace) from e
        except httpx2.TransportError as e:
            raise ClusterUnreachable(
                f"cannot reach the Kubernetes API server {self.server}: {e}\n"
                "    fix: check that the cluster runs and the kubeconfig context is right "
                "(kubectl cluster-info)"
            ) from e


def api_error(e: ApiError, what: str, namespace: str) -> Exception:
    """The FunctlError for an API refusal, quoting the server's message."""
    code, message = e.status.code, e.status.message or str(e)
    if code in (401, 403):
        return Forbidden(
            f"the cluster refused {what} in namespace {namespace} ({code}): {message}\n"
            f"    fix: {RBAC_HINT}"
        )
    if code == 409:
        return Rejected(
            f"{what}: conflict ({code}): {message}\n"
            "    fix: another field manager owns these fields; re-run with --force-conflicts "
            "to take them over"
        )
    hint = ""
    if code == 404 and what.split(" ")[0] in KEDA_KINDS and "requested resource" in message:
        hint = (
            "\n    fix: install KEDA (keda.sh/v1alpha1), or set scaling.keda: false for HPA scaling"
        )
    return Rejected(
        f"the cluster rejected {what} ({code} {e.status.reason or ''}): {message}{hint}"
    )


def _created(pod: Pod) -> str:
    stamp = pod.metadata.creationTimestamp if pod.metadata else None
    return stamp.isoformat() if stamp else ""


def _plain(obj: Any) -> Obj:
    return dict(obj.to_dict()) if hasattr(obj, "to_dict") else dict(obj)
