"""What the API's handler modules share: the error they raise, the caller's check, the
function a path names, the request body."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

import yaml
from aiohttp import web

from .catalog import FunctionView

if TYPE_CHECKING:
    from .app import Console


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra


def console_of(request: web.Request) -> Console:
    from .app import CONSOLE

    return request.app[CONSOLE]


async def allowed(request: web.Request, need: str) -> Console:
    console = console_of(request)
    await console.access.check(request.headers, need)
    return console


async def views(console: Console) -> list[FunctionView]:
    return await asyncio.to_thread(console.catalog.functions)


async def view(console: Console, name: str) -> FunctionView:
    for v in await views(console):
        if v.name == name:
            return v
    raise ApiError(404, "not_found", f"no function {name!r} (GET /api/v1/functions lists them)")


class _NoAliases(yaml.SafeLoader):
    """YAML without anchors and aliases: an alias can make a small body expand into a huge
    tree (every later step, validation and the stored annotation, would walk it)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise yaml.YAMLError("aliases (*name) are not accepted in a request body")
        return super().compose_node(parent, index)


async def json_body(request: web.Request) -> Any:
    """The JSON body (YAML too when the content type says so); 400 with the reason."""
    raw = await request.read()
    if not raw:
        return None
    try:
        text = raw.decode("utf-8")
        if "yaml" in request.content_type:
            return yaml.load(text, Loader=_NoAliases)
        return json.loads(text)
    except RecursionError:
        raise ApiError(400, "bad_body", "the request body is nested too deeply") from None
    except (UnicodeDecodeError, json.JSONDecodeError, yaml.YAMLError) as e:
        raise ApiError(400, "bad_body", f"the request body is not valid JSON or YAML: {e}") from e


def object_body(body: Any, what: str) -> dict[str, Any]:
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise ApiError(400, "bad_body", f"{what} must be a JSON object, got {type(body).__name__}")
    return body
