"""nsqd's HTTP API (publish, stats, topic/channel administration) for the double."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from aiohttp import web

from .http_util import (
    ApiError,
    bool_param,
    empty_response,
    json_response,
    nsq_errors,
    text_response,
    topic_arg,
    topic_channel_args,
)
from .protocol import ClientError, go_int64, parse_mpub_body
from .stats import stats_document, stats_text

if TYPE_CHECKING:
    from .broker import Topic
    from .server import NsqdDouble


_GO_INT = re.compile(r"[+-]?[0-9]+", re.ASCII)


def build_nsqd_app(nsqd: NsqdDouble) -> web.Application:
    """aiohttp application serving nsqd's HTTP endpoints for ``nsqd``."""
    routes = _NsqdRoutes(nsqd)
    app = web.Application(middlewares=[nsq_errors], client_max_size=nsqd.options.max_body_size + 1)
    app.router.add_get("/ping", routes.ping)
    app.router.add_get("/info", routes.info)
    app.router.add_get("/stats", routes.stats)
    app.router.add_post("/pub", routes.pub)
    app.router.add_post("/mpub", routes.mpub)
    app.router.add_post("/topic/create", routes.topic_create)
    app.router.add_post("/topic/delete", routes.topic_delete)
    app.router.add_post("/topic/empty", routes.topic_empty)
    app.router.add_post("/channel/create", routes.channel_create)
    app.router.add_post("/channel/delete", routes.channel_delete)
    app.router.add_post("/channel/empty", routes.channel_empty)
    return app


class _NsqdRoutes:
    def __init__(self, nsqd: NsqdDouble) -> None:
        self._nsqd = nsqd
        self._options = nsqd.options

    async def ping(self, request: web.Request) -> web.Response:
        return text_response("OK")

    async def info(self, request: web.Request) -> web.Response:
        nsqd = self._nsqd
        return json_response(
            {
                "version": self._options.version,
                "broadcast_address": nsqd.broadcast_address,
                "hostname": self._options.hostname,
                "http_port": nsqd.http_port,
                "tcp_port": nsqd.tcp_port,
                "start_time": nsqd.start_time,
            }
        )

    async def stats(self, request: web.Request) -> web.Response:
        query = request.query
        doc = stats_document(
            version=self._options.version,
            start_time=self._nsqd.start_time,
            topics=list(self._nsqd.topics.values()),
            clients=list(self._nsqd.clients.values()),
            topic_filter=query.get("topic", ""),
            channel_filter=query.get("channel", ""),
            include_clients=bool_param(query.get("include_clients"), True),
        )
        if query.get("format") != "json":
            return text_response(stats_text(doc))
        if bool_param(query.get("include_mem"), True):
            doc["memory"] = _memory_stats()
        return json_response(doc)

    async def pub(self, request: web.Request) -> web.Response:
        limit = self._options.max_msg_size
        body = await _read_body(request, limit, "MSG_TOO_BIG")
        if not body:
            raise ApiError(400, "MSG_EMPTY")
        topic = topic_arg(request, invalid="INVALID_TOPIC")
        defer_s = self._defer_arg(request)
        self._nsqd.publish(topic, [body], defer_s)
        return text_response("OK")

    async def mpub(self, request: web.Request) -> web.Response:
        opts = self._options
        if (request.content_length or 0) > opts.max_body_size:
            raise ApiError(413, "BODY_TOO_BIG")
        topic = topic_arg(request, invalid="INVALID_TOPIC")
        self._nsqd.get_topic(topic)
        body = await _read_body(request, opts.max_body_size, "BODY_TOO_BIG")
        # unrecognized values of "binary" count as true, like nsqd's deprecated handling
        binary = "binary" in request.query and bool_param(request.query["binary"], True)
        if binary:
            try:
                messages = await parse_mpub_body(body, opts.max_msg_size, opts.max_body_size)
            except ClientError as err:
                raise ApiError(413, err.code[2:]) from None
        else:
            messages = self._split_lines(body)
        self._nsqd.publish(topic, messages)
        return text_response("OK")

    def _split_lines(self, body: bytes) -> list[bytes]:
        # empty lines are silently skipped, as nsqd has done since 0.2.22
        messages = [line for line in body.split(b"\n") if line]
        if any(len(m) > self._options.max_msg_size for m in messages):
            raise ApiError(413, "MSG_TOO_BIG")
        return messages

    def _defer_arg(self, request: web.Request) -> float:
        raw = request.query.get("defer")
        if raw is None:
            return 0.0
        # strconv.ParseInt(s, 10, 64): optional sign, ASCII digits, int64 range; then
        # time.Duration(ms) * time.Millisecond, which wraps like any int64 product
        if _GO_INT.fullmatch(raw) is None or not -(2**63) <= int(raw) < 2**63:
            raise ApiError(400, "INVALID_DEFER")
        defer_ns = go_int64(int(raw) * 1_000_000)
        if defer_ns < 0 or defer_ns > round(self._options.max_req_timeout_s * 1e9):
            raise ApiError(400, "INVALID_DEFER")
        return defer_ns / 1e9

    async def topic_create(self, request: web.Request) -> web.Response:
        self._nsqd.get_topic(topic_arg(request, invalid="INVALID_TOPIC"))
        return empty_response()

    async def topic_delete(self, request: web.Request) -> web.Response:
        topic = request.query.get("topic")
        if topic is None:
            raise ApiError(400, "MISSING_ARG_TOPIC")
        if not self._nsqd.delete_topic(topic):
            raise ApiError(404, "TOPIC_NOT_FOUND")
        return empty_response()

    async def topic_empty(self, request: web.Request) -> web.Response:
        self._existing_topic(topic_arg(request, invalid="INVALID_TOPIC")).empty()
        return empty_response()

    async def channel_create(self, request: web.Request) -> web.Response:
        topic_name, channel = topic_channel_args(request)
        self._existing_topic(topic_name).get_channel(channel)
        return empty_response()

    async def channel_delete(self, request: web.Request) -> web.Response:
        topic_name, channel = topic_channel_args(request)
        if not self._existing_topic(topic_name).delete_channel(channel):
            raise ApiError(404, "CHANNEL_NOT_FOUND")
        return empty_response()

    async def channel_empty(self, request: web.Request) -> web.Response:
        topic_name, channel_name = topic_channel_args(request)
        channel = self._existing_topic(topic_name).channels.get(channel_name)
        if channel is None:
            raise ApiError(404, "CHANNEL_NOT_FOUND")
        channel.empty()
        return empty_response()

    def _existing_topic(self, name: str) -> Topic:
        topic = self._nsqd.topics.get(name)
        if topic is None:
            raise ApiError(404, "TOPIC_NOT_FOUND")
        return topic


async def _read_body(request: web.Request, limit: int, too_big: str) -> bytes:
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise ApiError(413, too_big) from None
    if len(body) > limit:
        raise ApiError(413, too_big)
    return body


def _memory_stats() -> dict[str, int]:
    keys = (
        "heap_objects",
        "heap_idle_bytes",
        "heap_in_use_bytes",
        "heap_released_bytes",
        "gc_pause_usec_100",
        "gc_pause_usec_99",
        "gc_pause_usec_95",
        "next_gc_bytes",
        "gc_total_runs",
    )
    return dict.fromkeys(keys, 0)
