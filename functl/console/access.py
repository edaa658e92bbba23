"""Who may do what: the gateway's API keys and HS256 JWTs, each credential with a role.

``read`` may GET everything and invoke nothing; ``write`` may also invoke, replay, purge,
deploy, update and delete. The gateway's own checks (:class:`Authenticator`,
:class:`JwtVerifier`) decide whether a credential is valid; this module only maps it to a
role. The gateway is imported inside functions (functl stays importable without it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .settings import READ, ROLES, WRITE, ServeSettings


class Denied(Exception):
    """401 (no or bad credentials) or 403 (a read credential asked to write)."""

    def __init__(self, status: int, message: str, challenge: str = "") -> None:
        super().__init__(message)
        self.status, self.message, self.challenge = status, message, challenge


@dataclass(frozen=True, slots=True)
class Caller:
    name: str
    role: str


class Access:
    """Checks a request's headers and the role it needs."""

    def __init__(self, settings: ServeSettings) -> None:
        from kubefuncs.gateway.auth import Authenticator
        from kubefuncs.gateway.tokens import JwtVerifier

        keys = {key: name for key, (name, _) in settings.api_keys.items()}
        self._roles = {name: role for name, role in settings.api_keys.values()}
        secret = settings.jwt_secret.encode() if settings.jwt_secret else None
        self._jwt = JwtVerifier(secret=secret) if secret else None
        self._keys = Authenticator(keys, None)
        self.open = settings.no_auth

    async def check(self, headers: Mapping[str, str], need: str) -> Caller:
        if self.open:
            return Caller("anonymous", WRITE)
        caller = await self._identify(headers)
        if need == WRITE and caller.role != WRITE:
            raise Denied(403, f"{caller.name} has the read role; this needs the write role")
        return caller

    async def _identify(self, headers: Mapping[str, str]) -> Caller:
        from kubefuncs.gateway.auth import API_KEY, AuthFailed

        try:
            if "X-Api-Key" in headers:
                principal = await self._keys.check(API_KEY, headers)
                assert principal is not None
                return Caller(principal.name, self._roles.get(principal.name, READ))
            token = _bearer(headers.get("Authorization"))
            if token is not None and self._jwt is not None:
                return _from_claims(await self._jwt.verify(token))
        except AuthFailed as e:
            raise Denied(401, e.reason, 'ApiKey realm="functl", Bearer realm="functl"') from e
        raise Denied(
            401,
            "authentication required: send an X-Api-Key header or Authorization: Bearer <JWT>",
            'ApiKey realm="functl", Bearer realm="functl"',
        )


def _from_claims(claims: Mapping[str, Any]) -> Caller:
    role = claims.get("role", READ)
    if role not in ROLES:
        raise Denied(403, f"the token's role claim must be read or write, got {role!r}")
    return Caller(str(claims.get("sub", "jwt")), str(role))


def _bearer(value: str | None) -> str | None:
    if value and value[:7].lower() == "bearer ":
        return value[7:].strip()
    return None
