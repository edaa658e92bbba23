"""``kubefuncs-gateway [ROUTES.yaml]`` (or ``python -m kubefuncs.gateway``): serve until
SIGTERM, then stop being ready, wait ``KF_GATEWAY_SHUTDOWN_DELAY_S``, finish in-flight
requests within ``KF_GATEWAY_GRACE_S`` and exit 0."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import Mapping
from dataclasses import replace

from aiohttp import web
from kubefuncs import tracing
from kubefuncs.errors import ConfigError
from kubefuncs.logs import configure

from .app import GATEWAY, create_app, route_files
from .frontdoor import FrontDoorRunner
from .routes import RouteTable
from .settings import GatewaySettings

log = logging.getLogger("kubefuncs.gateway")


def prepare(argv: list[str], env: Mapping[str, str]) -> tuple[GatewaySettings, RouteTable]:
    settings = GatewaySettings.from_env(env)
    settings = replace(settings, routes_file=argv[0] if argv else settings.routes_file)
    if not settings.routes_file and not settings.function_routes_file:
        raise ConfigError(
            "KF_GATEWAY_ROUTES",
            "is not set: point it at a routes YAML file (or pass the path), "
            "or set KF_GATEWAY_FUNCTION_ROUTES",
        )
    files = route_files(settings)
    return settings, files.table(files.read())


async def serve(app: web.Application, settings: GatewaySettings) -> None:
    """Serve ``app`` on ``settings.addr`` until SIGTERM/SIGINT; then drain and return."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # keepalive_timeout also closes a connection whose request headers are not complete
    # in that time (a slow or stalled client): one setting for both
    runner = FrontDoorRunner(
        app,
        on_refused=app[GATEWAY].metrics.refused,
        access_log=None,
        shutdown_timeout=settings.grace_s,
        keepalive_timeout=settings.header_timeout_s,
        # after an early answer (408, 413) the unread rest of a body is drained this long
        lingering_time=min(settings.body_timeout_s, 10.0),
    )
    await runner.setup()
    host, port = settings.addr.rsplit(":", 1)
    await web.TCPSite(runner, host or None, int(port)).start()
    log.info("listening on %s", settings.addr)
    try:
        await stop.wait()
        app[GATEWAY].draining = True  # /readyz fails: load balancers stop sending
        await asyncio.sleep(settings.shutdown_delay_s)
    finally:
        await runner.cleanup()
    log.info("stopped")


def main(argv: list[str] | None = None) -> int:
    tracer = tracing.configure("kubefuncs-gateway")  # None unless OTEL_* ask for traces
    try:
        settings, table = prepare(sys.argv[1:] if argv is None else argv, os.environ)
        app = create_app(settings, table)
    except ConfigError as e:
        print(f"kubefuncs-gateway: {e}", file=sys.stderr)
        return 2
    configure(settings.log_level, settings.log_format)
    try:
        asyncio.run(serve(app, settings))
    finally:
        if tracer is not None:
            tracer.shutdown()  # export what is buffered
    return 0


if __name__ == "__main__":
    sys.exit(main())
