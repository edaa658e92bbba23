"""The gateway's aiohttp application factory.

``create_app(settings, table)`` builds the app; nothing connects until it starts. Each
``cleanup_ctx`` owns one resource: the bus (and this process's reply inbox), the bus
housekeeping loop, the HTTP client for callbacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web
from kubefuncs.errors import ConfigError, TransportError
from kubefuncs.transport import Transport, from_url
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from . import idempotency
from .auth import Authenticator
from .callbacks import callback_session
from .calls import CallStore, MemoryCallStore, ValkeyCallStore
from .calls_nsq import NsqCallStore
from .frontdoor import refuse_bad_requests
from .metrics import GatewayMetrics
from .presence import Presence
from .proxy import Gateway
from .ratelimit import Command, Limiter, MemoryLimiter, ValkeyLimiter
from .reload import RouteFiles, watch
from .routes import RouteTable
from .scaler import ExternalScaler, serving
from .settings import GatewaySettings

log = logging.getLogger("kubefuncs.gateway")

GATEWAY = web.AppKey("gateway", Gateway)
OWNS_TRANSPORT = web.AppKey("owns_transport", bool)


def create_app(
    settings: GatewaySettings, table: RouteTable, *, transport: Transport | None = None
) -> web.Application:
    """The gateway app for ``table``. Pass ``transport`` to share a bus connection (it is
    then connected but not closed by the app)."""
    check(settings, table)
    owned = transport is None
    bus = transport or from_url(settings.bus_url, password=settings.bus_password)
    gateway = Gateway(
        settings,
        table,
        bus,
        limiter=_limiter(bus),
        store=_store(bus),
        metrics=GatewayMetrics(),
        once=_once(bus),
        presence=_presence(settings, table, bus),
    )
    app = web.Application(
        client_max_size=max(1, settings.max_body_bytes), middlewares=[refuse_bad_requests]
    )
    app[GATEWAY] = gateway
    app[OWNS_TRANSPORT] = owned
    app.cleanup_ctx.extend(
        [_bus_ctx, _calls_ctx, _maintain_ctx, _reload_ctx, _session_ctx, _auth_ctx]
    )
    if gateway.presence is not None:
        app.cleanup_ctx.append(_presence_ctx)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/topics/{topic}", gateway.publish)
    app.router.add_get("/calls/{id}", gateway.call_result)
    app.router.add_route("*", "/{tail:.*}", gateway.handle)
    return app


def check(settings: GatewaySettings, table: RouteTable) -> None:
    """Refuse a configuration some route could never be reached with."""
    auth = Authenticator.from_settings(settings)  # a public key file that is no key: here
    wanted = [(r.prefix, r.auth) for r in table.routes]
    if table.publish.topics:
        wanted.append(("POST /topics", table.publish.auth))
    for where, policy in wanted:
        if not auth.can(policy):
            variable = "KF_GATEWAY_API_KEYS" if policy == "api_key" else _JWT_VARIABLES
            raise ConfigError(variable, f"is not set, but {where} requires {policy} authentication")


_JWT_VARIABLES = "KF_GATEWAY_JWT_SECRET (or KF_GATEWAY_JWT_PUBLIC_KEY_FILE, KF_GATEWAY_JWKS_URL)"


def _presence(settings: GatewaySettings, table: RouteTable, bus: Transport) -> Presence | None:
    """Consumer knowledge, when the scaler serves or a route has a cold-start timeout (the
    topics of those routes are polled for any live consumer; the scaler's streams add the
    channels they watch)."""
    cold = cold_topics(table)
    if not settings.scaler_addr and not cold and not settings.function_routes_file:
        return None  # (a functions' routes file may bring cold-start routes later)
    return Presence(bus, settings.presence, sorted(cold))


def cold_topics(table: RouteTable) -> set[str]:
    """The topics of the routes with a cold-start timeout."""
    return {r.topic for r in table.routes if r.cold_start_timeout_s is not None}


def published_topics(table: RouteTable) -> frozenset[str]:
    """The topics this gateway publishes to: those it can see work arrive for."""
    return frozenset(r.topic for r in table.routes) | table.publish.topics


def _limiter(bus: Transport) -> Limiter:
    call, prefix = _shared_store(bus)
    return MemoryLimiter() if call is None else ValkeyLimiter(call, prefix)


def _store(bus: Transport) -> CallStore:
    call, prefix = _shared_store(bus)
    if call is not None:
        return ValkeyCallStore(call, prefix)
    return NsqCallStore(bus) if bus.url.startswith("nsq:") else MemoryCallStore()


def _once(bus: Transport) -> idempotency.Store:
    """Idempotency records: on a Valkey bus shared by the replicas, else per replica."""
    call, prefix = _shared_store(bus)
    return idempotency.MemoryStore() if call is None else idempotency.ValkeyStore(call, prefix)


def _shared_store(bus: Transport) -> tuple[Command | None, str]:
    """A Valkey transport runs arbitrary commands (``call``) under its key prefix: limits
    and async results then live on the bus, shared by every gateway replica."""
    call = getattr(bus, "call", None)
    keys = getattr(bus, "keys", None)
    if call is None or keys is None:
        return None, ""
    return call, str(keys.prefix)


async def _bus_ctx(app: web.Application) -> AsyncIterator[None]:
    gateway = app[GATEWAY]
    try:
        await gateway.transport.connect()
    except TransportError as e:  # keep serving (not ready, 503s) until the bus is back
        log.warning("%s; the gateway is not ready until it is reachable", e)
    await gateway.start()
    log.info("gateway ready on %s with %d route(s)", _safe(gateway), len(gateway.table.routes))
    yield
    await gateway.stop()
    if app[OWNS_TRANSPORT]:
        await gateway.transport.close()


async def _presence_ctx(app: web.Application) -> AsyncIterator[None]:
    """The consumer poll loop, and KEDA's external scaler when KF_GATEWAY_SCALER_ADDR is set."""
    gateway = app[GATEWAY]
    presence = gateway.presence
    assert presence is not None
    task = asyncio.create_task(presence.run())
    try:
        if gateway.settings.scaler_addr:
            scaler = ExternalScaler(presence, lambda: published_topics(gateway.table))
            async with serving(gateway.settings.scaler_addr, scaler):
                yield
        else:
            yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _calls_ctx(app: web.Application) -> AsyncIterator[None]:
    """The async-result store, while the app serves (on NSQ: this replica reads every
    replica's results)."""
    store = app[GATEWAY].store
    await store.start()
    yield
    await store.close()


async def _maintain_ctx(app: web.Application) -> AsyncIterator[None]:
    """Bus housekeeping: with functions scaled to zero, the gateway is the one process
    always running, so it moves due delayed retries back into their streams."""
    gateway = app[GATEWAY]
    every = gateway.settings.maintain_interval_s
    task = asyncio.create_task(_maintain(gateway.transport, every)) if every > 0 else None
    yield
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def route_files(settings: GatewaySettings) -> RouteFiles:
    return RouteFiles(settings.routes_file, settings.function_routes_file, settings.timeout_s)


async def _reload_ctx(app: web.Application) -> AsyncIterator[None]:
    """Re-read the routes files when they change (reload.py), when there are files."""
    gateway = app[GATEWAY]
    settings, files = gateway.settings, route_files(gateway.settings)
    task = None
    if settings.routes_reload_s > 0 and (files.main or files.functions):

        def install(new: RouteTable) -> None:
            check(settings, new)
            gateway.table = new
            if gateway.presence is not None:
                gateway.presence.track(cold_topics(new))

        seen = files.read()  # what the table in use was built from (prepare read it)
        task = asyncio.create_task(watch(files, settings.routes_reload_s, install, seen))
    yield
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _maintain(transport: Transport, every_s: float) -> None:
    while True:
        await asyncio.sleep(every_s)
        try:
            await transport.maintain()
        except Exception as e:  # housekeeping must never stop the gateway
            log.debug("bus maintenance skipped: %s", e)


async def _session_ctx(app: web.Application) -> AsyncIterator[None]:
    gateway = app[GATEWAY]
    async with callback_session(gateway.settings.callbacks) as session:
        gateway.session = session
        yield
        gateway.session = None


async def _auth_ctx(app: web.Application) -> AsyncIterator[None]:
    """The JWKS client, when a JWKS URL is set (its first fetch runs in the background)."""
    auth = app[GATEWAY].auth
    await auth.start()
    yield
    await auth.close()


def _safe(gateway: Gateway) -> str:
    return gateway.transport.url.split("@")[-1].split("?")[0]


async def healthz(_: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def readyz(request: web.Request) -> web.Response:
    if request.app[GATEWAY].ready:
        return web.Response(text="ready\n")
    return web.Response(status=503, text="not ready\n")


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[GATEWAY].metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
