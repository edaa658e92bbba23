"""Strict schema checks of rendered objects, as an API server with the CRDs would make them.

Built-in kinds: kubernetes-validate's bundled strict schemas (no network). KEDA kinds: the
openAPIV3Schema of the v2.20.2 CRDs in ../shared/reference/keda-crds, made strict the way
the API server prunes/rejects (a field the schema does not declare is an error).
ServiceMonitor (Prometheus Operator) has no reference CRD here: it is checked by hand.
"""

from __future__ import annotations

import copy
import os
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

KUBERNETES_VERSION = "1.31.0"
KEDA_CRDS = Path(__file__).resolve().parents[2] / ".." / "shared" / "reference" / "keda-crds"
KEDA_FILES = {
    "ScaledObject": "keda.sh_scaledobjects.yaml",
    "TriggerAuthentication": "keda.sh_triggerauthentications.yaml",
}
SERVICE_MONITOR_ENDPOINT_KEYS = {"port", "path", "interval", "scrapeTimeout"}


def keda_crds_or_skip() -> Path:
    """The CRD folder; skipped locally when missing, a failure under CI=true."""
    if KEDA_CRDS.is_dir():
        return KEDA_CRDS
    message = f"KEDA CRDs not found at {KEDA_CRDS}"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def _strict(schema: Any) -> Any:
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items() if not k.startswith("x-kubernetes-")}
        open_ = (
            schema.get("x-kubernetes-preserve-unknown-fields") or "additionalProperties" in schema
        )
        if "properties" in schema and not open_:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@cache
def keda_validator(kind: str) -> jsonschema.Draft7Validator:
    crd = yaml.safe_load((keda_crds_or_skip() / KEDA_FILES[kind]).read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1")
    return jsonschema.Draft7Validator(_strict(copy.deepcopy(version["schema"]["openAPIV3Schema"])))


def _path(error: jsonschema.ValidationError) -> str:
    return ".".join(map(str, error.absolute_path)) or "(root)"


def keda_errors(obj: dict[str, Any]) -> list[str]:
    errors = [
        f"{_path(e)}: "
        + ("field not declared in schema" if e.validator == "additionalProperties" else e.message)
        for e in keda_validator(obj["kind"]).iter_errors(obj)
    ]
    spec = obj.get("spec") or {}
    if obj["kind"] == "ScaledObject" and spec.get("minReplicaCount", 0) > spec.get(
        "maxReplicaCount", 100
    ):
        errors.append("spec: minReplicaCount must be less than or equal to maxReplicaCount")
    return errors


def service_monitor_errors(obj: dict[str, Any]) -> list[str]:
    spec = obj.get("spec") or {}
    errors = [
        f"spec.{k}: unexpected" for k in set(spec) - {"selector", "namespaceSelector", "endpoints"}
    ]
    if not (spec.get("selector") or {}).get("matchLabels"):
        errors.append("spec.selector.matchLabels: missing")
    for i, endpoint in enumerate(spec.get("endpoints") or [None]):
        if not isinstance(endpoint, dict) or not set(endpoint) <= SERVICE_MONITOR_ENDPOINT_KEYS:
            errors.append(f"spec.endpoints.{i}: not an endpoint of {SERVICE_MONITOR_ENDPOINT_KEYS}")
    return errors


def kubernetes_errors(obj: dict[str, Any]) -> list[str]:
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}"]
    return []


def errors(obj: dict[str, Any]) -> list[str]:
    """Every schema violation of one object."""
    if obj["kind"] in KEDA_FILES:
        return keda_errors(obj)
    if obj["kind"] == "ServiceMonitor":
        return service_monitor_errors(obj)
    return kubernetes_errors(obj)
