"""The request path: route -> checks -> http-request message -> reply -> response.

Every decision (route match, auth, CORS, token bucket, status mapping) is a pure function
elsewhere; this module only strings them together around the bus I/O. It is the hot path:
no per-request loggers, label lookups or task creation for sync calls.
"""

from __future__ import annotations

import asyncio
import logging
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

from . import async_calls, cors, events, idempotency, middleware
from .auth import NONE, Authenticator, AuthFailed, AuthUnavailable, Principal
from .callbacks import CALLBACK_HEADER
from .calls import CallStore, owner_of
from .metrics import GatewayMetrics
from .presence import Presence
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
from .trace import child_traceparent

log = logging.getLogger("kubefuncs.gateway")
access_log = logging.getLogger("kubefuncs.gateway.access")

UNMATCHED = "unmatched"  # the metrics label of a topic nobody configured


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
        presence: Presence | None = None,
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
        self.presence = presence  # None: no scaler and no cold-start timeouts
        self._tracer = tracing.current()  # None unless OTEL_* ask for traces
        self.guard = idempotency.Guard(once or idempotency.MemoryStore(), metrics.replayed)
        self.address = ""  # reply inbox, opened by start()
        self.session: aiohttp.ClientSession | None = None  # for callbacks
        self.in_flight = 0
        self.draining = False
        self._background: set[asyncio.Task[None]] = set()
        metrics.watch_late(lambda: self.replies.late)
        metrics.in_flight.set_function(lambda: self.in_flight)
        if presence is not None:
            metrics.watch_scaler(lambda: presence.pushes, presence.streams)

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
                self._tracer.failed(f"HTTP {response.status}")
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
            if self.presence is not None:
                route = self.presence.route_for(route)
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
            return await async_calls.start(self, request, route, call, owner_of(principal))
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
            log.info(
                "no reply within %gs",
                route.timeout_s,
                extra=async_calls.log_ids(call_id, route, trace),
            )
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

    # -- async calls and events (async_calls.py, events.py) --------------------------------

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def call_result(self, request: web.Request) -> web.Response:
        """``GET /calls/{id}`` (see :func:`async_calls.result`)."""
        return await async_calls.result(self, request)

    async def publish(self, request: web.Request) -> web.Response:
        """``POST /topics/{topic}``: publish the body as an event (fire and forget)."""
        started = time.perf_counter()
        topic = request.match_info["topic"]
        response = await events.publish(self, request, topic)
        label = topic if topic in self.table.publish.topics else UNMATCHED
        self._done(request, "/topics", label, response, started)
        return response

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


def _body_timeout(timeout_s: float) -> web.Response:
    response = error_response(
        408, "body_timeout", f"the request body did not arrive within {timeout_s:g}s"
    )
    response.force_close()  # the rest of the body may still come: not a request of its own
    return response


def _relay_failure(reply: asyncio.Future[Any], published: asyncio.Future[Any]) -> None:
    """A publish that failed fails the call waiting for its reply."""
    if published.cancelled():
        return
    error = published.exception()
    if error is not None and not reply.done():
        reply.set_exception(error)
