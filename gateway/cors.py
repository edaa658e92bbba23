"""CORS per route: preflight answers and the headers of actual responses (pure)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from kubefuncs.errors import ConfigError

EXPOSED = "X-Call-Id, X-Kubefuncs-Error, Retry-After"


@dataclass(frozen=True, slots=True)
class CorsPolicy:
    origins: frozenset[str]  # {"*"} for any origin
    headers: frozenset[str] | None = None  # lower-case; None: whatever the browser asks
    max_age_s: int = 600
    credentials: bool = False

    def allows(self, origin: str) -> bool:
        return "*" in self.origins or origin in self.origins


def parse_cors(value: Any, where: str) -> CorsPolicy | None:
    """``cors: true`` (any origin) or ``{origins: [...], headers: [...], max_age_s:,
    credentials:}``; None/false turns CORS off."""
    if value is None or value is False:
        return None
    if value is True:
        return CorsPolicy(frozenset({"*"}))
    if not isinstance(value, dict):
        raise ConfigError(where, f"must be true, false or a mapping, got {value!r}")
    unknown = set(value) - {"origins", "headers", "max_age_s", "credentials"}
    if unknown:
        raise ConfigError(where, f"has unknown keys {sorted(unknown)}")
    origins = _strings(value.get("origins", "*"), f"{where}.origins")
    headers = value.get("headers")
    max_age = value.get("max_age_s", 600)
    if not isinstance(max_age, int) or isinstance(max_age, bool) or max_age < 0:
        raise ConfigError(f"{where}.max_age_s", f"must be an integer >= 0, got {max_age!r}")
    credentials = bool(value.get("credentials", False))
    if credentials and "*" in origins:
        raise ConfigError(f"{where}.credentials", "needs explicit origins, not '*'")
    return CorsPolicy(
        frozenset(origins),
        None if headers is None else frozenset(h.lower() for h in _strings(headers, where)),
        max_age,
        credentials,
    )


def _strings(value: Any, where: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ConfigError(where, f"must be a string or a list of strings, got {value!r}")


def is_preflight(method: str, headers: Any) -> bool:
    return (
        method == "OPTIONS" and "Origin" in headers and "Access-Control-Request-Method" in headers
    )


def response_headers(policy: CorsPolicy, origin: str | None) -> dict[str, str]:
    """Headers for an actual (non-preflight) response to ``origin``."""
    if origin is None or not policy.allows(origin):
        return {}
    out = {"Access-Control-Allow-Origin": _allow_origin(policy, origin)}
    out["Access-Control-Expose-Headers"] = EXPOSED
    if policy.credentials:
        out["Access-Control-Allow-Credentials"] = "true"
    if "*" not in policy.origins:
        out["Vary"] = "Origin"
    return out


def preflight_headers(
    policy: CorsPolicy,
    origin: str,
    method: str,
    requested_headers: str | None,
    allowed_methods: Iterable[str] | None,
) -> dict[str, str] | None:
    """Headers of a successful preflight, or None when it must be refused."""
    if not policy.allows(origin):
        return None
    if allowed_methods is not None and method not in allowed_methods:
        return None
    asked = [h.strip().lower() for h in (requested_headers or "").split(",") if h.strip()]
    if policy.headers is not None and not set(asked) <= policy.headers:
        return None
    out = response_headers(policy, origin)
    del out["Access-Control-Expose-Headers"]
    out["Access-Control-Allow-Methods"] = ", ".join(sorted(allowed_methods or [method]))
    if asked:
        out["Access-Control-Allow-Headers"] = ", ".join(asked)
    out["Access-Control-Max-Age"] = str(policy.max_age_s)
    return out


def _allow_origin(policy: CorsPolicy, origin: str) -> str:
    return "*" if "*" in policy.origins and not policy.credentials else origin
