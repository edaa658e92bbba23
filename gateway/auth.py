"""Authentication: API keys (``X-Api-Key``) and JWT HS256 bearer tokens (pure).

HS256 is verified here with ``hmac``/``hashlib`` rather than a JWT library: it is one
HMAC and three claim checks, and owning it keeps ``alg`` pinned to HS256 (no ``none``,
no algorithm confusion) without another dependency.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubefuncs.errors import ConfigError

NONE, API_KEY, JWT, ANY = "none", "api_key", "jwt", "any"
POLICIES = (NONE, API_KEY, JWT, ANY)
LEEWAY_S = 30.0  # clock skew tolerated on exp / nbf
API_KEY_HEADER = "X-Api-Key"


class AuthFailed(Exception):
    """The request is not authenticated; ``reason`` is safe to show to the caller."""

    def __init__(self, reason: str, challenge: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.challenge = challenge  # WWW-Authenticate value


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    method: str  # api_key or jwt


def parse_policy(value: Any, where: str) -> str:
    """A route's ``auth:`` as written -> one of POLICIES (true means any configured method)."""
    if isinstance(value, dict):
        value = value.get("type")
    if value is None or value is False:
        return NONE
    if value is True:
        return ANY
    if isinstance(value, str) and value.replace("-", "_").lower() in POLICIES:
        return value.replace("-", "_").lower()
    raise ConfigError(where, f"must be one of {', '.join(POLICIES)} (or true/false), got {value!r}")


def _b64url(part: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError) as e:
        raise AuthFailed("malformed token: bad base64url", _BEARER) from e


def _json_object(raw: bytes, what: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError as e:
        raise AuthFailed(f"malformed token: {what} is not JSON", _BEARER) from e
    if not isinstance(value, dict):
        raise AuthFailed(f"malformed token: {what} is not an object", _BEARER)
    return value


_BEARER = 'Bearer realm="kubefuncs"'


def verify_hs256(
    token: str,
    secret: bytes,
    *,
    now_s: float,
    issuer: str | None = None,
    audience: str | None = None,
) -> dict[str, Any]:
    """The claims of a valid HS256 JWT; AuthFailed with the reason otherwise."""
    parts = token.split(".")
    if len(parts) != 3 or not all(parts[:2]):
        raise AuthFailed("malformed token: expected header.payload.signature", _BEARER)
    header = _json_object(_b64url(parts[0]), "header")
    if header.get("alg") != "HS256":
        raise AuthFailed(f"token algorithm {header.get('alg')!r} is not accepted (HS256)", _BEARER)
    expected = hmac.new(secret, f"{parts[0]}.{parts[1]}".encode("ascii"), hashlib.sha256).digest()
    if not hmac.compare_digest(expected, _b64url(parts[2])):
        raise AuthFailed("token signature is invalid", _BEARER)
    claims = _json_object(_b64url(parts[1]), "payload")
    check_claims(claims, now_s=now_s, issuer=issuer, audience=audience)
    return claims


def check_claims(
    claims: Mapping[str, Any], *, now_s: float, issuer: str | None, audience: str | None
) -> None:
    exp, nbf = claims.get("exp"), claims.get("nbf")
    if exp is not None and (not _is_number(exp) or now_s > exp + LEEWAY_S):
        raise AuthFailed("token has expired", _BEARER)
    if nbf is not None and (not _is_number(nbf) or now_s + LEEWAY_S < nbf):
        raise AuthFailed("token is not valid yet", _BEARER)
    if issuer is not None and claims.get("iss") != issuer:
        raise AuthFailed("token issuer is not accepted", _BEARER)
    if audience is not None:
        aud = claims.get("aud")
        auds = aud if isinstance(aud, list) else [aud]
        if audience not in auds:
            raise AuthFailed("token audience is not accepted", _BEARER)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def sign_hs256(claims: Mapping[str, Any], secret: bytes) -> str:
    """An HS256 JWT for ``claims`` (for tests and local tooling)."""

    def enc(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")

    head = enc(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    body = enc(json.dumps(dict(claims), separators=(",", ":")).encode())
    sig = hmac.new(secret, f"{head}.{body}".encode("ascii"), hashlib.sha256).digest()
    return f"{head}.{body}.{enc(sig)}"


class Authenticator:
    """Checks a request's credentials against a route's policy."""

    def __init__(
        self,
        api_keys: Mapping[str, str],
        jwt_secret: str | None,
        *,
        issuer: str | None = None,
        audience: str | None = None,
    ) -> None:
        self._keys = {_digest(k): name for k, name in api_keys.items()}
        self._secret = jwt_secret.encode() if jwt_secret else None
        self._issuer = issuer
        self._audience = audience

    def can(self, policy: str) -> bool:
        """Whether ``policy`` can ever succeed with the configured credentials."""
        if policy == API_KEY:
            return bool(self._keys)
        if policy == JWT:
            return self._secret is not None
        if policy == ANY:
            return bool(self._keys) or self._secret is not None
        return True

    def check(self, policy: str, headers: Mapping[str, str], now_s: float) -> Principal | None:
        """The authenticated principal (None for open routes); AuthFailed otherwise."""
        if policy == NONE:
            return None
        key = headers.get(API_KEY_HEADER)
        if key is not None and policy in (API_KEY, ANY):
            return self._api_key(key)
        bearer = _bearer(headers.get("Authorization"))
        if bearer is not None and policy in (JWT, ANY) and self._secret is not None:
            return self._jwt(bearer, now_s)
        raise AuthFailed(_missing(policy), _challenge(policy))

    def _api_key(self, key: str) -> Principal:
        name = self._keys.get(_digest(key))
        if name is None:
            raise AuthFailed("API key is not valid", 'ApiKey realm="kubefuncs"')
        return Principal(name, API_KEY)

    def _jwt(self, token: str, now_s: float) -> Principal:
        assert self._secret is not None
        claims = verify_hs256(
            token, self._secret, now_s=now_s, issuer=self._issuer, audience=self._audience
        )
        return Principal(str(claims.get("sub", "jwt")), JWT)


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def _bearer(value: str | None) -> str | None:
    if value and value[:7].lower() == "bearer ":
        return value[7:].strip()
    return None


def _missing(policy: str) -> str:
    wanted = {
        API_KEY: f"an {API_KEY_HEADER} header",
        JWT: "an Authorization: Bearer <JWT> header",
        ANY: f"an {API_KEY_HEADER} header or an Authorization: Bearer <JWT> header",
    }[policy]
    return f"authentication required: send {wanted}"


def _challenge(policy: str) -> str:
    return 'ApiKey realm="kubefuncs"' if policy == API_KEY else _BEARER
