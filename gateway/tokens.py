"""JWT bearer tokens: verified by PyJWT, each key pinned to the one algorithm it is for.

An HS256 shared secret verifies HS256 only, an RSA public key RS256 only, an EC P-256 key
ES256 only, and a JWKS key the algorithm of its own type: a token cannot pick a key by
naming another algorithm (``none``, or HS256 against an RSA public key used as an HMAC
secret). Before PyJWT sees a token it must be short, strictly base64url (no padding, no
bits set past the data) and carry no ``crit`` header; after the signature its time claims
must be plain finite numbers (PyJWT would take ``"9999999999"`` or ``1e308``).
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from kubefuncs.errors import ConfigError

from .errors import bearer_failure

HS256, RS256, ES256 = "HS256", "RS256", "ES256"
ASYMMETRIC = (RS256, ES256)
LEEWAY_S = 30.0  # clock skew tolerated on exp / nbf / iat
MAX_TOKEN_BYTES = 8192  # longer tokens are refused unparsed
MAX_TIME_S = 253402300799  # 9999-12-31T23:59:59Z: later "times" are not times
MIN_SECRET_BYTES = 32  # RFC 7518 3.2: an HS256 key at least as long as the hash
MIN_RSA_BITS = 2048
TIME_CLAIMS = ("exp", "nbf", "iat")
_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")
_B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


class KeySource(Protocol):
    """Where RS256/ES256 keys come from by ``kid`` (the JWKS cache)."""

    async def key(self, kid: str | None, alg: str) -> jwt.PyJWK | None:
        """The key for ``kid`` and ``alg``, None when there is none; raises AuthUnavailable
        when no keys could ever be fetched."""


@dataclass(frozen=True, slots=True)
class PinnedKey:
    """A configured public key and the one algorithm it verifies."""

    key: PublicKey
    alg: str


class BadClaim(jwt.InvalidTokenError):
    """A registered claim with a value that is not what RFC 7519 says it is."""


class _Decoder(jwt.PyJWT):
    def _decode_payload(self, decoded: dict[str, Any]) -> dict[str, Any]:
        # runs after the signature is verified and before PyJWT int()s the time claims
        payload = super()._decode_payload(decoded)
        for name in TIME_CLAIMS:
            if name in payload:
                problem = time_claim_problem(payload[name])
                if problem:
                    raise BadClaim(f"token claim {name!r} {problem}")
        return payload


def time_claim_problem(value: Any) -> str | None:
    """Why ``value`` is not a NumericDate (seconds since the epoch), or None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"must be a number of seconds since the epoch, got {type(value).__name__}"
    if not math.isfinite(value) or abs(value) > MAX_TIME_S:
        return f"must be a finite number of seconds up to {MAX_TIME_S}"
    return None


_DECODER = _Decoder(options={"enforce_minimum_key_length": True})

_REASONS: tuple[tuple[type[jwt.PyJWTError], str], ...] = (
    (jwt.ExpiredSignatureError, "token has expired"),
    (jwt.ImmatureSignatureError, "token is not valid yet"),
    (jwt.InvalidSignatureError, "token signature is invalid"),
    (jwt.InvalidIssuerError, "token issuer is not accepted"),
    (jwt.InvalidAudienceError, "token audience is not accepted"),
    (jwt.InvalidAlgorithmError, "token algorithm is not accepted"),
    (jwt.InvalidKeyError, "token key is not acceptable"),
)


class JwtVerifier:
    """Checks bearer tokens against the configured keys; ``verify`` gives the claims."""

    def __init__(
        self,
        *,
        secret: bytes | None = None,
        public_key: PinnedKey | None = None,
        jwks: KeySource | None = None,
        issuer: str | None = None,
        audience: str | None = None,
    ) -> None:
        if secret is not None and len(secret) < MIN_SECRET_BYTES:
            raise ConfigError(
                "KF_GATEWAY_JWT_SECRET", f"must be at least {MIN_SECRET_BYTES} bytes (HS256)"
            )
        self._secret = secret
        self._public = public_key
        self._jwks = jwks
        self._issuer = issuer
        self._audience = audience
        algs = [HS256] if secret else []
        algs += [public_key.alg] if public_key else []
        algs += list(ASYMMETRIC) if jwks else []
        self.algorithms = tuple(dict.fromkeys(algs))

    async def verify(self, token: str, *, require_exp: bool = True) -> dict[str, Any]:
        """The claims of a valid token; AuthFailed with the reason otherwise."""
        check_shape(token)
        header = _header(token)
        if "crit" in header:
            raise bearer_failure("token header has crit: no JWS extension is understood here")
        alg, kid = header.get("alg"), header.get("kid")
        if not isinstance(alg, str) or alg not in self.algorithms:
            accepted = ", ".join(self.algorithms)
            raise bearer_failure(f"token algorithm {alg!r} is not accepted ({accepted})")
        key = await self._key(alg, kid)
        return self._decode(token, key, alg, require_exp)

    async def _key(self, alg: str, kid: str | None) -> Any:
        if alg == HS256:
            return self._secret
        public = self._public
        if public is not None and public.alg == alg and (kid is None or self._jwks is None):
            return public.key  # a kid names a JWKS key when there is a JWKS
        found = await self._jwks.key(kid, alg) if self._jwks is not None else None
        if found is None:
            raise bearer_failure(f"no {alg} key with kid {kid!r} is known")
        return found

    def _decode(self, token: str, key: Any, alg: str, require_exp: bool) -> dict[str, Any]:
        try:
            return _DECODER.decode(
                token,
                key,
                algorithms=[alg],
                options={
                    "require": ["exp"] if require_exp else [],
                    "verify_aud": self._audience is not None,
                },
                issuer=self._issuer,
                audience=self._audience,
                leeway=LEEWAY_S,
            )
        except jwt.MissingRequiredClaimError as e:
            raise bearer_failure(f"token has no {e.claim!r} claim") from e
        except BadClaim as e:
            raise bearer_failure(str(e)) from e
        except jwt.PyJWTError as e:
            raise bearer_failure(_reason(e)) from e
        except (ValueError, TypeError, OverflowError, RecursionError) as e:
            # whatever a crafted token still makes the library trip over: a refusal, not a 500
            raise bearer_failure(f"token cannot be verified: {_short(e)}") from e


def check_shape(token: str) -> None:
    """Refuse, without decoding, what cannot be a compact JWS we accept: too long, not
    three strict base64url segments (no ``=``, nothing outside the alphabet, no bits set
    past the encoded bytes: a signature with its last character changed must fail)."""
    if len(token) > MAX_TOKEN_BYTES:
        raise bearer_failure(f"token is longer than {MAX_TOKEN_BYTES} bytes")
    if not token.isascii():  # (also what aiohttp made of bytes that are not UTF-8)
        raise bearer_failure("malformed token: a JWT is base64url text, this is not ASCII")
    parts = token.split(".")
    if len(parts) != 3:
        raise bearer_failure("malformed token: expected header.payload.signature")
    for name, part in zip(("header", "payload", "signature"), parts, strict=True):
        if not _SEGMENT.fullmatch(part) or not _canonical(part):
            raise bearer_failure(f"malformed token: the {name} is not strict base64url")


def _canonical(part: str) -> bool:
    # the unused low bits of a final partial group must be zero (RFC 4648 3.5)
    spare_bits = {0: 0, 2: 4, 3: 2}.get(len(part) % 4)
    if spare_bits is None:
        return False
    return _B64URL.index(part[-1]) & ((1 << spare_bits) - 1) == 0


def _header(token: str) -> dict[str, Any]:
    """The JOSE header of a token that passed :func:`check_shape` (not verified yet)."""
    segment = token.split(".", 1)[0]
    raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    try:
        header = json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise bearer_failure("malformed token: the header is not JSON") from e
    if not isinstance(header, dict):
        raise bearer_failure("malformed token: the header is not a JSON object")
    if not isinstance(header.get("kid", ""), str):
        raise bearer_failure("malformed token: the header's kid is not a string")
    return header


def _reason(error: jwt.PyJWTError) -> str:
    for kind, reason in _REASONS:
        if isinstance(error, kind):
            return reason
    return f"malformed token: {_short(error)}"


def _short(error: Exception) -> str:
    return str(error)[:200]


def sign_hs256(claims: Mapping[str, Any], secret: bytes) -> str:
    """An HS256 JWT for ``claims`` (for tests and local tooling)."""
    return jwt.encode(dict(claims), secret, algorithm=HS256)


def load_public_key(path: str, var: str) -> PinnedKey:
    """The PEM public key in ``path`` and its algorithm (RSA -> RS256, EC P-256 -> ES256);
    ConfigError naming ``var`` when the file cannot be read or holds something else."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ConfigError(var, f"cannot read {path!r}: {e.strerror}") from e
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as e:
        raise ConfigError(
            var, f"{path!r} is not a PEM public key (-----BEGIN PUBLIC KEY-----): {e}"
        ) from e
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise ConfigError(var, f"{path!r} is a {key.key_size}-bit RSA key; use >= 2048")
        return PinnedKey(key, RS256)
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return PinnedKey(key, ES256)
    kind = getattr(getattr(key, "curve", None), "name", type(key).__name__)
    raise ConfigError(var, f"{path!r} holds a {kind} key; use an RSA or EC P-256 public key")
