"""API keys and JWT verification (PyJWT: HS256, RS256, ES256) against hostile tokens."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given, settings
from hypothesis import strategies as st
from jwt.algorithms import RSAAlgorithm
from kubefuncs.errors import ConfigError
from kubefuncs.gateway.auth import Authenticator, AuthFailed, parse_auth, parse_policy, sign_hs256
from kubefuncs.gateway.tokens import JwtVerifier, PinnedKey, load_public_key

SECRET = b"0123456789abcdef0123456789abcdef"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
RSA_PEM = RSA_KEY.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
)
HS = JwtVerifier(secret=SECRET, issuer=None, audience=None)


def later(s: float = 3600) -> float:
    return time.time() + s


def enc(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def forge(header: Any, claims: Any, key: bytes = SECRET) -> str:
    """A token HMAC-SHA256-signed with ``key`` whatever its header and claims say (raw
    JSON given as bytes goes in as it is)."""
    head = header if isinstance(header, bytes) else json.dumps(header).encode()
    body = claims if isinstance(claims, bytes) else json.dumps(claims).encode()
    signing_input = f"{enc(head)}.{enc(body)}"
    sig = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{enc(sig)}"


async def refused(verifier: JwtVerifier, token: str, **kwargs: Any) -> str:
    with pytest.raises(AuthFailed) as raised:
        await verifier.verify(token, **kwargs)
    return raised.value.reason


async def test_a_valid_token_yields_its_claims() -> None:
    verifier = JwtVerifier(secret=SECRET, issuer="me", audience="api")
    token = sign_hs256({"sub": "ada", "exp": later(), "iss": "me", "aud": ["x", "api"]}, SECRET)
    claims = await verifier.verify(token)
    assert claims["sub"] == "ada"


HS256 = {"alg": "HS256", "typ": "JWT"}


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (sign_hs256({"exp": later()}, b"another-secret-0123456789abcdef!"), "signature"),
        (sign_hs256({"exp": time.time() - 31}, SECRET), "expired"),
        (sign_hs256({"exp": later(), "nbf": later(600)}, SECRET), "not valid yet"),
        (sign_hs256({"sub": "a"}, SECRET), "no 'exp' claim"),
        (sign_hs256({"exp": None}, SECRET), "'exp' must be a number"),
        (forge(HS256, b'{"exp": NaN}'), "'exp' must be a finite number"),
        (forge(HS256, b'{"exp": Infinity}'), "'exp' must be a finite number"),
        (forge(HS256, b'{"exp": 1e308}'), "'exp' must be a finite number"),
        (sign_hs256({"exp": 253402300800}, SECRET), "'exp' must be a finite number"),
        (sign_hs256({"exp": str(int(later()))}, SECRET), "'exp' must be a number"),
        (sign_hs256({"exp": True}, SECRET), "'exp' must be a number"),
        (sign_hs256({"exp": later(), "nbf": "0"}, SECRET), "'nbf' must be a number"),
        (sign_hs256({"exp": later(), "iat": [1]}, SECRET), "'iat' must be a number"),
        (forge({**HS256, "crit": ["b64"], "b64": True}, {"exp": later()}), "crit"),
        (forge({**HS256, "crit": ["x"]}, {"exp": later()}), "crit"),
        (forge({"alg": "none"}, {"exp": later()}), "algorithm 'none' is not accepted"),
        (forge({"alg": "None"}, {"exp": later()}), "algorithm 'None' is not accepted"),
        (forge({"alg": "RS256"}, {"exp": later()}), "algorithm 'RS256' is not accepted"),
        (forge({"alg": ["HS256"]}, {"exp": later()}), "is not accepted"),
        (forge({}, {"exp": later()}), "algorithm None is not accepted"),
        (forge({**HS256, "kid": 7}, {"exp": later()}), "kid is not a string"),
        (forge(HS256, [1, 2]), "malformed token"),
        (forge(HS256, b'"claims"'), "malformed token"),
        (forge(b"[" + b"1," * 2500 + b"1]", {}), "header is not a JSON object"),
        (forge(b"[" * 3000 + b"]" * 3000, {}), "header is not JSON"),  # parser recursion
        (forge(b"9" * 5000, {}), "header is not JSON"),  # over int()'s digit limit
        (forge(b"\xff\xfe{}", {}), "header is not JSON"),
        (forge(b"{} trailing", {}), "header is not JSON"),
        ("a.b", "expected header.payload.signature"),
        ("a.b.c.d", "expected header.payload.signature"),
        ("!!!.???.###", "not strict base64url"),
        ("e30.e30.", "not strict base64url"),  # an unsigned token: no signature at all
        ("x" * 9000, "longer than 8192 bytes"),
    ],
)
async def test_a_bad_token_is_refused_with_its_reason(token: str, reason: str) -> None:
    # Given a token that is wrong in one way / When it is verified / Then the reason says how
    assert reason in await refused(HS, token)


async def test_issuer_and_audience_are_checked_when_configured() -> None:
    verifier = JwtVerifier(secret=SECRET, issuer="me", audience="api")
    cases = [({"iss": "them", "aud": "api"}, "issuer"), ({"iss": "me", "aud": "x"}, "audience")]
    for claims, reason in cases:
        assert reason in await refused(verifier, sign_hs256({**claims, "exp": later()}, SECRET))
    # and an aud claim is ignored when no audience is configured (as before PyJWT)
    assert await HS.verify(sign_hs256({"aud": "anyone", "exp": later()}, SECRET))


def _altered(token: str, i: int, char: str) -> str:
    head, body, sig = token.split(".")
    segments = [head, body, sig]
    segments[i] = segments[i][:-1] + char
    return ".".join(segments)


async def test_the_encoding_is_strict_base64url() -> None:
    token = sign_hs256({"exp": later()}, SECRET)
    sig = token.rsplit(".", 1)[1]
    assert len(sig) % 4 == 3  # 32 bytes: the last character carries 2 unused bits
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(sig[-1])
    # When only the unused low bits of the signature's last character are flipped (the
    # same bytes for a lenient decoder) / Then the token is refused
    for flip in (1, 2, 3):
        altered = _altered(token, 2, alphabet[last ^ flip])
        assert "not strict base64url" in await refused(HS, altered)
    # and so is padding, a non-alphabet character, standard base64's + and /
    assert "base64url" in await refused(HS, token + "=")
    for bad in ("+", "/", "=", "*", "~"):
        assert "base64url" in await refused(HS, _altered(token, 2, bad))
    assert "base64url" in await refused(HS, _altered(token, 0, "="))
    assert "not ASCII" in await refused(HS, _altered(token, 1, "\u00e9"))
    # while a changed byte is a bad signature
    changed = _altered(token, 2, alphabet[last ^ 4])
    assert "signature" in await refused(HS, changed)
    assert await HS.verify(token)


async def test_expiry_tolerates_clock_skew_and_a_route_may_waive_exp() -> None:
    assert await HS.verify(sign_hs256({"exp": time.time() - 10}, SECRET))
    assert await HS.verify(sign_hs256({"sub": "cron"}, SECRET), require_exp=False)
    # a waived exp that is present is still checked, and must still be a number
    assert "expired" in await refused(
        HS, sign_hs256({"exp": time.time() - 60}, SECRET), require_exp=False
    )
    assert "number" in await refused(HS, forge(HS256, b'{"exp": NaN}'), require_exp=False)


def _pem_file(tmp_path: Path, key: Any, name: str = "key.pem") -> str:
    path = tmp_path / name
    path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return str(path)


async def test_rs256_and_es256_verify_with_their_public_keys(tmp_path: Path) -> None:
    rs = load_public_key(_pem_file(tmp_path, RSA_KEY, "rsa.pem"), "VAR")
    es = load_public_key(_pem_file(tmp_path, EC_KEY, "ec.pem"), "VAR")
    assert (rs.alg, es.alg) == ("RS256", "ES256")
    claims = {"sub": "ada", "exp": later()}
    rs_token = jwt.encode(claims, RSA_KEY, algorithm="RS256")
    es_token = jwt.encode(claims, EC_KEY, algorithm="ES256")
    assert (await JwtVerifier(public_key=rs).verify(rs_token))["sub"] == "ada"
    assert (await JwtVerifier(public_key=es).verify(es_token))["sub"] == "ada"
    # a key verifies its own algorithm only
    assert "'ES256' is not accepted" in await refused(JwtVerifier(public_key=rs), es_token)
    assert "'RS256' is not accepted" in await refused(JwtVerifier(public_key=es), rs_token)
    other = ec.generate_private_key(ec.SECP256R1())
    assert "signature" in await refused(
        JwtVerifier(public_key=es), jwt.encode(claims, other, algorithm="ES256")
    )


async def test_hs256_signed_with_the_rsa_public_key_never_verifies() -> None:
    # Given a token whose HMAC secret is the gateway's RSA public key (algorithm confusion)
    token = forge(HS256, {"sub": "root", "exp": later()}, key=RSA_PEM)
    rs = PinnedKey(RSA_KEY.public_key(), "RS256")
    # Then with only the RSA key configured, HS256 is not an accepted algorithm
    assert "'HS256' is not accepted (RS256)" in await refused(JwtVerifier(public_key=rs), token)
    # and with a secret too, HS256 tokens are checked against the secret alone
    both = JwtVerifier(secret=SECRET, public_key=rs)
    assert both.algorithms == ("HS256", "RS256")
    assert "signature" in await refused(both, token)
    # nor does RS256 with a valid RSA signature pass as HS256 against the secret
    rs_token = jwt.encode({"exp": later()}, RSA_KEY, algorithm="RS256")
    assert "'RS256' is not accepted (HS256)" in await refused(HS, rs_token)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "cannot read"),
        (b"not a key", "is not a PEM public key"),
        (b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "not a PEM"),
        ("small-rsa", "1024-bit RSA key"),
        ("p384", "secp384r1 key"),
    ],
)
def test_a_bad_public_key_file_names_its_variable(
    tmp_path: Path, content: Any, problem: str
) -> None:
    path = str(tmp_path / "key.pem")
    if content == "small-rsa":
        path = _pem_file(tmp_path, rsa.generate_private_key(public_exponent=65537, key_size=1024))
    elif content == "p384":
        path = _pem_file(tmp_path, ec.generate_private_key(ec.SECP384R1()))
    elif content is not None:
        Path(path).write_bytes(content)
    with pytest.raises(ConfigError) as raised:
        load_public_key(path, "KF_GATEWAY_JWT_PUBLIC_KEY_FILE")
    assert raised.value.variable == "KF_GATEWAY_JWT_PUBLIC_KEY_FILE"
    assert problem in raised.value.problem


def test_a_short_secret_is_refused_at_start() -> None:
    with pytest.raises(ConfigError, match="KF_GATEWAY_JWT_SECRET must be at least 32 bytes"):
        JwtVerifier(secret=b"x" * 31)


AUTH = Authenticator({"key-0123456789": "ci"}, HS)


async def test_policies_choose_the_credential() -> None:
    bearer = {"Authorization": "Bearer " + sign_hs256({"sub": "ada", "exp": later()}, SECRET)}
    key = {"X-Api-Key": "key-0123456789"}
    assert await AUTH.check("none", {}) is None
    assert (await AUTH.check("api_key", key)).name == "ci"  # type: ignore[union-attr]
    assert (await AUTH.check("jwt", bearer)).name == "ada"  # type: ignore[union-attr]
    assert (await AUTH.check("any", bearer)).method == "jwt"  # type: ignore[union-attr]
    assert (await AUTH.check("any", key)).method == "api_key"  # type: ignore[union-attr]
    with pytest.raises(AuthFailed, match="X-Api-Key"):
        await AUTH.check("api_key", bearer)
    with pytest.raises(AuthFailed, match="not valid"):
        await AUTH.check("api_key", {"X-Api-Key": "wrong-key-123"})


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        # aiohttp hands header bytes that are not UTF-8 over as lone surrogates
        ({"X-Api-Key": "key-\udcff\udcfe"}, "X-Api-Key is not valid UTF-8"),
        ({"X-Api-Key": "\ud800"}, "X-Api-Key is not valid UTF-8"),
        ({"Authorization": "Bearer \udcff.\udcfe.\udc80"}, "not ASCII"),
        ({"Authorization": "Bearer e30.e30.\udcff"}, "not ASCII"),
        ({"Authorization": "Basic \udcff"}, "authentication required"),
    ],
)
async def test_credentials_that_are_not_utf8_are_refused_with_a_reason(
    headers: dict[str, str], reason: str
) -> None:
    with pytest.raises(AuthFailed) as raised:
        await AUTH.check("any", headers)
    assert reason in raised.value.reason


def test_a_policy_without_credentials_configured_cannot_pass() -> None:
    auth = Authenticator({}, None)
    assert auth.can("none") and not auth.can("api_key") and not auth.can("jwt")
    assert not auth.can("any")
    assert not Authenticator({}, JwtVerifier()).can("jwt")


@pytest.mark.parametrize(
    ("value", "policy", "require_exp"),
    [
        (None, "none", True),
        (False, "none", True),
        (True, "any", True),
        ("API-KEY", "api_key", True),
        ({"type": "jwt"}, "jwt", True),
        ({"type": "jwt", "require_exp": False}, "jwt", False),
        ({"type": True, "require_exp": False}, "any", False),
    ],
)
def test_route_auth_values(value: object, policy: str, require_exp: bool) -> None:
    assert parse_auth(value, "auth") == (policy, require_exp)
    assert parse_policy(value, "auth") == policy


@pytest.mark.parametrize(
    ("value", "where", "problem"),
    [
        ({"type": "jwt", "require_exp": "no"}, "auth.require_exp", "true or false"),
        ({"type": "api_key", "require_exp": False}, "auth.require_exp", "not to api_key"),
        ({"require_exp": False}, "auth.type", "is missing"),
        ({"type": "jwt", "exp": False}, "auth", "unknown keys ['exp']"),
        ({"type": "magic"}, "auth.type", "must be one of"),
    ],
)
def test_bad_route_auth_values_name_the_field(value: object, where: str, problem: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_auth(value, "auth")
    assert raised.value.variable == where and problem in raised.value.problem


class OneKeySource:
    """A KeySource holding one JWKS key (the real cache is tested in test_jwks.py)."""

    def __init__(self, key: jwt.PyJWK) -> None:
        self._key = key

    async def key(self, kid: str | None, alg: str) -> jwt.PyJWK | None:
        ok = self._key.algorithm_name == alg and kid in (None, self._key.key_id)
        return self._key if ok else None


async def test_with_a_key_file_and_a_jwks_the_kid_chooses() -> None:
    # Given a public key file (RSA key 1) and a JWKS holding RSA key 2 as kid "two"
    two = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = jwt.PyJWK({**RSAAlgorithm.to_jwk(two.public_key(), as_dict=True), "kid": "two"})
    verifier = JwtVerifier(
        public_key=PinnedKey(RSA_KEY.public_key(), "RS256"), jwks=OneKeySource(jwk)
    )
    claims = {"exp": later()}
    # Then a token without kid is the file's, one with a kid the JWKS's
    assert await verifier.verify(jwt.encode(claims, RSA_KEY, "RS256"))
    assert await verifier.verify(jwt.encode(claims, two, "RS256", headers={"kid": "two"}))
    with_kid = jwt.encode(claims, RSA_KEY, "RS256", headers={"kid": "two"})
    assert "signature" in await refused(verifier, with_kid)
    unknown = jwt.encode(claims, RSA_KEY, "RS256", headers={"kid": "one"})
    assert "no RS256 key with kid 'one'" in await refused(verifier, unknown)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=12,
)
HEADERS = st.fixed_dictionaries(
    {"alg": st.sampled_from(["HS256", "none", "RS256", "hs256"]) | JSON},
    optional={k: JSON for k in ("kid", "crit", "b64", "typ", "jku")},
)
CLAIMS = st.dictionaries(
    st.sampled_from(["exp", "nbf", "iat", "iss", "aud", "sub", "jti"]) | st.text(max_size=4),
    JSON | st.floats(min_value=0, max_value=4e9),
    max_size=7,
)


def test_any_signed_token_is_verified_or_refused_with_a_reason() -> None:
    with asyncio.Runner() as runner:  # one loop for all the examples

        @settings(max_examples=300, deadline=None)
        @given(header=HEADERS | JSON, claims=CLAIMS | JSON, mangle=st.integers(0, 3))
        def check(header: Any, claims: Any, mangle: int) -> None:
            # Given a correctly signed token whatever its header and claims, maybe altered
            token = forge(header, claims)
            token = [token, token[:-1], token + "=", token.replace(".", "..", 1)][mangle]
            # When it is verified / Then it yields claims or AuthFailed, never another error
            try:
                out = runner.run(HS.verify(token, require_exp=bool(mangle % 2)))
            except AuthFailed as e:
                assert e.reason
            else:
                assert isinstance(out, dict) and header.get("alg") == "HS256"

        check()
