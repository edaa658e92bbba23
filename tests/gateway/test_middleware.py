"""Per-route gateway middleware: named in the routes file, run in order around the call
through the bus, after the gateway's own checks; refusals and bugs answered with a reason."""

from __future__ import annotations

import json

import pytest
from kubefuncs.errors import ConfigError
from kubefuncs.gateway import loads

from .fns import behave
from .test_app import KEY, SETTINGS, served

ROUTES = """
routes:
  /plain/: e2e
  /wrapped/: {topic: e2e, middleware: [tests.gateway.fns:stamp, tests.gateway.fns:quota]}
  /keyed/: {topic: e2e, auth: api_key, middleware: [tests.gateway.fns:stamp]}
  /broken/: {topic: e2e, middleware: [tests.gateway.fns:broken]}
"""


async def test_middleware_runs_in_order_around_the_call() -> None:
    async with served(behave, SETTINGS, ROUTES) as client:
        r = await client.get("/wrapped/x")
        seen = await r.json()
        # Then the function saw what the first middleware added, and the response went
        # back through both, the inner one first
        assert r.status == 200
        assert seen["headers"]["x-stamped"] == "1"
        assert r.headers["X-Seen-By"] == "quota,stamp:-"
        # and a route without middleware is untouched
        plain = await client.get("/plain/x")
        assert "x-stamped" not in (await plain.json())["headers"]
        assert "X-Seen-By" not in plain.headers


async def test_a_middleware_may_refuse_before_the_function_is_called() -> None:
    async with served(behave, SETTINGS, ROUTES) as client:
        r = await client.get("/wrapped/x?over=1")
        assert r.status == 429
        assert await r.json() == {"error": "middleware_refused", "message": "monthly quota used up"}


async def test_middleware_runs_after_authentication_and_sees_the_principal() -> None:
    async with served(behave, SETTINGS, ROUTES) as client:
        refused = await client.get("/keyed/x")
        assert refused.status == 401 and "X-Seen-By" not in refused.headers
        r = await client.get("/keyed/x", headers={"X-Api-Key": KEY})
        assert r.headers["X-Seen-By"] == "stamp:tests"


async def test_a_failing_middleware_is_a_500_with_a_reason_and_its_traceback_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with served(behave, SETTINGS, ROUTES) as client:
        r = await client.get("/broken/x")
        assert r.status == 500
        assert json.loads(await r.text())["error"] == "middleware_error"
    assert any(
        rec.exc_info and "a bug in the middleware" in str(rec.exc_info[1]) for rec in caplog.records
    )


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("tests.gateway.nowhere:stamp", "cannot import module 'tests.gateway.nowhere'"),
        ("tests.gateway.fns:missing", "has no 'missing'"),
        ("tests.gateway.fns:not_async", "must be an async function"),
        ("not a name", "must look like module:function"),
    ],
)
def test_a_middleware_that_cannot_be_used_is_refused_at_start(name: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem) as e:
        loads(f"routes:\n  /m/: {{topic: e2e, middleware: ['{name}']}}\n")
    assert "routes./m/.middleware[0]" in str(e.value)
