"""The dashboard of ``functl dev``: the console over the local functions.yaml (its
functions read-only, more deployed through the API run in this process: devcatalog.py),
the dev session's bus, and the in-process functions' own metrics registries."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest

from .app import create_app
from .devcatalog import DevCatalog
from .settings import ServeSettings

if TYPE_CHECKING:
    from kubefuncs.gateway.proxy import Gateway
    from kubefuncs.transport import Transport

DEV_SCRAPE_S = 2.0


def _text(registry: CollectorRegistry) -> str:
    return generate_latest(registry).decode()


@contextlib.asynccontextmanager
async def serving(
    path: str,
    transport: Transport,
    registries: Mapping[str, CollectorRegistry],
    addr: str,
    bus_url: str,
    echo: Callable[[str], None],
    gateway: Gateway | None = None,
) -> AsyncIterator[None]:
    """Serve the console on ``addr`` (no auth: it binds where the dev gateway does); when
    ``addr`` is "" or its port is taken, say so and run without it."""
    if not addr:
        yield
        return
    settings = ServeSettings(addr=addr, no_auth=True, scrape_s=DEV_SCRAPE_S)
    local: dict[str, Callable[[], str]] = {
        name: functools.partial(_text, r) for name, r in registries.items()
    }
    loop = asyncio.get_running_loop()
    catalog = DevCatalog(path, transport, bus_url, local, loop, gateway)
    app = create_app(settings, catalog, bus_url=bus_url, transport=transport, local_metrics=local)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    host, port = addr.rsplit(":", 1)
    try:
        try:
            await web.TCPSite(runner, host or None, int(port)).start()
        except OSError as e:
            echo(
                f"functl dev: no dashboard: cannot listen on {addr} ({e.strerror}); "
                "pass --console-port PORT (0: none)"
            )
        yield
    finally:
        await runner.cleanup()
        await catalog.close()
