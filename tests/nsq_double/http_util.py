"""HTTP plumbing shared by the nsqd and nsqlookupd doubles (nsq's "V1" HTTP API conventions)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from .protocol import is_valid_name

_NSQ_HEADERS = {"X-NSQ-Content-Type": "nsq; version=1.0"}


class ApiError(Exception):
    """An error answered as ``{"message": ...}`` with the given status, like nsq's http_api.Err."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(data, separators=(",", ":")).encode(),
        content_type="application/json",
        charset="utf-8",
        headers=_NSQ_HEADERS,
    )


def text_response(text: str) -> web.Response:
    return web.Response(text=text, content_type="text/plain", headers=_NSQ_HEADERS)


def empty_response() -> web.Response:
    return web.Response(body=b"", headers=_NSQ_HEADERS)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def nsq_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map handler errors and router misses to nsq's JSON error bodies."""
    try:
        return await handler(request)
    except ApiError as err:
        return json_response({"message": err.message}, err.status)
    except web.HTTPMethodNotAllowed:
        return json_response({"message": "METHOD_NOT_ALLOWED"}, 405)
    except web.HTTPNotFound:
        return json_response({"message": "NOT_FOUND"}, 404)


def query_arg(request: web.Request, name: str) -> str | None:
    return request.query.get(name)


def topic_arg(request: web.Request, invalid: str = "INVALID_ARG_TOPIC") -> str:
    topic = query_arg(request, "topic")
    if topic is None:
        raise ApiError(400, "MISSING_ARG_TOPIC")
    if not is_valid_name(topic):
        raise ApiError(400, invalid)
    return topic


def topic_channel_args(request: web.Request) -> tuple[str, str]:
    """nsq's GetTopicChannelArgs."""
    topic = topic_arg(request)
    channel = query_arg(request, "channel")
    if channel is None:
        raise ApiError(400, "MISSING_ARG_CHANNEL")
    if not is_valid_name(channel):
        raise ApiError(400, "INVALID_ARG_CHANNEL")
    return topic, channel


def bool_param(raw: str | None, default: bool) -> bool:
    """nsq's boolParams table; unknown values fall back to ``default``."""
    table = {"true": True, "1": True, "false": False, "0": False}
    return table.get(raw or "", default)


async def start_site(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound_port = int(runner.addresses[0][1])
    return runner, bound_port
