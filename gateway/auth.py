"""Authentication: API keys (``X-Api-Key``) and JWT bearer tokens (``Authorization``).

Route policies are pure values; :class:`Authenticator` checks a request's headers against
one. JWTs are verified by :mod:`.tokens` (PyJWT: HS256, RS256, ES256, a JWKS URL).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from kubefuncs.errors import ConfigError

from .errors import API_KEY_CHALLENGE, BEARER_CHALLENGE, AuthFailed, AuthUnavailable
from .jwks import JwksCache
from .settings import GatewaySettings
from .tokens import JwtVerifier, load_public_key, sign_hs256

NONE, API_KEY, JWT, ANY = "none", "api_key", "jwt", "any"
POLICIES = (NONE, API_KEY, JWT, ANY)
API_KEY_HEADER = "X-Api-Key"

__all__ = [
    "AuthFailed",
    "AuthUnavailable",
    "Authenticator",
    "Principal",
    "parse_auth",
    "parse_policy",
    "sign_hs256",
]


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    method: str  # api_key or jwt


class AuthSpec(NamedTuple):
    """A route's ``auth:``: the policy and whether a JWT must carry ``exp``."""

    policy: str
    require_exp: bool = True


def parse_auth(value: Any, where: str) -> AuthSpec:
    """``auth: jwt`` / ``true`` / ``false`` or ``{type: jwt, require_exp: false}``."""
    if not isinstance(value, dict):
        return AuthSpec(_policy(value, where))
    unknown = set(value) - {"type", "require_exp"}
    if unknown:
        raise ConfigError(where, f"has unknown keys {sorted(unknown)} (expected type, require_exp)")
    if "type" not in value:
        raise ConfigError(f"{where}.type", f"is missing: one of {', '.join(POLICIES)}")
    policy = _policy(value["type"], f"{where}.type")
    require_exp = value.get("require_exp", True)
    if not isinstance(require_exp, bool):
        raise ConfigError(f"{where}.require_exp", f"must be true or false, got {require_exp!r}")
    if not require_exp and policy not in (JWT, ANY):
        raise ConfigError(f"{where}.require_exp", f"applies to jwt and any, not to {policy}")
    return AuthSpec(policy, require_exp)


def parse_policy(value: Any, where: str) -> str:
    """A route's ``auth:`` as written -> one of POLICIES (true means any configured method)."""
    return parse_auth(value, where).policy


def _policy(value: Any, where: str) -> str:
    if value is None or value is False:
        return NONE
    if value is True:
        return ANY
    if isinstance(value, str) and value.replace("-", "_").lower() in POLICIES:
        return value.replace("-", "_").lower()
    raise ConfigError(where, f"must be one of {', '.join(POLICIES)} (or true/false), got {value!r}")


class Authenticator:
    """Checks a request's credentials against a route's policy."""

    def __init__(
        self,
        api_keys: Mapping[str, str],
        jwt: JwtVerifier | None = None,
        *,
        jwks: JwksCache | None = None,
    ) -> None:
        self._keys = {
            hashlib.sha256(k.encode("utf-8", "surrogateescape")).digest(): name
            for k, name in api_keys.items()
        }
        self._jwt = jwt if jwt is not None and jwt.algorithms else None
        self._jwks = jwks  # owned here: started and closed with the app

    @classmethod
    def from_settings(cls, settings: GatewaySettings) -> Authenticator:
        """API keys and JWT keys as configured; ConfigError (naming the variable) for a
        public key file that cannot be used."""
        var = "KF_GATEWAY_JWT_PUBLIC_KEY_FILE"
        public = settings.jwt_public_key_file
        jwks = None
        if settings.jwks_url:
            jwks = JwksCache(
                settings.jwks_url,
                ttl_s=settings.jwks_ttl_s,
                min_refetch_s=settings.jwks_min_refetch_s,
                timeout_s=settings.jwks_timeout_s,
            )
        verifier = JwtVerifier(
            secret=settings.jwt_secret.encode() if settings.jwt_secret else None,
            public_key=load_public_key(public, var) if public else None,
            jwks=jwks,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
        )
        return cls(settings.api_keys, verifier, jwks=jwks)

    async def start(self) -> None:
        """Open the JWKS client (and fetch the keys in the background), if one is set."""
        if self._jwks is not None:
            await self._jwks.start()

    async def close(self) -> None:
        if self._jwks is not None:
            await self._jwks.close()

    def can(self, policy: str) -> bool:
        """Whether ``policy`` can ever succeed with the configured credentials."""
        if policy == API_KEY:
            return bool(self._keys)
        if policy == JWT:
            return self._jwt is not None
        if policy == ANY:
            return bool(self._keys) or self._jwt is not None
        return True

    async def check(
        self, policy: str, headers: Mapping[str, str], *, require_exp: bool = True
    ) -> Principal | None:
        """The authenticated principal (None for open routes); AuthFailed otherwise, or
        AuthUnavailable when the keys to check a token with cannot be had yet."""
        if policy == NONE:
            return None
        key = headers.get(API_KEY_HEADER)
        if key is not None and policy in (API_KEY, ANY):
            return self._api_key(key)
        bearer = _bearer(headers.get("Authorization"))
        if bearer is not None and policy in (JWT, ANY) and self._jwt is not None:
            claims = await self._jwt.verify(bearer, require_exp=require_exp)
            return Principal(str(claims.get("sub", "jwt")), JWT)
        raise AuthFailed(_missing(policy), _challenge(policy))

    def _api_key(self, key: str) -> Principal:
        name = self._keys.get(_digest(key))
        if name is None:
            raise AuthFailed("API key is not valid", API_KEY_CHALLENGE)
        return Principal(name, API_KEY)


def _digest(key: str) -> bytes:
    try:
        raw = key.encode("utf-8")
    except UnicodeEncodeError:  # aiohttp hands non-UTF-8 header bytes over as surrogates
        raise AuthFailed(f"{API_KEY_HEADER} is not valid UTF-8", API_KEY_CHALLENGE) from None
    return hashlib.sha256(raw).digest()


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
    return API_KEY_CHALLENGE if policy == API_KEY else BEARER_CHALLENGE
