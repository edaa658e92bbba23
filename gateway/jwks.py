"""The signing keys of an OIDC provider (a JWKS URL), fetched with aiohttp and cached.

Keys are kept ``ttl_s`` and then refreshed in the background while the old ones keep
serving. A token naming a ``kid`` the cache does not hold triggers a fetch, but at most one
per ``min_refetch_s``: forged kids cannot make the gateway hammer the provider. Concurrent
misses share one fetch. A failing provider changes nothing: the last good keys keep
serving; before any fetch ever succeeded a token gets 503 ``auth_unavailable``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from .errors import AuthUnavailable
from .tokens import MIN_RSA_BITS

log = logging.getLogger("kubefuncs.gateway.jwks")

MAX_JWKS_BYTES = 1024 * 1024
ACCEPTED = frozenset({"RS256", "ES256"})  # never a symmetric key from the network


class JwksError(Exception):
    """The provider's answer is not a usable key set."""


class JwksCache:
    """One provider's keys; ``start`` opens its HTTP client and fetches in the background."""

    def __init__(
        self,
        url: str,
        *,
        ttl_s: float = 300.0,
        min_refetch_s: float = 30.0,
        timeout_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self._ttl_s = ttl_s
        self._min_refetch_s = min_refetch_s
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._clock = clock
        self._keys: tuple[jwt.PyJWK, ...] = ()
        self._fetched_s: float | None = None  # last good fetch
        self._tried_s: float | None = None  # last attempt, good or not
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self.fetches = 0  # attempts so far

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        self._refresh()

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def key(self, kid: str | None, alg: str) -> jwt.PyJWK | None:
        """The key for ``kid`` (or the one key for ``alg`` when the token names none)."""
        found = self._find(kid, alg)
        if found is not None:
            if self._stale() and self._due():
                self._refresh()  # in the background: the key in hand still serves
            return found
        if self._due() or self._fetching():
            await asyncio.shield(self._refresh())
            found = self._find(kid, alg)
        if found is None and self._fetched_s is None:
            wait_s = self._min_refetch_s - (self._clock() - (self._tried_s or 0.0))
            raise AuthUnavailable(
                "the token signing keys could not be fetched yet; retry", max(1.0, wait_s)
            )
        return found

    def _find(self, kid: str | None, alg: str) -> jwt.PyJWK | None:
        matches = [
            k for k in self._keys if k.algorithm_name == alg and (kid is None or k.key_id == kid)
        ]
        return matches[0] if len(matches) == 1 else None

    def _stale(self) -> bool:
        return self._fetched_s is None or self._clock() - self._fetched_s >= self._ttl_s

    def _due(self) -> bool:
        return self._tried_s is None or self._clock() - self._tried_s >= self._min_refetch_s

    def _fetching(self) -> bool:
        return self._task is not None and not self._task.done()

    def _refresh(self) -> asyncio.Task[None]:
        """The fetch in progress, or a new one (single flight)."""
        if self._task is None or self._task.done():
            self._tried_s = self._clock()
            self._task = asyncio.create_task(self._fetch())
        return self._task

    async def _fetch(self) -> None:
        self.fetches += 1
        try:
            keys = parse_jwks(await self._get())
        except Exception as e:  # whatever the provider answers, requests go on
            kept = f"keeping the {len(self._keys)} key(s) of the last good fetch"
            log.warning("cannot fetch the JWKS from %s: %r; %s", self.url, e, kept)
            return
        self._keys, self._fetched_s = keys, self._clock()
        log.info("fetched %d signing key(s) from %s", len(keys), self.url)

    async def _get(self) -> bytes:
        if self._session is None:
            raise JwksError("the JWKS client is not started")
        async with self._session.get(self.url, allow_redirects=False) as response:
            if response.status != 200:
                raise JwksError(f"HTTP {response.status}")
            body = bytearray()
            async for chunk in response.content.iter_chunked(64 * 1024):
                body += chunk
                if len(body) > MAX_JWKS_BYTES:
                    raise JwksError(f"the key set is larger than {MAX_JWKS_BYTES} bytes")
            return bytes(body)


def parse_jwks(body: bytes) -> tuple[jwt.PyJWK, ...]:
    """The RS256/ES256 public signing keys of a JWKS document (members that are not, or
    cannot be built, are skipped); JwksError when none is left."""
    try:
        doc: Any = json.loads(body)
    except (ValueError, RecursionError) as e:
        raise JwksError(f"the key set is not JSON: {e}") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
        raise JwksError('the key set is not an object with a "keys" list')
    keys = tuple(k for k in map(_signing_key, doc["keys"]) if k is not None)
    if not keys:
        raise JwksError("the key set has no usable RS256 or ES256 public signing key")
    return keys


def _signing_key(member: Any) -> jwt.PyJWK | None:
    if not isinstance(member, dict) or "d" in member or member.get("use", "sig") != "sig":
        return None  # not a JWK, a private key, or an encryption key
    try:
        key = jwt.PyJWK(member)
    except (jwt.PyJWTError, KeyError, TypeError, ValueError, AttributeError) as e:
        log.debug("skipping JWKS member %r: %s", member.get("kid"), e)
        return None
    if key.algorithm_name not in ACCEPTED:
        return None
    if isinstance(key.key, rsa.RSAPublicKey) and key.key.key_size < MIN_RSA_BITS:
        return None  # PyJWT would refuse every token signed with it
    return key
