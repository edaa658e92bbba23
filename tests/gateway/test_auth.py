"""API keys and JWT HS256 verification (pure)."""

from __future__ import annotations

import base64
import json

import pytest
from kubefuncs.gateway.auth import Authenticator, AuthFailed, parse_policy, sign_hs256, verify_hs256

SECRET = b"0123456789abcdef0123"
NOW = 1_700_000_000.0


def test_a_valid_token_yields_its_claims() -> None:
    token = sign_hs256({"sub": "ada", "exp": NOW + 60, "iss": "me", "aud": ["x", "api"]}, SECRET)
    claims = verify_hs256(token, SECRET, now_s=NOW, issuer="me", audience="api")
    assert claims["sub"] == "ada"


def _forge(header: dict[str, object], claims: dict[str, object]) -> str:
    def enc(d: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()

    return f"{enc(header)}.{enc(claims)}."


CHECKS = {"issuer": {"issuer": "me"}, "audience": {"audience": "api"}}


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (sign_hs256({"sub": "a"}, b"another-secret-of-16"), "signature is invalid"),
        (sign_hs256({"exp": NOW - 31}, SECRET), "expired"),
        (sign_hs256({"nbf": NOW + 31}, SECRET), "not valid yet"),
        (sign_hs256({"iss": "them"}, SECRET), "issuer"),
        (sign_hs256({"aud": "other"}, SECRET), "audience"),
        (sign_hs256({"exp": "tomorrow"}, SECRET), "expired"),
        (_forge({"alg": "none"}, {"sub": "root"}), "algorithm 'none'"),
        (_forge({"alg": "RS256"}, {"sub": "root"}), "algorithm 'RS256'"),
        ("a.b", "malformed"),
        ("!!!.???.###", "malformed"),
        ("W10.e30.", "not an object"),
    ],
)
def test_a_bad_token_is_refused_with_its_reason(token: str, reason: str) -> None:
    # Given a token that is wrong in one way / When it is verified / Then the reason says how
    with pytest.raises(AuthFailed) as raised:
        verify_hs256(token, SECRET, now_s=NOW, **CHECKS.get(reason, {}))
    assert reason in raised.value.reason


def test_expiry_tolerates_clock_skew() -> None:
    token = sign_hs256({"exp": NOW - 10}, SECRET)
    assert verify_hs256(token, SECRET, now_s=NOW) == {"exp": NOW - 10}


def test_policies_choose_the_credential() -> None:
    # Given one API key and a JWT secret
    auth = Authenticator({"key-0123456789": "ci"}, SECRET.decode())
    bearer = {"Authorization": "Bearer " + sign_hs256({"sub": "ada"}, SECRET)}
    key = {"X-Api-Key": "key-0123456789"}
    # Then each policy takes what it accepts
    assert auth.check("none", {}, NOW) is None
    assert auth.check("api_key", key, NOW).name == "ci"  # type: ignore[union-attr]
    assert auth.check("jwt", bearer, NOW).name == "ada"  # type: ignore[union-attr]
    assert auth.check("any", bearer, NOW).method == "jwt"  # type: ignore[union-attr]
    assert auth.check("any", key, NOW).method == "api_key"  # type: ignore[union-attr]
    with pytest.raises(AuthFailed, match="X-Api-Key"):
        auth.check("api_key", bearer, NOW)
    with pytest.raises(AuthFailed, match="not valid"):
        auth.check("api_key", {"X-Api-Key": "wrong-key-123"}, NOW)


def test_a_policy_without_credentials_configured_cannot_pass() -> None:
    auth = Authenticator({}, None)
    assert auth.can("none") and not auth.can("api_key") and not auth.can("jwt")
    assert not auth.can("any")


@pytest.mark.parametrize(
    ("value", "policy"),
    [
        (None, "none"),
        (False, "none"),
        (True, "any"),
        ("API-KEY", "api_key"),
        ({"type": "jwt"}, "jwt"),
    ],
)
def test_route_auth_values(value: object, policy: str) -> None:
    assert parse_policy(value, "auth") == policy
