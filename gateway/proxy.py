"""The request path: route -> checks -> http-request message -> reply -> response.

Every decision (route match, auth, CORS, token bucket, status mapping) is a pure function
elsewhere; this module only strings them together around the bus I/O. It is the hot path:
no per-request loggers, label lookups or task creation for sync calls.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Mapping
from functools import partial
from typing import Any, NamedTuple

import aiohttp
from aiohttp import web
from kubefuncs import tracing, wire
from kubefuncs.errors import TransportError
from kubefuncs.replies import ReplyRouter
from kubefuncs.tracing import PRODUCER, SERVER
from kubefuncs.transport import Transport
from kubefuncs.transport._flow import backoff_s
from yarl import URL

from . import cors, idempotency, middleware
from .auth import ANY, NONE, Authenticator, AuthFailed, AuthUnavailable, Principal
from .callbacks import CALLBACK_HEADER, BadCallback, callback_url, post_callback
from .calls import DONE, PENDING, CallResult, CallStore, owner_of
from .metrics import GatewayMetrics
from .ratelimit import FailureBudget, Limiter
from .responses import (
    CALL_ID,
    error_response,
    from_reply,
    request_headers,
    retry_after,
    retry_later,
    throttled,
    timeout_response,
)
from .routes import Route, RouteTable
from .settings import GatewaySettings
from .trace import child_traceparent, trace_id

log = logging.getLogger("kubefuncs.gateway")
access_log = logging.getLogger("kubefuncs.gateway.access")

MAX_JSON_DEPTH = 100  # of a published JSON body; consumers refuse deeper payloads
UNMATCHED = "unmatched"  # the metrics label of a topic nobody configured
_CALL_ID = re.compile(r"[0-9a-f]{32}")


class Outgoing(NamedTuple):
    """A routed request as it goes on the bus."""

    id: str
    trace: dict[str, str]  # the envelope's trace headers
    message: bytes


class Gateway:
    """Holds the gateway's collaborators; its methods are the aiohttp handlers."""

    def __init__(
        self,
        settings: GatewaySettings,
        table: RouteTable,
        transport: Transport,
        *,
        limiter: Limiter,
        store: CallStore,
        metrics: GatewayMetrics,
        once: idempotency.Store | None = None,
    ) -> None:
        self.settings = settings
        self.table = table
        self.transport = transport
        self.replies = ReplyRouter(transport)
        self.auth = Authenticator.from_settings(settings)
        self.limiter = limiter
        self.failures = FailureBudget(
            limiter, settings.auth_failures_per_min, settings.auth_failures_burst
        )
        self.store = store
        self.metrics = metrics
        self._tracer = tracing.current()  # None unless OTEL_* ask for traces
        self.guard = idempotency.Guard(once or idempotency.MemoryStore(), metrics.replayed)
        self.address = ""  # reply inbox, opened by start()
        self.session: aiohttp.ClientSession | None = None  # for callbacks
        self.in_flight = 0
        self.draining = False
        self._background: set[asyncio.Task[None]] = set()
        metrics.watch_late(lambda: self.replies.late)
        metrics.in_flight.set_function(lambda: self.in_flight)

    async def start(self) -> None:
        """Open this process's reply inbox; while the bus is unreachable keep trying in the
        background (not ready, routed requests get 503) instead of failing to start."""
        try:
            self.address = await self.replies.address()
        except TransportError as e:
            log.warning("cannot open the reply inbox (%s); not ready until it opens", e)
            self._spawn(self._open_inbox())

    async def _open_inbox(self) -> None:
        failures = 0
        while not self.address:
            failures += 1
            await asyncio.sleep(backoff_s(failures))
            try:
                self.address = await self.replies.address()
            except TransportError as e:
                log.debug("reply inbox still not open: %s", e)
        log.info("reply inbox open; ready")

    async def stop(self) -> None:
        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.wait(self._background)
        await self.replies.close()

    @property
    def ready(self) -> bool:
        return bool(self.address) and self.transport.connected and not self.draining

    # -- routed requests -------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        route = self.table.match(request.path)
        if route is None:
            response = error_response(404, "not_found", f"no route for {request.path}")
            self._done(request, "", "", response, started)
            return response
        if self._tracer is None:
            response = await self._routed(request, route)
        else:
            response = await self._traced(request, route)
        if route.cors is not None:
            response.headers.update(
                cors.response_headers(route.cors, request.headers.get("Origin"))
            )
        self._done(request, route.prefix, route.topic, response, started)
        return response

    async def _traced(self, request: web.Request, route: Route) -> web.Response:
        """:meth:`_routed` in a SERVER span whose parent is the caller's ``traceparent``."""
        assert self._tracer is not None
        attributes = {
            "http.request.method": request.method,
            "url.path": request.path,
            "http.route": route.prefix,
        }
        name = f"{request.method} {route.prefix}"
        with self._tracer.span(name, SERVER, parent=request.headers, attributes=attributes):
            response = await self._routed(request, route)
            self._tracer.set("http.response.status_code", response.status)
            if response.status >= 500:
                self._tracer.failed(RuntimeError(f"HTTP {response.status}"))
        return response

    async def _routed(self, request: web.Request, route: Route) -> web.Response:
        method = request.method
        if route.cors is not None and cors.is_preflight(method, request.headers):
            return self._preflight(request, route)
        if route.methods is not None and method not in route.methods:
            response = error_response(
                405, "method_not_allowed", f"{method} is not allowed on {route.prefix}"
            )
            response.headers["Allow"] = route.allow_header()
            return response
        principal = None
        if route.auth != NONE:
            principal, refusal = await self._admit(request, route.auth, route.require_exp)
            if refusal is not None:
                return refusal
        if route.rate_limit is not None:
            refusal = await self._limit(request, route, principal)
            if refusal is not None:
                return refusal
        if route.middleware:
            return await self._through_middleware(request, route, principal)
        return await self._bounded(request, route, principal)

    async def _through_middleware(
        self, request: web.Request, route: Route, principal: Principal | None
    ) -> web.Response:
        """The route's middleware around :meth:`_bounded` (see gateway/middleware.py)."""
        request[middleware.PRINCIPAL] = principal

        async def call(request: web.Request) -> web.StreamResponse:
            return await self._bounded(request, route, principal)

        try:
            response = await middleware.chain(route.middleware, call)(request)
        except web.HTTPException as e:
            return error_response(e.status, "middleware_refused", e.text or e.reason)
        except Exception:
            log.exception("a middleware of %s failed", route.prefix)
            return error_response(500, "middleware_error", f"a middleware of {route.prefix} failed")
        if not isinstance(response, web.Response):
            log.error("a middleware of %s answered %r, not a web.Response", route.prefix, response)
            return error_response(500, "middleware_error", f"a middleware of {route.prefix} failed")
        return response

    async def _bounded(
        self, request: web.Request, route: Route, principal: Principal | None
    ) -> web.Response:
        if not self.address:  # no reply inbox (yet): nothing could come back
            return retry_later("bus_unavailable", "the message bus is unavailable")
        if self.in_flight >= self.settings.max_in_flight:
            return retry_later("overloaded", "too many requests in flight; retry")
        self.in_flight += 1
        try:
            body, refusal = await self._body(request) if request.body_exists else (b"", None)
            if refusal is not None:
                return refusal
            if route.idempotency is not None and idempotency.HEADER in request.headers:
                return await self._idempotent(request, route, principal, body)
            return await self._invoke(request, route, principal, body)
        finally:
            self.in_flight -= 1

    async def _invoke(
        self, request: web.Request, route: Route, principal: Principal | None, body: bytes
    ) -> web.Response:
        call = self._message(request, route, body)
        if route.async_ or CALLBACK_HEADER in request.headers:
            return await self._start_async(request, route, call, owner_of(principal))
        return await self._call(route, call)

    async def _idempotent(
        self, request: web.Request, route: Route, principal: Principal | None, body: bytes
    ) -> web.Response:
        """The first request with a key invokes; the others replay (idempotency.py)."""
        assert route.idempotency is not None
        invoke = partial(self._invoke, request, route, principal, body)
        scope = (route.prefix, self._client(request, principal))
        ttl_s = route.idempotency.ttl_s
        try:
            return await self.guard.serve(request, scope, body, ttl_s, route.timeout_s, invoke)
        except TransportError as e:
            return self._bus_down(e, "")

    async def _call(self, route: Route, call: Outgoing) -> web.Response:
        """Sync invoke: publish, wait for the reply or the route's deadline. The hot path:
        the publish is not awaited on its own (a failure reaches the reply future) and the
        deadline is the reply router's."""
        call_id, trace, message = call
        future = self.replies.expect(call_id, route.timeout_s)
        published = self.transport.publish_soon(route.topic, message)
        published.add_done_callback(partial(_relay_failure, future))
        try:
            reply = await future
        except TimeoutError:
            self.metrics.timed_out(route.prefix)
            log.info("no reply within %gs", route.timeout_s, extra=_ids(call_id, route, trace))
            return timeout_response(route.topic, route.timeout_s, call_id)
        except TransportError as e:
            return self._bus_down(e, call_id)
        finally:
            self.replies.forget(call_id)
        return from_reply(reply, call_id)

    def _message(self, request: web.Request, route: Route, body: bytes) -> Outgoing:
        """The http-request message for ``request``, encoded without building an Envelope
        (the same bytes, for less work per request), with its id and trace headers."""
        headers = request_headers(request.headers)
        trace = self._trace(headers, route.topic)
        headers.update(trace)
        call_id, now = wire.new_id(), wire.now_ms()
        message = wire.encode_http_request(
            call_id,
            route.topic,
            (request.method, request.path, request.query_string, headers, body),
            time_ms=now,
            reply_to=self.address,
            deadline_ms=now + int(route.timeout_s * 1000),
            headers=trace,
        )
        return Outgoing(call_id, trace, message)

    def _trace(self, headers: Mapping[str, str], topic: str) -> dict[str, str]:
        """The trace headers of a message the gateway publishes: with tracing, those of a
        PRODUCER span (child of the request's SERVER span; it marks the hand-over, the
        publish itself is not awaited on the sync path); without, the caller's trace with
        the gateway's own span id, or a new trace."""
        if self._tracer is not None:
            span = self._tracer.start(
                f"{topic} publish", PRODUCER, {"messaging.destination.name": topic}
            )
            span.end()
            return self._tracer.headers(span)
        traceparent, accepted = child_traceparent(headers.get("traceparent"))
        trace = {"traceparent": traceparent}
        if accepted and "tracestate" in headers:
            trace["tracestate"] = headers["tracestate"]
        return trace

    # -- checks ----------------------------------------------------------------------------

    def _preflight(self, request: web.Request, route: Route) -> web.Response:
        assert route.cors is not None
        headers = cors.preflight_headers(
            route.cors,
            request.headers["Origin"],
            request.headers["Access-Control-Request-Method"],
            request.headers.get("Access-Control-Request-Headers"),
            route.methods,
        )
        if headers is None:
            return error_response(403, "cors_refused", "CORS preflight refused for this origin")
        return web.Response(status=204, headers=headers)

    async def _admit(
        self, request: web.Request, policy: str, require_exp: bool = True
    ) -> tuple[Principal | None, web.Response | None]:
        """The request's principal, or the refusal: 401, 429 when its address failed too
        often lately (checked first, so guesses stop while it waits), 503 when the keys to
        check a token with cannot be fetched."""
        wait_s = await self.failures.wait_s(self._client(request, None))
        if wait_s > 0:
            message = "too many failed authentication attempts from this client; retry later"
            return None, throttled("too_many_failures", message, wait_s)
        try:
            return await self.auth.check(policy, request.headers, require_exp=require_exp), None
        except AuthFailed as e:
            await self.count_failure(request)
            response = error_response(401, "unauthorized", e.reason)
            response.headers["WWW-Authenticate"] = e.challenge
            return None, response
        except AuthUnavailable as e:
            response = error_response(503, "auth_unavailable", e.reason)
            response.headers["Retry-After"] = retry_after(e.retry_after_s)
            return None, response

    async def count_failure(self, request: web.Request) -> None:
        """Charge a 401/403 to the failure budget of the client's address (a failed
        request has no principal to key it by)."""
        await self.failures.charge(self._client(request, None))

    async def _limit(
        self, request: web.Request, route: Route, principal: Principal | None
    ) -> web.Response | None:
        limit = route.rate_limit
        assert limit is not None
        key = (
            route.prefix
            if limit.per == "route"
            else f"{route.prefix}|{self._client(request, principal)}"
        )
        wait_s = await self.limiter.wait_s(key, limit)
        if wait_s <= 0:
            return None
        return throttled("rate_limited", f"rate limit of {route.prefix} exceeded", wait_s)

    def _client(self, request: web.Request, principal: Principal | None) -> str:
        if principal is not None:
            return f"{principal.method}:{principal.name}"
        forwarded = (
            request.headers.get("X-Forwarded-For") if self.settings.trust_forwarded else None
        )
        if forwarded:
            return forwarded.split(",", 1)[0].strip()
        return request.remote or "-"

    async def _body(self, request: web.Request) -> tuple[bytes, web.Response | None]:
        limit = self.settings.max_body_bytes
        if request.content_length is None or request.content_length <= limit:
            try:
                async with asyncio.timeout(self.settings.body_timeout_s):
                    return await request.read(), None
            except web.HTTPRequestEntityTooLarge:
                pass
            except TimeoutError:
                return b"", _body_timeout(self.settings.body_timeout_s)
        return b"", error_response(
            413, "body_too_large", f"request body is over the {limit}-byte limit"
        )

    # -- async calls -----------------------------------------------------------------------

    async def _start_async(
        self, request: web.Request, route: Route, call: Outgoing, owner: str | None
    ) -> web.Response:
        try:
            values = request.headers.getall(CALLBACK_HEADER, [])
            callback = callback_url(values, self.settings.callbacks)
        except BadCallback as e:
            return error_response(400, "bad_callback", e.reason)
        call_id = call.id
        future = self.replies.expect(call_id, route.timeout_s)
        pending = CallResult(PENDING, owner=owner)
        try:
            await self.store.put(call_id, pending, self.settings.result_ttl_s)
            await self.transport.publish(route.topic, call.message)
        except TransportError as e:
            self.replies.forget(call_id)
            return self._bus_down(e, call_id)
        self._spawn(self._finish_async(route, call, future, callback, owner))
        return web.json_response(
            {"call_id": call_id, "status": PENDING, "result_url": f"/calls/{call_id}"},
            status=202,
            headers={CALL_ID: call_id, "Location": f"/calls/{call_id}"},
        )

    async def _finish_async(
        self,
        route: Route,
        call: Outgoing,
        future: asyncio.Future[wire.Envelope],
        callback: URL | None,
        owner: str | None,
    ) -> None:
        try:
            reply = await future
            response = from_reply(reply, call.id)
        except TimeoutError:
            self.metrics.timed_out(route.prefix)
            response = timeout_response(route.topic, route.timeout_s, call.id)
        finally:
            self.replies.forget(call.id)
        headers = dict(response.headers)
        result = CallResult(DONE, response.status, headers, _body_of(response), owner)
        try:
            await self.store.put(call.id, result, self.settings.result_ttl_s)
        except TransportError as e:
            log.warning(
                "could not store an async result: %s", e, extra=_ids(call.id, route, call.trace)
            )
        if callback is not None and self.session is not None:
            ok = await post_callback(
                self.session, callback, call.id, result, self.settings.callback_timeout_s
            )
            self.metrics.callbacks.labels("ok" if ok else "failed").inc()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def call_result(self, request: web.Request) -> web.Response:
        """``GET /calls/{id}``: 202 while pending, then the function's response. A call made
        on a route with auth is only shown to the principal that made it: others hear 401
        without credentials, or the 404 of an unknown id (ids cannot be probed)."""
        call_id = request.match_info["id"]
        if not _CALL_ID.fullmatch(call_id):
            return error_response(
                400, "bad_call_id", "a call id is 32 lowercase hex characters (from X-Call-Id)"
            )
        try:
            result = await self.store.get(call_id)
        except TransportError as e:
            return self._bus_down(e, call_id)
        if result is not None and result.owner is not None:
            # the caller's credentials, checked (and failures throttled) as on any route
            caller, refusal = await self._admit(request, ANY)
            if refusal is not None:
                return refusal
            if owner_of(caller) != result.owner:
                result = None
        if result is None:
            return error_response(
                404, "unknown_call", "no such call (never made, or its result expired)", call_id
            )
        if result.state == PENDING:
            return web.json_response(
                {"call_id": call_id, "status": PENDING}, status=202, headers={CALL_ID: call_id}
            )
        return web.Response(
            status=result.status,
            headers={**result.headers, "X-Call-Status": DONE},
            body=result.body,
        )

    # -- events ----------------------------------------------------------------------------

    async def publish(self, request: web.Request) -> web.Response:
        """``POST /topics/{topic}``: publish the body as an event (fire and forget)."""
        started = time.perf_counter()
        topic = request.match_info["topic"]
        response = await self._publish(request, topic)
        label = topic if topic in self.table.publish.topics else UNMATCHED
        self._done(request, "/topics", label, response, started)
        return response

    async def _publish(self, request: web.Request, topic: str) -> web.Response:
        publish = self.table.publish
        _, refusal = await self._admit(request, publish.auth, publish.require_exp)
        if refusal is not None:
            return refusal
        if topic not in publish.topics:
            await self.count_failure(request)
            return error_response(
                403, "topic_not_allowed", f"topic {topic!r} is not open for publishing"
            )
        body, refusal = await self._body(request)
        if refusal is not None:
            return refusal
        payload, content_type, problem = event_payload(request.content_type, body)
        if problem:
            return error_response(400, "bad_request", problem)
        trace = self._trace(request.headers, topic)
        trace.pop("tracestate", None)  # an event carries the trace id on, not the caller's state
        env = wire.make(topic, payload, headers=trace, content_type=content_type)
        try:
            message = wire.encode(env)
        except (ValueError, OverflowError, TypeError, RecursionError) as e:
            # UnicodeEncodeError (a lone surrogate) is a ValueError; OverflowError: an
            # integer msgpack cannot carry
            return error_response(422, "unencodable_payload", f"body cannot be carried: {e}")
        try:
            await self.transport.publish(topic, message)
        except TransportError as e:
            return self._bus_down(e, env.id)
        return web.json_response(
            {"id": env.id, "topic": topic}, status=202, headers={CALL_ID: env.id}
        )

    # -- bookkeeping -----------------------------------------------------------------------

    def _bus_down(self, error: TransportError, call_id: str) -> web.Response:
        log.warning("bus unavailable: %s", error, extra={"call_id": call_id})
        return retry_later("bus_unavailable", "the message bus is unavailable", call_id)

    def _done(
        self, request: web.Request, route: str, topic: str, response: web.Response, started: float
    ) -> None:
        elapsed = time.perf_counter() - started
        self.metrics.answered(route, topic, response.status, elapsed)
        if self.settings.access_log:
            access_log.info(
                "%s %s %d",
                request.method,
                request.path,
                response.status,
                extra={
                    "call_id": response.headers.get(CALL_ID),
                    "route": route,
                    "topic": topic,
                    "status": response.status,
                    "duration_ms": round(elapsed * 1000, 3),
                    "remote": request.remote,
                },
            )


def event_payload(content_type: str, body: bytes) -> tuple[Any, str, str | None]:
    """An event's payload: JSON bodies become values (carried as msgpack), others bytes."""
    if content_type == "application/json":
        try:
            value = json.loads(body) if body else None
        except ValueError as e:
            return None, "", f"body is not valid JSON: {e}"
        except RecursionError:
            value = None
            depth = MAX_JSON_DEPTH + 1
        else:
            depth = json_depth(value, MAX_JSON_DEPTH)
        if depth > MAX_JSON_DEPTH:
            return None, "", f"body is JSON nested deeper than {MAX_JSON_DEPTH} levels"
        return value, wire.MSGPACK, None
    return body, content_type or "application/octet-stream", None


def json_depth(value: Any, limit: int) -> int:
    """How deeply ``value`` nests lists and dicts, counted up to ``limit + 1`` (no recursion:
    the value came from a caller)."""
    deepest, level = 0, [(value, 1)]
    while level:
        item, depth = level.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            if deepest > limit:
                return deepest
            children = item.values() if isinstance(item, dict) else item
            level.extend((child, depth + 1) for child in children)
    return deepest


def _body_timeout(timeout_s: float) -> web.Response:
    response = error_response(
        408, "body_timeout", f"the request body did not arrive within {timeout_s:g}s"
    )
    response.force_close()  # the rest of the body may still come: not a request of its own
    return response


def _body_of(response: web.Response) -> bytes:
    body = response.body
    return bytes(body) if isinstance(body, bytes | bytearray) else b""


def _ids(call_id: str, route: Route, trace: Mapping[str, str]) -> dict[str, str]:
    return {
        "call_id": call_id,
        "topic": route.topic,
        "route": route.prefix,
        "trace_id": trace_id(trace.get("traceparent", "")),
    }


def _relay_failure(reply: asyncio.Future[Any], published: asyncio.Future[Any]) -> None:
    """A publish that failed fails the call waiting for its reply."""
    if published.cancelled():
        return
    error = published.exception()
    if error is not None and not reply.done():
        reply.set_exception(error)
