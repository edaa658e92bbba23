"""What stands between a socket and the routes: requests too malformed to route are
answered here with a JSON 4xx and a reason, one log line and no traceback.

Two layers. aiohttp's parser refuses bytes that are not HTTP (a bad request line, an
invalid Content-Length, a header line over 8190 bytes, more than 128 headers) before any
handler runs; :class:`FrontDoorRunner` serves the app through a request handler whose
``handle_error`` answers those with ``error_response`` instead of aiohttp's text page
(which echoes the offending bytes and logs a traceback per request, so anyone could fill
the log). :func:`refuse_bad_requests` is the first middleware: header values that are not
UTF-8, paths with NUL or control characters or dot segments, and aiohttp's own HTTP errors
(no such route) become JSON refusals too.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from .responses import error_response

log = logging.getLogger("kubefuncs.gateway")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

MAX_LINE_BYTES = 8190  # aiohttp's limit on the request line and on each header line
MAX_HEADERS = 128  # aiohttp's limit on the number of header lines
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_REASON = re.compile(r"[A-Za-z][A-Za-z0-9 ,'()/-]{0,79}")


@web.middleware
async def refuse_bad_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The first middleware: refuse what no route should see, and make aiohttp's own
    HTTP errors (404 for ``OPTIONS *``, say) JSON like every other refusal."""
    refusal = bad_header(request) or bad_path(request.path)
    if refusal is not None:
        return refusal
    try:
        return await handler(request)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        return error_response(e.status, _code(e.status), e.reason)


def bad_header(request: web.Request) -> web.Response | None:
    """A header value that is not UTF-8 (aiohttp keeps its bytes as lone surrogates) is
    refused here, before it can fail an encoder or a response header."""
    for name, value in request.headers.items():
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return error_response(
                    400, "bad_header", f"header {name!r} is not valid UTF-8; send UTF-8 text"
                )
    return None


def bad_path(path: str) -> web.Response | None:
    """Refuse a decoded path that routing could read one way and a function another: a NUL
    or control character (``%00``, ``%0d%0a``), or a ``.``/``..`` segment (``..%2f`` and
    ``%2e%2e`` decode to one; aiohttp resolves neither), which would let a request reach
    one route's function while naming another route's prefix."""
    if _CONTROL.search(path):
        return error_response(
            400, "bad_path", "the path holds a control character (such as %00 or %0d%0a)"
        )
    segments = path.split("/")
    if "." in segments or ".." in segments:
        return error_response(
            400,
            "bad_path",
            "the path has a '.' or '..' segment (literal or percent-encoded); "
            "send the path with dot segments resolved",
        )
    return None


def _code(status: int) -> str:
    return {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(
        status, "bad_request"
    )


def parser_refusal(exc: BaseException | None) -> tuple[int, str, str]:
    """(status, code, reason) for an error of aiohttp's HTTP parser. The reason never
    repeats the request's bytes: aiohttp's messages do, after the first colon."""
    if isinstance(exc, LineTooLong):
        return (
            431,
            "header_too_large",
            f"the request line or a header line is longer than {MAX_LINE_BYTES} bytes",
        )
    text = exc.message if isinstance(exc, HttpProcessingError) else ""
    if isinstance(exc, BadHttpMessage) and text.startswith("Too many headers"):
        return 431, "header_too_large", f"the request has more than {MAX_HEADERS} header lines"
    head = _REASON.match(str(text).split(":", 1)[0].strip())
    reason = head.group(0).strip() if head else "not a valid HTTP/1.x request"
    return 400, "bad_request", f"malformed request: {reason}"


Refused = Callable[[int], None]  # told the status of each request the parser refused


class FrontDoorHandler(RequestHandler):
    """aiohttp's connection handler, with JSON refusals for what its parser rejects."""

    def __init__(self, manager: web.Server, *, on_refused: Refused, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._on_refused = on_refused

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500 or not isinstance(exc, HttpProcessingError):
            self.log_exception("error handling a request from %s", request.remote, exc_info=exc)
            code, reason = "internal", "the gateway failed on this request; see its log"
        else:
            status, code, reason = parser_refusal(exc)
            # debug, not info: anyone can send these, and a log line each would let them
            # fill the log; kubefuncs_gateway_malformed_requests_total counts them
            log.debug("refused a malformed request from %s: %s", request.remote, reason)
            self._on_refused(status)
        if request.writer.output_size > 0:  # a response was under way: nothing can be sent
            raise ConnectionError("cannot answer an error after a response has started")
        response = error_response(status, code, reason)
        response.force_close()
        return response


class FrontDoorServer(web.Server):
    def __init__(self, *args: Any, on_refused: Refused, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_refused = on_refused

    def __call__(self) -> RequestHandler:
        return FrontDoorHandler(self, loop=self._loop, on_refused=self.on_refused, **self._kwargs)


class FrontDoorRunner(web.AppRunner):
    """``web.AppRunner`` whose connections are handled by :class:`FrontDoorHandler`;
    ``on_refused`` is told the status of every request the parser refuses."""

    def __init__(
        self, app: web.Application, *, on_refused: Refused = lambda _: None, **kwargs: Any
    ) -> None:
        super().__init__(app, **kwargs)
        self._on_refused = on_refused

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()
        kwargs: dict[str, Any] = plain._kwargs  # the runner's handler settings, as given
        return FrontDoorServer(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
            on_refused=self._on_refused,
            **kwargs,
        )
