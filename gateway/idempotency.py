"""Idempotency keys: a route with ``idempotency`` answers a repeated ``Idempotency-Key``
with the first call's response instead of invoking the function again.

The decisions (is the key valid, does a stored record match this request, is a response
final) are pure functions; :class:`Guard` runs them around one invocation. Records live
where the gateway's other shared state lives: on a Valkey bus under
``<prefix>:gw:idem:<sha256 of route|client|key>`` (shared by every replica), otherwise in a
bounded map in this process (NSQ, memory bus: per replica).

A record is a msgpack map: ``t`` the claim's token, ``f`` the request's fingerprint, and
when the call finished, ``r`` its stored response (:class:`CallResult` fields).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import msgpack  # type: ignore[import-untyped, unused-ignore]
from aiohttp import web
from kubefuncs import wire
from kubefuncs.errors import ConfigError, TransportError
from kubefuncs.transport._recent import Recent

from .calls import DONE, CallResult, unpack_map
from .responses import error_response

log = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
DEFAULT_TTL_S = 86_400.0
MAX_KEY_CHARS = 255
CLAIM_MARGIN_S = 10.0  # a claim outlives the route's timeout by this much (a dead replica)
# a function's "try later" answers are not final: the client should be able to retry
NOT_FINAL = frozenset({408, 425, 429})


@dataclass(frozen=True, slots=True)
class Idempotency:
    ttl_s: float = DEFAULT_TTL_S  # how long a finished call's response is replayed


def parse_idempotency(value: Any, where: str) -> Idempotency | None:
    """``idempotency: true`` (24 h) or ``{ttl_s: N}``; false or absent: off."""
    if value is None or value is False:
        return None
    if value is True:
        return Idempotency()
    if not isinstance(value, dict):
        raise ConfigError(where, f"must be true, false or a mapping {{ttl_s: N}}, got {value!r}")
    unknown = set(value) - {"ttl_s"}
    if unknown:
        raise ConfigError(where, f"has unknown keys {sorted(unknown)} (expected ttl_s)")
    ttl = value.get("ttl_s", DEFAULT_TTL_S)
    if not isinstance(ttl, int | float) or isinstance(ttl, bool) or not 1 <= ttl <= 30 * 86_400:
        raise ConfigError(
            f"{where}.ttl_s", f"must be a number of seconds from 1 to 2592000, got {ttl!r}"
        )
    return Idempotency(float(ttl))


def parse_key(values: list[str]) -> tuple[str, str | None]:
    """The key in the request's ``Idempotency-Key`` headers, or the reason it is refused.
    A key is 1-255 visible ASCII characters; the draft's structured form (a quoted string,
    ``"abc"``) is taken without its quotes."""
    if len(values) != 1:
        return "", f"send one {HEADER} header, got {len(values)}"
    value = values[0]
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    if not 1 <= len(value) <= MAX_KEY_CHARS:
        return "", f"{HEADER} must be 1-{MAX_KEY_CHARS} characters, got {len(value)}"
    if not all("!" <= c <= "~" for c in value) or '"' in value or "\\" in value:
        return "", f"{HEADER} may hold only visible ASCII characters (no spaces, quotes)"
    return value, None


def fingerprint(method: str, path: str, query: str, body: bytes) -> str:
    """What makes two requests "the same request" for a key: method, path, query, body."""
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode(), query.encode()):
        digest.update(b"%d:%s" % (len(part), part))
    digest.update(body)
    return digest.hexdigest()


def is_final(status: int) -> bool:
    """Whether a response is kept for replays: 2xx-4xx, but for "try later" answers. A 5xx
    (function error, timeout, bus down) releases the key so the client may retry."""
    return 200 <= status < 500 and status not in NOT_FINAL


@dataclass(frozen=True, slots=True)
class Record:
    token: str
    fingerprint: str
    result: CallResult | None = None  # None: still running

    def encode(self) -> bytes:
        fields: dict[str, Any] = {"t": self.token, "f": self.fingerprint}
        if self.result is not None:
            fields["r"] = self.result.fields()
        packed: bytes = msgpack.packb(fields, use_bin_type=True)
        return packed

    @classmethod
    def decode(cls, raw: bytes) -> Record:
        """The record in ``raw``; ValueError when it is malformed."""
        d = unpack_map(raw)
        token, print_, result = d.get("t"), d.get("f"), d.get("r")
        if not isinstance(token, str) or not isinstance(print_, str):
            raise ValueError("t and f must be strings")
        if result is not None and not isinstance(result, dict):
            raise ValueError("r must be a map")
        return cls(token, print_, None if result is None else CallResult.from_fields(result))


class Store(Protocol):
    async def claim(self, key: str, claim: bytes, ttl_s: float) -> bytes | None:
        """Store ``claim`` unless ``key`` holds a record; None when stored, else that record."""

    async def finish(self, key: str, claim: bytes, record: bytes, ttl_s: float) -> None:
        """Replace our ``claim`` (or nothing, if it expired) with the finished ``record``."""

    async def release(self, key: str, claim: bytes) -> None:
        """Forget ``key`` if it still holds our ``claim``."""


MAX_ITEMS = 100_000
MAX_BYTES = 64 * 1024 * 1024


class MemoryStore:
    """Records in this process, forgotten after their TTL; at most ``max_items`` and about
    ``max_bytes``, the oldest dropped first (a replica that forgets a key early invokes
    the function again: the bound keeps hostile keys from exhausting memory)."""

    def __init__(
        self,
        *,
        max_items: int = MAX_ITEMS,
        max_bytes: int = MAX_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.records = Recent(max_items=max_items, max_bytes=max_bytes, clock=clock)

    def __len__(self) -> int:
        return len(self.records)

    async def claim(self, key: str, claim: bytes, ttl_s: float) -> bytes | None:
        held = self.records.get(key)
        if held is None:
            self.records.put(key, claim, ttl_s)
        return held

    async def finish(self, key: str, claim: bytes, record: bytes, ttl_s: float) -> None:
        if self.records.get(key) in (None, claim):
            self.records.put(key, record, ttl_s)

    async def release(self, key: str, claim: bytes) -> None:
        if self.records.get(key) == claim:
            self.records.pop(key)


CLAIM = """
local held = redis.call('GET', KEYS[1])
if held then
  return held
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
"""
FINISH = """
local held = redis.call('GET', KEYS[1])
if held == false or held == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
return 1
"""
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
return 1
"""


class ValkeyStore:
    """Records on the bus, shared by every replica; each step is one script (atomic)."""

    def __init__(self, call: Callable[..., Awaitable[Any]], prefix: str) -> None:
        self._call = call
        self._prefix = f"{prefix}:gw:idem:"

    async def claim(self, key: str, claim: bytes, ttl_s: float) -> bytes | None:
        held = await self._call("EVAL", CLAIM, 1, self._prefix + key, claim, _ms(ttl_s))
        return bytes(held) if held else None

    async def finish(self, key: str, claim: bytes, record: bytes, ttl_s: float) -> None:
        await self._call("EVAL", FINISH, 1, self._prefix + key, claim, record, _ms(ttl_s))

    async def release(self, key: str, claim: bytes) -> None:
        await self._call("EVAL", RELEASE, 1, self._prefix + key, claim)


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


Invoke = Callable[[], Awaitable[web.Response]]


class Guard:
    """Runs an invocation at most once per key: the first request claims the key, later
    ones get the stored response (or 409 while it runs, 422 for another request)."""

    def __init__(self, store: Store, replayed: Callable[[str], None]) -> None:
        self.store = store
        self._replayed = replayed  # counts a replay, by route

    async def serve(
        self,
        request: web.Request,
        scope: tuple[str, str],
        body: bytes,
        ttl_s: float,
        timeout_s: float,
        invoke: Invoke,
    ) -> web.Response:
        """Answer ``request`` on a route with idempotency: 400 for a bad key, else
        :meth:`run` for (route, client) ``scope``, replays kept ``ttl_s``; a claim lasts the
        route's ``timeout_s`` and a margin."""
        key, problem = parse_key(request.headers.getall(HEADER))
        if problem is not None:
            return error_response(400, "bad_idempotency_key", problem)
        seen = fingerprint(request.method, request.path, request.query_string, body)
        claim_s = timeout_s + CLAIM_MARGIN_S
        return await self.run((*scope, key), seen, ttl_s, claim_s, invoke)

    async def run(
        self,
        scope: tuple[str, str, str],
        print_: str,
        ttl_s: float,
        claim_s: float,
        invoke: Invoke,
    ) -> web.Response:
        """``invoke()`` unless the key of ``scope`` (route, client, key) was seen; replays
        are kept ``ttl_s``, a claim ``claim_s``. TransportError when the store cannot be
        reached before the call (the caller answers 503)."""
        route = scope[0]
        name = hashlib.sha256("|".join(scope).encode()).hexdigest()
        mine = Record(wire.new_id(), print_)
        claim = mine.encode()
        held = await self.store.claim(name, claim, claim_s)
        if held is not None:
            refusal = self._answer(route, held, print_)
            if refusal is not None:
                return refusal
            await self.store.finish(name, held, claim, claim_s)  # a malformed record: ours now
        return await self._first(name, claim, mine, ttl_s, invoke)

    def _answer(self, route: str, held: bytes, print_: str) -> web.Response | None:
        try:
            record = Record.decode(held)
        except ValueError as e:
            log.warning("replaced a malformed idempotency record: %s", e)
            return None
        if record.fingerprint != print_:
            return error_response(
                422,
                "idempotency_key_reused",
                f"this {HEADER} was used for another request (method, path, query or body "
                "differ); use a new key for a new request",
            )
        if record.result is None:
            response = error_response(
                409,
                "idempotency_in_progress",
                f"a request with this {HEADER} is still being processed; retry later",
            )
            response.headers["Retry-After"] = "1"
            return response
        self._replayed(route)
        return replay(record.result)

    async def _first(
        self, name: str, claim: bytes, mine: Record, ttl_s: float, invoke: Invoke
    ) -> web.Response:
        try:
            response = await invoke()
        except BaseException:
            await self.store.release(name, claim)
            raise
        try:
            if is_final(response.status):
                result = CallResult(DONE, response.status, dict(response.headers), _body(response))
                done = Record(mine.token, mine.fingerprint, result).encode()
                await self.store.finish(name, claim, done, ttl_s)
            else:
                await self.store.release(name, claim)
        except TransportError as e:  # the call happened: answer it; the claim expires
            log.warning("could not store an idempotent response: %s", e)
        return response


def replay(result: CallResult) -> web.Response:
    headers = {**result.headers, REPLAYED: "true"}
    return web.Response(status=result.status, headers=headers, body=result.body)


def _body(response: web.Response) -> bytes:
    body = response.body
    return bytes(body) if isinstance(body, bytes | bytearray) else b""
