"""The JWKS cache against a real aiohttp provider on loopback that counts its fetches:
TTL, the refetch interval for unknown kids, single flight, a failing provider."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from kubefuncs.gateway.errors import AuthFailed, AuthUnavailable
from kubefuncs.gateway.jwks import JwksCache, JwksError, parse_jwks
from kubefuncs.gateway.tokens import JwtVerifier

RSA_A = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_B = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_C = ec.generate_private_key(ec.SECP256R1())
TTL_S, MIN_REFETCH_S = 300.0, 30.0


def rsa_jwk(key: rsa.RSAPrivateKey, kid: str, **extra: Any) -> dict[str, Any]:
    return {**RSAAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": kid, **extra}


def ec_jwk(key: ec.EllipticCurvePrivateKey, kid: str) -> dict[str, Any]:
    return {**ECAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": kid}


def token(key: Any, kid: str | None, alg: str = "RS256") -> str:
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode({"sub": "ada", "exp": time.time() + 3600}, key, alg, headers=headers)


class Provider:
    """A JWKS endpoint that counts fetches; ``gate`` (when set) holds answers back."""

    def __init__(self) -> None:
        self.keys: list[Any] = [rsa_jwk(RSA_A, "a"), ec_jwk(EC_C, "c")]
        self.status = 200
        self.fetches = 0
        self.gate: asyncio.Event | None = None
        self.url = ""

    async def handle(self, _: web.Request) -> web.Response:
        self.fetches += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.status != 200:
            return web.Response(status=self.status, text="provider trouble")
        return web.json_response({"keys": self.keys})


@contextlib.asynccontextmanager
async def provider() -> AsyncIterator[Provider]:
    p = Provider()
    app = web.Application()
    app.router.add_get("/jwks.json", p.handle)
    runner = web.AppRunner(app, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    p.url = f"http://{host}:{port}/jwks.json"
    try:
        yield p
    finally:
        if p.gate is not None:
            p.gate.set()
        await runner.cleanup()


@contextlib.asynccontextmanager
async def cache_for(
    p: Provider, now: list[float], **options: Any
) -> AsyncIterator[tuple[JwksCache, JwtVerifier]]:
    cache = JwksCache(
        p.url, ttl_s=TTL_S, min_refetch_s=MIN_REFETCH_S, clock=lambda: now[0], **options
    )
    await cache.start()
    try:
        yield cache, JwtVerifier(jwks=cache)
    finally:
        await cache.close()


async def until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_keys_are_fetched_once_and_refreshed_after_the_ttl() -> None:
    now = [0.0]
    async with provider() as p, cache_for(p, now) as (cache, verifier):
        # When tokens of both keys are verified many times within the TTL
        for _ in range(10):
            assert (await verifier.verify(token(RSA_A, "a")))["sub"] == "ada"
            assert await verifier.verify(token(EC_C, "c", "ES256"))
        # Then the provider was asked once
        assert p.fetches == 1 == cache.fetches
        # When the TTL has passed / Then the cached key still serves at once while one
        # background fetch refreshes the set
        now[0] = TTL_S
        assert await verifier.verify(token(RSA_A, "a"))
        assert await verifier.verify(token(RSA_A, "a"))
        await until(lambda: p.fetches == 2)
        assert await verifier.verify(token(RSA_A, "a"))
        assert p.fetches == 2


async def test_an_unknown_kid_refetches_at_most_once_per_interval() -> None:
    now = [0.0]
    async with provider() as p, cache_for(p, now) as (_, verifier):
        assert await verifier.verify(token(RSA_A, "a"))
        # Given the provider has rotated in key b, and the interval has passed
        p.keys.append(rsa_jwk(RSA_B, "b"))
        now[0] = MIN_REFETCH_S
        # When 50 forged kids arrive
        for _ in range(50):
            with pytest.raises(AuthFailed, match="no RS256 key with kid"):
                await verifier.verify(token(RSA_B, uuid.uuid4().hex))
        # Then one of them made one fetch (which brought key b), no more
        assert p.fetches == 2
        assert await verifier.verify(token(RSA_B, "b"))
        # When key c's kid is seen with another algorithm's token / Then no key matches
        with pytest.raises(AuthFailed, match="no RS256 key with kid 'c'"):
            await verifier.verify(token(RSA_A, "c"))
        # When a new key d appears before the interval has passed, it is not known yet
        p.keys.append(rsa_jwk(RSA_A, "d"))
        now[0] = MIN_REFETCH_S * 1.5
        with pytest.raises(AuthFailed, match="kid 'd'"):
            await verifier.verify(token(RSA_A, "d"))
        # and once the interval has passed, it is
        now[0] = MIN_REFETCH_S * 2
        assert await verifier.verify(token(RSA_A, "d"))
        assert p.fetches == 3


async def test_concurrent_misses_share_one_fetch() -> None:
    now = [0.0]
    async with provider() as p:
        # Given a provider that holds its answer back
        p.gate = asyncio.Event()
        async with cache_for(p, now) as (_, verifier):
            # When 40 requests need keys while the first fetch is in flight
            tokens = [token(RSA_A, "a"), token(EC_C, "c", "ES256")] * 20
            pending = asyncio.gather(*(verifier.verify(t) for t in tokens))
            await until(lambda: p.fetches == 1)
            await asyncio.sleep(0.05)
            p.gate.set()
            results = await asyncio.wait_for(pending, 5)
            # Then all verify, after one fetch
            assert len(results) == 40 and p.fetches == 1
            # And a burst of unknown kids once the interval has passed: one fetch too
            now[0] = MIN_REFETCH_S
            p.gate.clear()
            misses = asyncio.gather(
                *(verifier.verify(token(RSA_A, f"x{i}")) for i in range(20)),
                return_exceptions=True,
            )
            await until(lambda: p.fetches == 2)
            p.gate.set()
            outcomes = await asyncio.wait_for(misses, 5)
            assert all(isinstance(o, AuthFailed) for o in outcomes) and p.fetches == 2


@pytest.mark.parametrize("trouble", ["http-500", "not-json", "no-keys", "hangs", "down"])
async def test_a_failing_provider_keeps_the_last_good_keys(
    trouble: str, caplog: pytest.LogCaptureFixture
) -> None:
    now = [0.0]
    async with provider() as p, cache_for(p, now, timeout_s=0.3) as (cache, verifier):
        assert await verifier.verify(token(RSA_A, "a"))
        # Given the provider now fails
        if trouble == "http-500":
            p.status = 500
        elif trouble == "not-json":
            p.keys = "oops"  # type: ignore[assignment]
        elif trouble == "no-keys":
            p.keys = [{"kty": "oct", "k": "c2VjcmV0", "kid": "a"}]
        elif trouble == "hangs":
            p.gate = asyncio.Event()
        else:
            cache.url = "http://127.0.0.1:9/jwks.json"  # nothing listens there
        # When the TTL passes and an unknown kid asks for a refetch
        now[0] = TTL_S
        assert await verifier.verify(token(RSA_A, "a"))
        await until(lambda: cache.fetches == 2)
        with pytest.raises(AuthFailed, match="kid 'zz'"):
            await verifier.verify(token(RSA_A, "zz"))
        await until(lambda: not cache._fetching())
        # Then the last good keys still serve, a warning says why, and no traceback
        assert await verifier.verify(token(RSA_A, "a"))
        assert any("cannot fetch the JWKS" in r.getMessage() for r in caplog.records)
        assert not [r for r in caplog.records if r.exc_info]


@pytest.mark.parametrize("trouble", ["http-500", "hangs"])
async def test_without_any_good_fetch_a_token_gets_auth_unavailable(trouble: str) -> None:
    now = [0.0]
    async with provider() as p:
        if trouble == "http-500":
            p.status = 503
        else:
            p.gate = asyncio.Event()
        async with cache_for(p, now, timeout_s=0.3) as (_, verifier):
            started = time.monotonic()
            with pytest.raises(AuthUnavailable) as raised:
                await verifier.verify(token(RSA_A, "a"))
            # Then it says so, with a retry hint, within the fetch timeout
            assert raised.value.retry_after_s >= 1
            assert time.monotonic() - started < 3
            # and a second token does not refetch within the interval
            with pytest.raises(AuthUnavailable):
                await verifier.verify(token(RSA_A, "a"))
            assert p.fetches == 1


def test_only_public_rs256_and_es256_signing_keys_are_taken() -> None:
    private = {**rsa_jwk(RSA_A, "priv"), "d": "AQAB"}
    members = [
        rsa_jwk(RSA_A, "good"),
        {"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0", "kid": "hmac"},
        private,
        rsa_jwk(RSA_B, "enc", use="enc"),
        {"kty": "RSA", "kid": "broken", "n": "AQAB"},  # no e: PyJWK raises KeyError
        {**ec_jwk(EC_C, "p384"), "crv": "P-384"},
        rsa_jwk(rsa.generate_private_key(public_exponent=65537, key_size=1024), "small"),
        "not a key",
        7,
    ]
    keys = parse_jwks(__import__("json").dumps({"keys": members}).encode())
    assert [k.key_id for k in keys] == ["good"]
    for body in (b"[]", b'{"keys": 1}', b"{", b'{"keys": [{"kty": "oct", "k": "AA"}]}'):
        with pytest.raises(JwksError):
            parse_jwks(body)
