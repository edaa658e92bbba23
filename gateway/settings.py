"""Gateway settings: a pure function of an environment mapping.

Every variable is listed in docs/gateway.md ("Environment"). Errors name the variable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from kubefuncs import envparse
from kubefuncs.errors import ConfigError

from .callbacks import CallbackPolicy, HostPattern, parse_hosts
from .presence import PresenceSettings
from .tokens import MIN_SECRET_BYTES


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    bus_url: str = "valkey://localhost:6379/0"
    bus_password: str | None = None
    routes_file: str = ""
    # the functions' routes (the <release>-routes ConfigMap functl keeps): reload.py
    function_routes_file: str = ""
    routes_reload_s: float = 2.0  # re-read both routes files this often when changed; 0 = off
    addr: str = "0.0.0.0:8080"
    timeout_s: float = 30.0  # default reply timeout of routes that set none
    max_body_bytes: int = 1024 * 1024
    max_in_flight: int = 1000
    result_ttl_s: float = 3600.0  # how long async results can be fetched
    callback_timeout_s: float = 10.0
    # where callbacks may go (none: X-Callback-Url is refused), and whether to private
    # addresses (loopback, RFC 1918, link-local...), for in-cluster receivers
    callback_hosts: tuple[HostPattern, ...] = ()
    callback_allow_private: bool = False
    api_keys: Mapping[str, str] = field(default_factory=dict)  # key -> principal name
    jwt_secret: str | None = None  # HS256
    jwt_public_key_file: str | None = None  # PEM: RSA -> RS256, EC P-256 -> ES256
    jwks_url: str | None = None  # an OIDC provider's signing keys
    jwks_ttl_s: float = 300.0
    jwks_min_refetch_s: float = 30.0  # an unknown kid refetches at most this often
    jwks_timeout_s: float = 5.0
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    # failed authentication (401) and refused topics (403) per client address
    auth_failures_per_min: float = 30.0  # 0: not throttled
    auth_failures_burst: int = 10
    trust_forwarded: bool = False  # rate-limit clients by X-Forwarded-For
    maintain_interval_s: float = 1.0  # bus housekeeping (delayed retries); 0 = off
    shutdown_delay_s: float = 0.0  # SIGTERM: not ready, wait this long, then drain
    grace_s: float = 30.0  # SIGTERM: how long in-flight requests may still take
    access_log: bool = False
    # slow clients: a connection must finish its request headers (and an idle keep-alive
    # connection send its next request) within header_timeout_s, a body within body_timeout_s
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    # KEDA external scaler (scaler.py): "" = off; the charts turn it on
    scaler_addr: str = ""
    scaler_poll_s: float = 1.0  # live consumers re-read from the bus this often
    scaler_idle_s: float = 10.0  # a consumer that has not read for this long is not running
    scaler_push_interval_s: float = 1.0  # at most one push per function this often
    scaler_active_s: float = 30.0  # IsActive stays true this long after the last request
    log_level: str = "INFO"
    log_format: str = "json"

    @property
    def presence(self) -> PresenceSettings:
        return PresenceSettings(
            poll_s=self.scaler_poll_s,
            idle_s=self.scaler_idle_s,
            push_interval_s=self.scaler_push_interval_s,
            active_s=self.scaler_active_s,
        )

    @property
    def callbacks(self) -> CallbackPolicy:
        return CallbackPolicy(self.callback_hosts, self.callback_allow_private)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> GatewaySettings:
        """Read ``KF_GATEWAY_*`` (and ``KF_BUS_*``, ``KF_LOG_*``); ConfigError names the
        bad variable."""
        return cls(**envparse.read(cls, env, ENV_NAMES, _PARSERS))


ENV_NAMES = {
    "bus_url": "KF_BUS_URL",
    "bus_password": "KF_BUS_PASSWORD",
    "routes_file": "KF_GATEWAY_ROUTES",
    "function_routes_file": "KF_GATEWAY_FUNCTION_ROUTES",
    "routes_reload_s": "KF_GATEWAY_ROUTES_RELOAD_S",
    "addr": "KF_GATEWAY_ADDR",
    "timeout_s": "KF_GATEWAY_TIMEOUT_S",
    "max_body_bytes": "KF_GATEWAY_MAX_BODY_BYTES",
    "max_in_flight": "KF_GATEWAY_MAX_IN_FLIGHT",
    "result_ttl_s": "KF_GATEWAY_RESULT_TTL_S",
    "callback_timeout_s": "KF_GATEWAY_CALLBACK_TIMEOUT_S",
    "callback_hosts": "KF_GATEWAY_CALLBACK_HOSTS",
    "callback_allow_private": "KF_GATEWAY_CALLBACK_ALLOW_PRIVATE",
    "api_keys": "KF_GATEWAY_API_KEYS",
    "jwt_secret": "KF_GATEWAY_JWT_SECRET",
    "jwt_public_key_file": "KF_GATEWAY_JWT_PUBLIC_KEY_FILE",
    "jwks_url": "KF_GATEWAY_JWKS_URL",
    "jwks_ttl_s": "KF_GATEWAY_JWKS_TTL_S",
    "jwks_min_refetch_s": "KF_GATEWAY_JWKS_MIN_REFETCH_S",
    "jwks_timeout_s": "KF_GATEWAY_JWKS_TIMEOUT_S",
    "jwt_issuer": "KF_GATEWAY_JWT_ISSUER",
    "jwt_audience": "KF_GATEWAY_JWT_AUDIENCE",
    "auth_failures_per_min": "KF_GATEWAY_AUTH_FAILURES_PER_MIN",
    "auth_failures_burst": "KF_GATEWAY_AUTH_FAILURES_BURST",
    "trust_forwarded": "KF_GATEWAY_TRUST_FORWARDED",
    "maintain_interval_s": "KF_GATEWAY_MAINTAIN_INTERVAL_S",
    "shutdown_delay_s": "KF_GATEWAY_SHUTDOWN_DELAY_S",
    "grace_s": "KF_GATEWAY_GRACE_S",
    "access_log": "KF_GATEWAY_ACCESS_LOG",
    "header_timeout_s": "KF_GATEWAY_HEADER_TIMEOUT_S",
    "body_timeout_s": "KF_GATEWAY_BODY_TIMEOUT_S",
    "scaler_addr": "KF_GATEWAY_SCALER_ADDR",
    "scaler_poll_s": "KF_GATEWAY_SCALER_POLL_S",
    "scaler_idle_s": "KF_GATEWAY_SCALER_IDLE_S",
    "scaler_push_interval_s": "KF_GATEWAY_SCALER_PUSH_INTERVAL_S",
    "scaler_active_s": "KF_GATEWAY_SCALER_ACTIVE_S",
    "log_level": "KF_LOG_LEVEL",
    "log_format": "KF_LOG_FORMAT",
}


def parse_api_keys(var: str, raw: str) -> dict[str, str]:
    """``name=key,other=key2`` (or bare keys, named ``key1``, ``key2``...) -> {key: name}."""
    keys: dict[str, str] = {}
    for i, item in enumerate((p.strip() for p in raw.split(",")), start=1):
        if not item:
            continue
        name, sep, key = item.partition("=")
        if not sep:
            name, key = f"key{i}", item
        if not name.strip() or len(key.strip()) < 8:
            raise ConfigError(
                var, f"entry {i} must be NAME=KEY with a key of at least 8 characters"
            )
        keys[key.strip()] = name.strip()
    return keys


def _secret(var: str, raw: str) -> str | None:
    value = raw.strip()
    if value and len(value.encode("utf-8", "surrogateescape")) < MIN_SECRET_BYTES:
        raise ConfigError(
            var,
            f"must be at least {MIN_SECRET_BYTES} bytes (an HS256 key as long as its hash, "
            "RFC 7518 3.2); generate one with: openssl rand -base64 48",
        )
    return value or None


def _url(var: str, raw: str) -> str | None:
    value = raw.strip()
    if not value:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigError(var, f"must be an http(s) URL such as https://idp/jwks.json, got {raw!r}")
    return value


_PARSERS: dict[str, envparse.Parser] = {
    "bus_password": envparse.optional,
    "addr": envparse.address(allow_empty=False),
    "timeout_s": envparse.number(float, 0.001, "a number of seconds"),
    "routes_reload_s": envparse.number(float, 0, "a number of seconds (0: off)"),
    "max_body_bytes": envparse.number(int, 0, "an integer number of bytes"),
    "max_in_flight": envparse.number(int, 1, "an integer"),
    "result_ttl_s": envparse.number(float, 1, "a number of seconds"),
    "callback_timeout_s": envparse.number(float, 0.001, "a number of seconds"),
    "callback_hosts": parse_hosts,
    "callback_allow_private": envparse.boolean,
    "api_keys": parse_api_keys,
    "jwt_secret": _secret,
    "jwt_public_key_file": envparse.optional,
    "jwks_url": _url,
    "jwks_ttl_s": envparse.number(float, 1, "a number of seconds"),
    "jwks_min_refetch_s": envparse.number(float, 0, "a number of seconds"),
    "jwks_timeout_s": envparse.number(float, 0.1, "a number of seconds"),
    "auth_failures_per_min": envparse.number(float, 0, "a number of failures per minute"),
    "auth_failures_burst": envparse.number(int, 1, "an integer"),
    "jwt_issuer": envparse.optional,
    "jwt_audience": envparse.optional,
    "trust_forwarded": envparse.boolean,
    "maintain_interval_s": envparse.number(float, 0, "a number of seconds"),
    "shutdown_delay_s": envparse.number(float, 0, "a number of seconds"),
    "grace_s": envparse.number(float, 0, "a number of seconds"),
    "access_log": envparse.boolean,
    "header_timeout_s": envparse.number(float, 0.1, "a number of seconds"),
    "body_timeout_s": envparse.number(float, 0.1, "a number of seconds"),
    "scaler_addr": envparse.address(allow_empty=True),
    "scaler_poll_s": envparse.number(float, 0.01, "a number of seconds"),
    "scaler_idle_s": envparse.number(float, 0.1, "a number of seconds"),
    "scaler_push_interval_s": envparse.number(float, 0, "a number of seconds"),
    "scaler_active_s": envparse.number(float, 0, "a number of seconds"),
    "log_level": envparse.LOG_LEVEL,
    "log_format": envparse.LOG_FORMAT,
}
