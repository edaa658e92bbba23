"""The function API: the ``@function`` decorator, the handler context, result mapping."""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import declare, wire
from .middleware import Middleware, check
from .once import DEDUPE_WINDOW_S, ONCE_TTL_S, once, once_key
from .retry import RetryPolicy
from .settings import Settings

if TYPE_CHECKING:
    from .client import Client

Handler = Callable[..., Any]


@dataclass
class Service:
    """What a lifespan gets: the function's settings, a client on its bus (to publish or
    call while starting), a logger, and ``state``, the mapping every handler sees as
    ``ctx.state`` (a lifespan may fill it, or yield a mapping that is merged into it)."""

    name: str
    settings: Settings
    client: Client
    log: logging.Logger
    state: dict[str, Any] = field(default_factory=dict)


# ``lifespan(service)``: an async context manager factory (``@contextlib.asynccontextmanager``)
# or a bare async generator function; what it yields, if a mapping, joins ``service.state``
Lifespan = Callable[[Service], AbstractAsyncContextManager[Any] | AsyncIterator[Any]]


def lifespan_context(lifespan: Lifespan, service: Service) -> AbstractAsyncContextManager[Any]:
    """``lifespan(service)`` as an async context manager, whichever form it was written in."""
    if inspect.isasyncgenfunction(lifespan):
        return contextlib.asynccontextmanager(lifespan)(service)
    made = lifespan(service)
    if not isinstance(made, AbstractAsyncContextManager):
        raise TypeError(
            f"lifespan {getattr(lifespan, '__name__', lifespan)!r} must be an async generator "
            f"function or return an async context manager, got {type(made).__name__}"
        )
    return made


@dataclass(frozen=True)
class Function:
    """A handler with its per-function settings. Calling it calls the handler."""

    handler: Handler
    settings: Settings
    non_retryable: tuple[type[BaseException], ...] = ()
    lifespan: Lifespan | None = None
    middleware: tuple[Middleware, ...] = ()
    # functions.yaml fields declared in code (client/declare.py); functl reads them
    declarations: Mapping[str, Any] = field(default_factory=dict, compare=False)
    batched: bool = False  # a batch handler: (payloads, ctxs) -> results, see kubefuncs._batch

    @property
    def name(self) -> str:
        return self.settings.function_name

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.handler)

    @property
    def wants_context(self) -> bool:
        params = inspect.signature(self.handler).parameters
        return len(params) >= 2

    def with_settings(self, settings: Settings) -> Function:
        return dataclasses.replace(self, settings=settings)

    def retry_policy(self) -> RetryPolicy:
        s = self.settings
        return RetryPolicy(
            s.max_attempts, s.backoff_s, s.backoff_max_s, non_retryable=self.non_retryable
        )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.handler(*args, **kwargs)


def function(
    topic: str | None = None,
    *,
    name: str | None = None,
    channel: str | None = None,
    concurrency: int | None = None,
    timeout_s: float | None = None,
    max_attempts: int | None = None,
    backoff_s: float | None = None,
    backoff_max_s: float | None = None,
    non_retryable: tuple[type[BaseException], ...] = (),
    lifespan: Lifespan | None = None,
    middleware: Sequence[Middleware] = (),
    batch: int | None = None,
    batch_wait_s: float | None = None,
    **declarations: Any,
) -> Callable[[Handler], Function]:
    """Declare a function: ``@function("ping")`` over ``def pong(payload, ctx)``.

    The handler may be sync or async and take ``(payload)`` or ``(payload, ctx)``. Options
    are defaults; ``KF_*`` environment variables override them at start. ``lifespan``
    runs once around the life of the process: its startup before the first message (the
    process is ready only after it succeeded), its shutdown after the drain; what it puts
    in ``service.state`` handlers read as ``ctx.state``. ``middleware`` wraps every
    message's handling, the first outermost (see :mod:`kubefuncs.middleware`).

    Any other keyword is a functions.yaml field declared in code (``routes=``,
    ``scaling=``, ``resources=``, ``schedule=``, ``retry=``, ...; see
    :mod:`kubefuncs.declare`), checked against the functions.yaml schema here; functl
    deploys with them, and a functions.yaml entry overrides them field by field.
    ``batch=N`` declares a batch handler, ``(payloads)`` or ``(payloads, ctxs)`` with up
    to N messages per call, gathered for at most ``batch_wait_s`` (see
    :mod:`kubefuncs._batch`); its middleware wraps each batch call.
    """
    wrappers = check(middleware)
    if batch is not None and batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    given = declare.options(concurrency, timeout_s, max_attempts, backoff_s, backoff_max_s)
    given.update(
        {k: v for k, v in (("batch", batch), ("batch_wait_s", batch_wait_s)) if v is not None}
    )

    def wrap(handler: Handler) -> Function:
        fname = name or handler.__name__.replace("_", "-")
        settings_given = {
            "concurrency": concurrency,
            "timeout_s": timeout_s,
            "max_attempts": max_attempts,
            "backoff_s": backoff_s,
            "backoff_max_s": backoff_max_s,
            "batch": batch,
            "batch_wait_s": batch_wait_s,
        }
        settings = Settings(
            function_name=fname,
            topic=topic or "",
            channel=channel or "",
            **{k: v for k, v in settings_given.items() if v is not None},  # type: ignore[arg-type]
        )
        # only the free-form declarations need the schema (and jsonschema's import time)
        declared = declare.merge(given, declare.check(declarations, f"{fname!r}"))
        return Function(
            handler,
            settings,
            non_retryable,
            lifespan,
            wrappers,
            declared,
            batched=batch is not None,
        )

    return wrap


def as_function(obj: Any, attr: str) -> Function:
    """A Function from whatever ``module:attr`` names: a decorated or a plain callable."""
    if isinstance(obj, Function):
        return obj
    if callable(obj):
        return Function(obj, Settings(function_name=attr.replace("_", "-")))
    raise TypeError(f"{attr} is a {type(obj).__name__}, not a function")


@dataclass
class Context:
    """What a handler knows about the message it handles and how it talks to the bus."""

    envelope: wire.Envelope
    attempt: int
    log: logging.LoggerAdapter[logging.Logger]
    client: Client
    extra: dict[str, Any] = field(default_factory=dict)
    state: Mapping[str, Any] = field(default_factory=dict)  # what the lifespan set up
    channel: str = ""  # the channel being consumed (ctx.once's keys)

    @property
    def id(self) -> str:
        return self.envelope.id

    @property
    def headers(self) -> Mapping[str, str]:
        return self.envelope.headers

    @property
    def deadline_ms(self) -> int | None:
        return self.envelope.deadline_ms

    def _trace(self, headers: Mapping[str, str] | None) -> dict[str, str]:
        out = {k: v for k, v in self.headers.items() if k in ("traceparent", "tracestate")}
        out.update(headers or {})
        return out

    def publish(
        self,
        topic: str,
        payload: Any,
        *,
        headers: Mapping[str, str] | None = None,
        delay_s: float = 0.0,
        dedupe_key: str | None = None,
        dedupe_window_s: float = DEDUPE_WINDOW_S,
    ) -> Awaitable[str]:
        """Publish an event, carrying this message's trace context. ``dedupe_key`` (such
        as ``ctx.id``): a second publish with that key within ``dedupe_window_s`` is
        dropped (see :meth:`Client.publish`)."""
        return self.client.publish(
            topic,
            payload,
            headers=self._trace(headers),
            delay_s=delay_s,
            dedupe_key=dedupe_key,
            dedupe_window_s=dedupe_window_s,
        )

    def once(
        self, name: str, side_effect: Callable[[str], Any], *, ttl_s: float = ONCE_TTL_S
    ) -> Awaitable[Any]:
        """Run ``side_effect(key)`` once per message despite redelivery; returns its result
        (a later delivery of the message gets the first one's back without running it).

        ``await ctx.once("charge", lambda key: psp.charge(card, idempotency_key=key))``

        ``key`` is ``<channel>/<message id>/<name>``: pass it on to the side effect where
        the other side accepts one, because a run that dies after the side effect but
        before its marker is written runs it again (see :mod:`kubefuncs.once`)."""
        key = once_key(self.channel or "-", self.id, name)
        return once(self.client.transport, key, side_effect, ttl_s)

    def call(
        self,
        topic: str,
        payload: Any,
        *,
        timeout_s: float = 30.0,
        headers: Mapping[str, str] | None = None,
    ) -> Awaitable[Any]:
        """Call another function and await its reply (RemoteError / CallTimeout)."""
        return self.client.call(topic, payload, timeout_s=timeout_s, headers=self._trace(headers))


def to_reply(request: wire.Envelope, result: Any) -> wire.Envelope:
    """The reply envelope for a handler's return value."""
    payload, kind = _reply_payload(request, result)
    return wire.reply_for(request, payload, kind=kind)


def reply_body(request: wire.Envelope, result: Any) -> bytes:
    """``wire.encode(to_reply(request, result))``, without the intermediate envelope."""
    payload, kind = _reply_payload(request, result)
    return wire.encode_reply(request, payload, kind=kind)


def _reply_payload(request: wire.Envelope, result: Any) -> tuple[Any, str]:
    """A handler's return value as a reply payload and kind: an http-request is answered
    with an http-response, anything else with a plain reply."""
    if request.kind == wire.HTTP_REQUEST:
        return to_http_response(result), wire.HTTP_RESPONSE
    return result, wire.REPLY


def to_http_response(result: Any) -> wire.HttpResponse:
    """Map a return value to HTTP: HttpResponse as is, bytes/str as a body, None as 204,
    anything else as JSON."""
    if isinstance(result, wire.HttpResponse):
        return result
    if result is None:
        return wire.HttpResponse(204)
    if isinstance(result, bytes):
        return wire.HttpResponse(200, {"content-type": "application/octet-stream"}, result)
    if isinstance(result, str):
        return wire.HttpResponse(
            200, {"content-type": "text/plain; charset=utf-8"}, result.encode()
        )
    body = json.dumps(result, separators=(",", ":"), default=str).encode()
    return wire.HttpResponse(200, {"content-type": "application/json"}, body)


def error_reply(request: wire.Envelope, error: BaseException) -> wire.Envelope:
    status = 504 if isinstance(error, TimeoutError) else None
    info = wire.ErrorInfo(type(error).__name__, str(error) or type(error).__name__, status=status)
    return wire.reply_for(request, info, kind=wire.ERROR)
