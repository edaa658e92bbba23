"""The v1 JSON API (described by openapi.py): thin handlers over the catalog, the bus and
the rings. Every refusal is JSON ``{"error": code, "message": reason}`` with a 4xx (or 502/
503/504 when the cluster or the bus fails); bad input never gets a 500.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..busops import describe_dead
from ..errors import ClusterUnreachable, Forbidden, FunctlError, Rejected, SpecError, UsageError
from . import invoke, openapi, prometheus
from .access import Denied
from .catalog import Conflict, FunctionView, NotFound, ReadOnly
from .common import ApiError, allowed, json_body, object_body, view, views
from .settings import READ, WRITE

if TYPE_CHECKING:
    from .app import Console

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 256 * 1024
PROMETHEUS_HISTORY_S = 7 * 86400.0
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_WINDOW = re.compile(r"^(\d{1,5})([smh])$")
_UNITS = {"s": 1, "m": 60, "h": 3600}


def failure(status: int, code: str, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": code, "message": message, **extra}, status=status)


_FUNCTL_ERRORS: tuple[tuple[type[FunctlError], int, str], ...] = (
    (NotFound, 404, "not_found"),
    (Conflict, 409, "conflict"),
    (ReadOnly, 409, "read_only"),
    (UsageError, 422, "invalid"),
    (Rejected, 422, "rejected_by_cluster"),
    (Forbidden, 502, "cluster_forbidden"),
    (ClusterUnreachable, 503, "cluster_unreachable"),
)


def _functl_failure(e: FunctlError) -> web.Response:
    if isinstance(e, SpecError):
        issues = [{"path": i.path, "problem": i.problem, "hint": i.hint} for i in e.issues]
        return failure(422, "invalid", str(e), issues=issues)
    for kind, status, code in _FUNCTL_ERRORS:
        if isinstance(e, kind):
            return failure(status, code, str(e))
    return failure(503, "unavailable", str(e))


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure as JSON with a reason."""
    try:
        return await handler(request)
    except ApiError as e:
        return failure(e.status, e.code, e.message, **e.extra)
    except Denied as e:
        response = failure(e.status, "unauthorized" if e.status == 401 else "forbidden", e.message)
        if e.challenge:
            response.headers["WWW-Authenticate"] = e.challenge
        return response
    except FunctlError as e:
        return _functl_failure(e)
    except web.HTTPException as e:
        if not request.path.startswith("/api/"):
            raise
        return failure(e.status, e.reason.lower().replace(" ", "_"), f"{request.path}: {e.reason}")
    except Exception:  # a bug: logged with its traceback, answered in JSON all the same
        log.exception("%s %s failed", request.method, request.path)
        return failure(500, "internal", "the server failed on this request (see its log)")


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/api/v1/openapi.json", openapi_document)
    r.add_get("/api/v1/functions", list_functions)
    r.add_post("/api/v1/functions", create_function)
    r.add_get("/api/v1/functions/{name}", get_function)
    r.add_put("/api/v1/functions/{name}", update_function)
    r.add_delete("/api/v1/functions/{name}", delete_function)
    r.add_post("/api/v1/functions/{name}/invoke", invoke.invoke)
    r.add_get("/api/v1/calls/{call_id}", invoke.get_call)
    r.add_get("/api/v1/functions/{name}/dead-letters", list_dead)
    r.add_post("/api/v1/functions/{name}/dead-letters", replay_dead)
    r.add_delete("/api/v1/functions/{name}/dead-letters", purge_dead)
    r.add_get("/api/v1/functions/{name}/metrics", metrics)


async def openapi_document(request: web.Request) -> web.Response:
    return web.json_response(openapi.DOCUMENT)


# -- reading ---------------------------------------------------------------------------


async def bus_stats(console: Console, v: FunctionView) -> dict[str, int] | None:
    """Depth, in flight, delayed and dead of the function's channel; None when the bus
    cannot say (it is logged)."""
    try:
        st = await console.bus().stats(v.topic, v.channel)
    except Exception as e:  # a bus outage shows as unknown figures, not a failed page
        log.warning("bus stats of %s/%s failed: %s", v.topic, v.channel, e)
        return None
    return {"depth": st.depth, "in_flight": st.in_flight, "delayed": st.delayed, "dead": st.dead}


async def row(console: Console, v: FunctionView) -> dict[str, Any]:
    return {
        "name": v.name,
        "topic": v.topic,
        "channel": v.channel,
        "origin": v.origin,
        "replicas": {"ready": v.ready, "desired": v.desired},
        "bus": await bus_stats(console, v),
        "live": console.rings.latest(v.name),
    }


async def list_functions(request: web.Request) -> web.Response:
    console = await allowed(request, READ)
    rows = await asyncio.gather(*(row(console, v) for v in await views(console)))
    return web.json_response(
        {"mode": console.catalog.mode, "writable": console.catalog.writable, "functions": rows}
    )


async def get_function(request: web.Request) -> web.Response:
    console = await allowed(request, READ)
    v = await view(console, request.match_info["name"])
    return web.json_response(
        {**await row(console, v), "spec": dict(v.spec), "source": v.source, **v.extra}
    )


def window_s(raw: str, limit_s: float) -> float:
    """``15m`` / ``90s`` / ``1h`` -> seconds, at most ``limit_s`` (the history kept)."""
    m = _WINDOW.match(raw)
    if not m or int(m[1]) == 0:
        raise ApiError(400, "bad_window", f"window must look like 90s, 15m or 1h, got {raw!r}")
    seconds = int(m[1]) * _UNITS[m[2]]
    if seconds > limit_s:
        raise ApiError(400, "bad_window", f"window {raw} is longer than the {limit_s:g} s kept")
    return float(seconds)


async def metrics(request: web.Request) -> web.Response:
    console = await allowed(request, READ)
    v = await view(console, request.match_info["name"])
    url = console.settings.prometheus_url
    limit_s = PROMETHEUS_HISTORY_S if url else console.settings.history_s
    window = window_s(request.query.get("window", "15m"), limit_s)
    now = time.time()
    if url is None:
        points, interval, source = console.rings.series(v.name, now - window), None, "scrape"
    else:
        assert console.session is not None
        try:
            points = await prometheus.series(console.session, url, v.name, now - window, now)
        except prometheus.PrometheusFailed as e:
            raise ApiError(503, "prometheus_unavailable", str(e)) from e
        interval, source = prometheus.step_s(window), "prometheus"
    return web.json_response(
        {
            "name": v.name,
            "window_s": window,
            "interval_s": interval or console.settings.scrape_s,
            "source": source,
            "points": points,
        }
    )


# -- invoking --------------------------------------------------------------------------


# -- dead letters ----------------------------------------------------------------------


def _limit(raw: str) -> int:
    if not raw.isdigit() or not 1 <= int(raw) <= 1000:
        raise ApiError(400, "bad_limit", f"limit must be an integer from 1 to 1000, got {raw!r}")
    return int(raw)


async def _ids(request: web.Request) -> list[str] | None:
    """``{"ids": [...]}`` in the body or ``?ids=a,b``; None means every dead letter."""
    if "ids" in request.query:
        return [i for i in request.query["ids"].split(",") if i] or None
    ids = object_body(await json_body(request), "the body").get("ids")
    if ids is None:
        return None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise ApiError(400, "bad_body", "ids must be a list of dead-letter ids (strings)")
    return ids


async def _bus_call(coro: Awaitable[Any]) -> Any:
    from kubefuncs.errors import KubefuncsError

    try:
        return await coro
    except (KubefuncsError, OSError) as e:
        raise ApiError(503, "bus_unavailable", f"the bus failed: {e}") from e


async def list_dead(request: web.Request) -> web.Response:
    console = await allowed(request, READ)
    v = await view(console, request.match_info["name"])
    limit = _limit(request.query.get("limit", "100"))
    letters = await _bus_call(console.bus().dead_letters(v.topic, v.channel, limit=limit))
    return web.json_response({"name": v.name, "dead_letters": [describe_dead(d) for d in letters]})


async def replay_dead(request: web.Request) -> web.Response:
    console = await allowed(request, WRITE)
    v = await view(console, request.match_info["name"])
    n = await _bus_call(console.bus().replay_dead(v.topic, v.channel, await _ids(request)))
    return web.json_response({"name": v.name, "replayed": n})


async def purge_dead(request: web.Request) -> web.Response:
    console = await allowed(request, WRITE)
    v = await view(console, request.match_info["name"])
    n = await _bus_call(console.bus().purge_dead(v.topic, v.channel, await _ids(request)))
    return web.json_response({"name": v.name, "purged": n})


# -- deploying -------------------------------------------------------------------------


async def _deploy(request: web.Request, update: bool) -> web.Response:
    console = await allowed(request, WRITE)
    body = object_body(await json_body(request), "the function")
    if update:
        name = request.match_info["name"]
        body.setdefault("name", name)
        if body["name"] != name:
            issue = {"path": "name", "problem": f"must be {name!r} (the URL's)", "hint": ""}
            raise ApiError(422, "invalid", f"name {body['name']!r} is not {name!r}", issues=[issue])
    v, changes = await asyncio.to_thread(console.catalog.deploy, body, update=update)
    await _bus_call(console.bus().ensure_channel(v.topic, v.channel))
    out = {**await row(console, v), "spec": dict(v.spec), "source": v.source, "changes": changes}
    return web.json_response(out, status=200 if update else 201)


async def create_function(request: web.Request) -> web.Response:
    return await _deploy(request, update=False)


async def update_function(request: web.Request) -> web.Response:
    return await _deploy(request, update=True)


async def delete_function(request: web.Request) -> web.Response:
    console = await allowed(request, WRITE)
    name = request.match_info["name"]
    changes = await asyncio.to_thread(console.catalog.delete, name)
    return web.json_response({"name": name, "changes": changes})
