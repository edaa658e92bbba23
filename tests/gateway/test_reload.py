"""The gateway's routes while it runs (gateway/reload.py): the routes file plus the
functions' routes file, re-read on change; a bad change never takes routes away."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from kubefuncs.gateway import GatewaySettings, create_app
from kubefuncs.gateway.__main__ import prepare
from kubefuncs.gateway.app import GATEWAY
from kubefuncs.gateway.reload import RouteFiles, combine
from kubefuncs.gateway.routes import loads


def test_the_routes_file_wins_over_a_function_route_on_the_same_path(
    caplog: pytest.LogCaptureFixture,
) -> None:
    main = loads("routes: {/shop/: shop}\npublish: {topics: [shop]}\n")
    functions = loads("routes: {/shop/: thief, /orders/: orders}\n")
    with caplog.at_level(logging.WARNING):
        table = combine(main, functions)
    assert {r.prefix: r.topic for r in table.routes} == {"/shop/": "shop", "/orders/": "orders"}
    assert table.publish.topics == frozenset({"shop"})
    assert "function route /shop/ skipped" in caplog.text


def test_a_missing_functions_file_is_no_routes_yet_and_a_missing_routes_file_an_error(
    tmp_path: Path,
) -> None:
    files = RouteFiles("", str(tmp_path / "absent" / "routes.yaml"))
    assert files.table(files.read()).routes == ()
    settings, table = prepare([], {"KF_GATEWAY_FUNCTION_ROUTES": str(tmp_path / "none.yaml")})
    assert table.routes == () and settings.routes_file == ""
    with pytest.raises(Exception, match="KF_GATEWAY_ROUTES"):
        prepare([], {})


def test_the_reload_setting_is_read_and_checked() -> None:
    assert GatewaySettings.from_env({}).routes_reload_s == 2.0
    assert GatewaySettings.from_env({"KF_GATEWAY_ROUTES_RELOAD_S": "0"}).routes_reload_s == 0
    with pytest.raises(Exception, match="KF_GATEWAY_ROUTES_RELOAD_S"):
        GatewaySettings.from_env({"KF_GATEWAY_ROUTES_RELOAD_S": "soon"})


async def until(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.02)


async def test_a_running_gateway_swaps_in_changed_routes_and_keeps_them_on_a_bad_change(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    main, extra = tmp_path / "routes.yaml", tmp_path / "functions.yaml"
    main.write_text("routes: {/test/: test}\n")
    env = {
        "KF_BUS_URL": "memory://reload-test",
        "KF_GATEWAY_FUNCTION_ROUTES": str(extra),
        "KF_GATEWAY_ROUTES_RELOAD_S": "0.05",
        "KF_GATEWAY_MAINTAIN_INTERVAL_S": "0",
    }
    settings, table = prepare([str(main)], env)
    app = create_app(settings, table)
    gateway = app[GATEWAY]
    async with TestClient(TestServer(app)) as client:
        assert (await client.get("/orders/")).status == 404
        # When functl's file gains a route Then the same app routes it
        extra.write_text("routes: {/orders/: orders}\n")
        await until(lambda: gateway.table.match("/orders/") is not None)
        # When a change needs credentials the gateway lacks, or does not parse
        with caplog.at_level(logging.ERROR, logger="kubefuncs.gateway.reload"):
            extra.write_text("routes: {/orders/: {topic: orders, auth: api_key}}\n")
            await until(lambda: "KF_GATEWAY_API_KEYS" in caplog.text)
            extra.write_text("routes: [broken\n")
            await until(lambda: caplog.text.count("routes not reloaded") >= 2)
        # Then the routes in use stay, unchanged
        route = gateway.table.match("/orders/")
        assert route is not None and route.auth == "none"
        assert gateway.table.match("/test/x") is not None
        # and a later good change is taken again
        extra.write_text("routes: {}\n")
        await until(lambda: gateway.table.match("/orders/") is None)


async def test_a_file_of_non_utf8_bytes_keeps_the_routes_and_the_watch_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    extra = tmp_path / "functions.yaml"
    extra.write_text("routes: {/orders/: orders}\n")
    env = {
        "KF_BUS_URL": "memory://reload-bytes",
        "KF_GATEWAY_FUNCTION_ROUTES": str(extra),
        "KF_GATEWAY_ROUTES_RELOAD_S": "0.05",
        "KF_GATEWAY_MAINTAIN_INTERVAL_S": "0",
    }
    settings, table = prepare([], env)
    app = create_app(settings, table)
    gateway = app[GATEWAY]
    async with TestClient(TestServer(app)):
        # When the file turns into bytes that are no UTF-8 text
        with caplog.at_level(logging.ERROR, logger="kubefuncs.gateway.reload"):
            extra.write_bytes(b"routes: {/orders/: \xff\xfe}\n")
            await until(lambda: "not UTF-8" in caplog.text)
        # Then the routes stay, and a later change is still taken (the watch did not end)
        assert gateway.table.match("/orders/") is not None
        extra.write_text("routes: {/orders/: orders, /more/: more}\n")
        await until(lambda: gateway.table.match("/more/") is not None)


async def test_a_reloaded_cold_start_route_is_polled_and_known_to_the_scaler(
    tmp_path: Path,
) -> None:
    from kubefuncs.gateway.app import published_topics

    extra = tmp_path / "functions.yaml"
    env = {
        "KF_BUS_URL": "memory://reload-cold",
        "KF_GATEWAY_FUNCTION_ROUTES": str(extra),
        "KF_GATEWAY_ROUTES_RELOAD_S": "0.05",
        "KF_GATEWAY_MAINTAIN_INTERVAL_S": "0",
    }
    settings, table = prepare([], env)
    app = create_app(settings, table)
    gateway = app[GATEWAY]
    assert gateway.presence is not None  # a functions' file may bring cold-start routes
    async with TestClient(TestServer(app)):
        # When a deployed function's route with a cold-start timeout arrives
        extra.write_text("routes: {/late/: {topic: late, cold_start_timeout_s: 60}}\n")
        await until(lambda: gateway.table.match("/late/") is not None)
        # Then its topic is polled for live consumers and the scaler knows it
        assert ("late", None) in gateway.presence.live
        assert "late" in published_topics(gateway.table)
        # and once the route leaves, its topic is no longer polled
        extra.write_text("routes: {}\n")
        await until(lambda: ("late", None) not in gateway.presence.live)
