"""A console over real Valkey with the example ping function and a failing one running
in-process, and a client that checks every response against the OpenAPI document."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from jsonschema import Draft202012Validator
from kubefuncs.functl import spec as specs
from kubefuncs.functl.console import ServeSettings, create_app, openapi
from kubefuncs.functl.console.catalog import Catalog
from kubefuncs.functl.dev import function_env, load_function
from kubefuncs.runtime import Runtime
from kubefuncs.transport import Transport, from_url
from prometheus_client import generate_latest
from referencing import Registry
from referencing.jsonschema import DRAFT202012

WRITE_KEY, READ_KEY = "write-key-0123456789", "read-key-0123456789"
WRITER, READER = {"X-Api-Key": WRITE_KEY}, {"X-Api-Key": READ_KEY}
SETTINGS = ServeSettings(
    api_keys={WRITE_KEY: ("ops", "write"), READ_KEY: ("viewer", "read")}, scrape_s=0.2
)
FUNCTIONS = """
version: 1
bus: {{url: "{bus}"}}
functions:
  - name: ping
    handler: example.ping:pong
    topic: test
    routes: /test/
  - name: flaky
    handler: tests.console.handlers:flaky
    topic: flaky
    retry: {{max_attempts: 1}}
"""
DOC = DRAFT202012.create_resource(openapi.DOCUMENT)
REGISTRY: Registry[Any] = Registry().with_resource("urn:kubefuncs:console", DOC)


def functions_file(tmp_path: Path, bus_url: str) -> Path:
    path = tmp_path / "functions.yaml"
    path.write_text(FUNCTIONS.format(bus=bus_url))
    return path


def response_schema(method: str, route: str, status: int) -> dict[str, Any]:
    """The schema the document gives a response; KeyError when it lists none."""
    op = openapi.DOCUMENT["paths"][route][method.lower()]
    content = op["responses"][str(status)]["content"]["application/json"]
    return content["schema"]  # type: ignore[no-any-return]


def validate(method: str, route: str, status: int, body: Any) -> None:
    schema = response_schema(method, route, status)
    if "$ref" in schema:
        schema = {"$ref": "urn:kubefuncs:console" + schema["$ref"]}
    Draft202012Validator(schema, registry=REGISTRY).validate(body)


class Api:
    """A TestClient whose every JSON answer is validated against the document."""

    def __init__(self, client: TestClient[web.Request, web.Application]) -> None:
        self.client = client

    async def call(
        self,
        method: str,
        route: str,
        *,
        name: str = "",
        call_id: str = "",
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> tuple[int, Any]:
        path = route.replace("{name}", name).replace("{call_id}", call_id)
        response = await self.client.request(
            method, path, headers=WRITER if headers is None else headers, **kwargs
        )
        assert response.content_type == "application/json", await response.text()
        body = await response.json()
        validate(method, route, response.status, body)
        return response.status, body


@contextlib.asynccontextmanager
async def running(
    catalog: Catalog, bus_url: str, spec_path: Path, settings: ServeSettings = SETTINGS
) -> AsyncIterator[tuple[Api, Transport]]:
    """The functions of ``spec_path`` running on the bus, and the console over ``catalog``."""
    s = specs.load(spec_path)
    transport = from_url(bus_url)
    await transport.connect()
    runtimes = [
        Runtime(load_function(fn, function_env(s, fn, bus_url)), transport=transport)
        for fn in s.functions
    ]
    tasks = [asyncio.create_task(r.run()) for r in runtimes]
    local = {
        r.fn.name: (lambda r=r: generate_latest(r.metrics.registry).decode()) for r in runtimes
    }
    app = create_app(settings, catalog, bus_url=bus_url, transport=transport, local_metrics=local)
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield Api(client), transport
    finally:
        await client.close()
        for r in runtimes:
            r.stop()
        await asyncio.gather(*tasks, return_exceptions=True)
        await transport.close()


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)
