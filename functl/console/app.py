"""The aiohttp application of ``functl serve``: the API (api.py), the dashboard's static
files, and one background task that samples every function's figures into the rings.

Resources each have one owner in ``cleanup_ctx``: the bus transport (unless the caller
passes its own, as ``functl dev`` does), the call client, the scrape session and task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
from aiohttp import web

from . import api, figures
from .access import Access
from .catalog import Catalog, FunctionView
from .invoke import Calls
from .settings import ServeSettings

if TYPE_CHECKING:
    from kubefuncs.client import Client
    from kubefuncs.transport import Transport

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
VENDOR = Path(__file__).parent / "node_modules"
SCRAPE_TIMEOUT_S = 2.0
LocalMetrics = Mapping[str, Callable[[], str]]  # function name -> its metrics text


@dataclass
class Console:
    """Everything the handlers share."""

    settings: ServeSettings
    catalog: Catalog
    access: Access
    rings: figures.Rings
    bus_url: str
    password: str | None = None
    transport: Transport | None = None
    client: Client | None = None
    local: LocalMetrics = field(default_factory=dict)
    session: aiohttp.ClientSession | None = None
    calls: Calls = field(default_factory=Calls)

    def bus(self) -> Transport:
        assert self.transport is not None, "the console's bus is not connected"
        return self.transport


CONSOLE = web.AppKey("console", Console)


def create_app(
    settings: ServeSettings,
    catalog: Catalog,
    *,
    bus_url: str,
    password: str | None = None,
    transport: Transport | None = None,
    local_metrics: LocalMetrics | None = None,
) -> web.Application:
    """The server: API under /api/v1, dashboard at /. ``transport``: a connected bus the
    caller owns (else one is opened for ``bus_url``)."""
    app = web.Application(middlewares=[api.errors], client_max_size=api.MAX_BODY_BYTES)
    rings = figures.Rings(int(settings.history_s / settings.scrape_s) + 2)
    console = Console(
        settings,
        catalog,
        Access(settings),
        rings,
        bus_url,
        password,
        transport,
        local=local_metrics if local_metrics is not None else {},
    )
    app[CONSOLE] = console
    app.cleanup_ctx.append(_bus(transport is None))
    app.cleanup_ctx.append(_sampler)
    api.add_routes(app)
    app.router.add_get("/", _index)
    app.router.add_static("/static/", STATIC)
    if VENDOR.is_dir():
        app.router.add_static("/vendor/", VENDOR)
    return app


async def _index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html")


def _bus(owned: bool) -> Callable[[web.Application], AsyncIterator[None]]:
    async def bus(app: web.Application) -> AsyncIterator[None]:
        from kubefuncs.client import Client
        from kubefuncs.transport import from_url

        console = app[CONSOLE]
        if owned:
            console.transport = from_url(console.bus_url, password=console.password)
            await console.transport.connect()
        console.client = Client(transport=console.bus())
        try:
            yield
        finally:
            await console.client.close()
            if owned:
                await console.bus().close()

    return bus


async def _sampler(app: web.Application) -> AsyncIterator[None]:
    console = app[CONSOLE]
    console.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT_S))
    task = asyncio.create_task(_sample_forever(console))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await console.calls.close()
        await console.session.close()


async def _sample_forever(console: Console) -> None:
    while True:
        started = time.monotonic()
        try:
            await sample_all(console)
        except Exception:  # a cluster or bus outage must not end the sampling
            log.warning("sampling the functions' figures failed", exc_info=True)
        await asyncio.sleep(max(0.0, console.settings.scrape_s - (time.monotonic() - started)))


async def sample_all(console: Console) -> None:
    """One sample of every function into the rings."""
    views = await asyncio.to_thread(console.catalog.functions)
    console.rings.keep(v.name for v in views)
    await asyncio.gather(*(_sample(console, v) for v in views))


async def _sample(console: Console, view: FunctionView) -> None:
    texts = await metrics_texts(console, view.name)
    parsed = figures.parse(texts, view.name)
    stats = await api.bus_stats(console, view)
    console.rings.add(
        view.name,
        figures.Sample(
            time.time(),
            parsed["outcomes"],
            parsed["buckets"],
            parsed["cold_start_s"],
            parsed["in_flight"],
            stats or {},
            view.ready,
            view.desired,
            len(texts),
        ),
    )


async def metrics_texts(console: Console, name: str) -> list[str]:
    """The /metrics text of every pod of ``name`` (or of the in-process function)."""
    if name in console.local:
        return [console.local[name]()]
    try:
        urls = await asyncio.to_thread(console.catalog.scrape_urls, name)
    except Exception:
        log.warning("cannot list the pods of %s", name, exc_info=True)
        return []
    found = await asyncio.gather(*(_fetch(console, u) for u in urls))
    return [t for t in found if t is not None]


async def _fetch(console: Console, url: str) -> str | None:
    assert console.session is not None
    try:
        async with console.session.get(url) as response:
            if response.status != 200:
                return None
            body = await response.content.read(figures.MAX_TEXT_BYTES)
            return body.decode("utf-8", errors="replace")
    except (aiohttp.ClientError, TimeoutError, OSError) as e:
        log.debug("scraping %s failed: %s", url, e)
        return None


def config_of(app: web.Application) -> dict[str, Any]:
    console = app[CONSOLE]
    return {"mode": console.catalog.mode, "writable": console.catalog.writable}
