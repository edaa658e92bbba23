"""Gateway settings from an environment mapping."""

from __future__ import annotations

import pytest
from kubefuncs.errors import ConfigError
from kubefuncs.gateway import GatewaySettings


def test_defaults_need_no_environment() -> None:
    s = GatewaySettings.from_env({})
    assert s.addr == "0.0.0.0:8080" and s.max_in_flight == 1000 and s.api_keys == {}


def test_every_variable_is_read() -> None:
    # Given a full environment
    env = {
        "KF_BUS_URL": "valkey://bus:6379/1",
        "KF_GATEWAY_ROUTES": "/etc/routes.yaml",
        "KF_GATEWAY_ADDR": "127.0.0.1:9000",
        "KF_GATEWAY_TIMEOUT_S": "2.5",
        "KF_GATEWAY_MAX_BODY_BYTES": "100",
        "KF_GATEWAY_MAX_IN_FLIGHT": "7",
        "KF_GATEWAY_API_KEYS": "ci=abcdefgh123, bare-key-value",
        "KF_GATEWAY_JWT_SECRET": "0123456789abcdef0123456789abcdef",
        "KF_GATEWAY_JWT_PUBLIC_KEY_FILE": "/etc/jwt/key.pem",
        "KF_GATEWAY_JWKS_URL": "https://idp.example/jwks.json",
        "KF_GATEWAY_JWKS_TTL_S": "60",
        "KF_GATEWAY_JWKS_MIN_REFETCH_S": "5",
        "KF_GATEWAY_JWKS_TIMEOUT_S": "2",
        "KF_GATEWAY_AUTH_FAILURES_PER_MIN": "12",
        "KF_GATEWAY_AUTH_FAILURES_BURST": "3",
        "KF_GATEWAY_TRUST_FORWARDED": "yes",
        "KF_GATEWAY_ACCESS_LOG": "true",
        "KF_LOG_LEVEL": "debug",
    }
    # When settings are read
    s = GatewaySettings.from_env(env)
    # Then each lands in its field, parsed
    assert s.bus_url == "valkey://bus:6379/1" and s.routes_file == "/etc/routes.yaml"
    assert (s.addr, s.timeout_s, s.max_body_bytes, s.max_in_flight) == (
        "127.0.0.1:9000",
        2.5,
        100,
        7,
    )
    assert s.api_keys == {"abcdefgh123": "ci", "bare-key-value": "key2"}
    assert s.jwt_secret == "0123456789abcdef0123456789abcdef"
    assert (s.jwt_public_key_file, s.jwks_url) == ("/etc/jwt/key.pem", env["KF_GATEWAY_JWKS_URL"])
    assert (s.jwks_ttl_s, s.jwks_min_refetch_s, s.jwks_timeout_s) == (60, 5, 2)
    assert (s.auth_failures_per_min, s.auth_failures_burst) == (12, 3)
    assert s.trust_forwarded and s.access_log and s.log_level == "DEBUG"


@pytest.mark.parametrize(
    ("var", "value", "problem"),
    [
        ("KF_GATEWAY_TIMEOUT_S", "soon", "must be a number of seconds"),
        ("KF_GATEWAY_MAX_IN_FLIGHT", "0", "at least 1"),
        ("KF_GATEWAY_MAX_BODY_BYTES", "1.5", "integer"),
        ("KF_GATEWAY_ADDR", "8080", "HOST:PORT"),
        ("KF_GATEWAY_API_KEYS", "ci=short", "at least 8"),
        ("KF_GATEWAY_JWT_SECRET", "x" * 31, "at least 32 bytes"),
        ("KF_GATEWAY_JWKS_URL", "idp.example/jwks", "http(s) URL"),
        ("KF_GATEWAY_JWKS_URL", "file:///etc/passwd", "http(s) URL"),
        ("KF_GATEWAY_AUTH_FAILURES_BURST", "0", "at least 1"),
        ("KF_GATEWAY_ACCESS_LOG", "maybe", "true or false"),
        ("KF_LOG_FORMAT", "xml", "json, text"),
    ],
)
def test_a_bad_value_names_its_variable(var: str, value: str, problem: str) -> None:
    with pytest.raises(ConfigError) as raised:
        GatewaySettings.from_env({var: value})
    assert str(raised.value).startswith(var) and problem in str(raised.value)
