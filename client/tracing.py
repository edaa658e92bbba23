"""OpenTelemetry spans, when they are asked for: the optional extra ``kubefuncs[otel]`` is
installed and the standard ``OTEL_*`` variables name an exporter. Otherwise nothing of
OpenTelemetry is imported and every hook here is one ``is None`` check.

The spans follow a message: the gateway's SERVER span for the HTTP request, a PRODUCER
span for the publish whose context travels in the envelope's ``traceparent``, the
function's CONSUMER span for handling it (current while the handler runs, so spans the
handler makes itself nest under it), and a PRODUCER span for the reply. Without tracing the
W3C context still travels as before; with it, each hop's own span is the parent of the next.

Variables read (the OpenTelemetry SDK's own names): ``OTEL_SDK_DISABLED``,
``OTEL_TRACES_EXPORTER`` (``otlp``, ``console``, ``none``), ``OTEL_EXPORTER_OTLP_ENDPOINT``
/ ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` (OTLP over HTTP/protobuf), ``OTEL_SERVICE_NAME``,
``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER``, ``OTEL_BSP_*``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from typing import Any

log = logging.getLogger("kubefuncs.tracing")

SERVER, CLIENT, PRODUCER, CONSUMER, INTERNAL = (
    "server",
    "client",
    "producer",
    "consumer",
    "internal",
)
_ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


class Tracer:
    """Spans of one process, over an OpenTelemetry tracer (see the module docstring)."""

    def __init__(self, tracer: Any, provider: Any = None) -> None:
        from opentelemetry import trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self._otel = trace
        self._tracer = tracer
        self._provider = provider  # ours to flush and shut down, when we made it
        self._propagator = TraceContextTextMapPropagator()
        self._kinds = {
            SERVER: trace.SpanKind.SERVER,
            CLIENT: trace.SpanKind.CLIENT,
            PRODUCER: trace.SpanKind.PRODUCER,
            CONSUMER: trace.SpanKind.CONSUMER,
            INTERNAL: trace.SpanKind.INTERNAL,
        }

    @contextlib.contextmanager
    def span(
        self,
        name: str,
        kind: str,
        *,
        parent: Mapping[str, str] | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> Iterator[Any]:
        """A span, current for the block: its parent is the W3C context in ``parent``
        (message or request headers) when given, else the current span. An exception that
        leaves the block is recorded on it."""
        context = None
        if parent is not None:
            context = self._propagator.extract({k.lower(): v for k, v in parent.items()})
        with self._tracer.start_as_current_span(
            name, context=context, kind=self._kinds[kind], attributes=dict(attributes or {})
        ) as span:
            yield span

    def in_span(self) -> bool:
        """Whether a span is current (a handler's, a request's)."""
        return bool(self._otel.get_current_span().get_span_context().is_valid)

    def start(self, name: str, kind: str, attributes: Mapping[str, Any] | None = None) -> Any:
        """A span that is not made current, child of the current one; end it yourself."""
        return self._tracer.start_span(
            name, kind=self._kinds[kind], attributes=dict(attributes or {})
        )

    def headers(self, span: Any) -> dict[str, str]:
        """``traceparent`` (and ``tracestate``) naming ``span`` as the parent of what
        receives them."""
        carrier: dict[str, str] = {}
        self._propagator.inject(carrier, context=self._otel.set_span_in_context(span))
        return carrier

    def failed(self, error: BaseException | str, span: Any = None) -> None:
        """Mark ``span`` (by default the current one) as failed: by an exception (recorded
        on it), or with a description."""
        span = span or self._otel.get_current_span()
        if isinstance(error, BaseException):
            span.record_exception(error)
        span.set_status(self._otel.Status(self._otel.StatusCode.ERROR, str(error)[:200]))

    def set(self, key: str, value: Any, span: Any = None) -> None:
        (span or self._otel.get_current_span()).set_attribute(key, value)

    def shutdown(self) -> None:
        """Export what is still buffered (at the end of the process)."""
        if self._provider is not None:
            self._provider.shutdown()


_configured: Tracer | None = None


def configure(service_name: str, env: Mapping[str, str] | None = None) -> Tracer | None:
    """Set up tracing for this process when the environment asks for it (once; later calls
    return the same). None when it does not, or when ``kubefuncs[otel]`` is missing (said
    once in the log)."""
    global _configured
    env = os.environ if env is None else env
    if _configured is not None:
        return _configured
    if not wanted(env):
        return None
    try:
        _configured = _make(service_name, env)
    except ImportError as e:
        log.warning(
            "OTEL_* variables ask for traces, but OpenTelemetry is not installed (%s): "
            "install kubefuncs[otel]; no spans are made",
            e,
        )
        return None
    return _configured


def wanted(env: Mapping[str, str]) -> bool:
    """Whether the environment asks for traces (an exporter or an endpoint, not disabled)."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = _exporters(env)
    if exporters is not None:
        return bool(exporters)
    return any(env.get(name) for name in _ENDPOINTS)


def _exporters(env: Mapping[str, str]) -> list[str] | None:
    """The names in OTEL_TRACES_EXPORTER (None when unset); ``none`` means none."""
    value = env.get("OTEL_TRACES_EXPORTER")
    if value is None:
        return None
    names = [n.strip().lower() for n in value.split(",") if n.strip()]
    return [n for n in names if n != "none"]


def _make(service_name: str, env: Mapping[str, str]) -> Tracer:
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # given attributes override the environment's: name the service only when it does not
    attributes = {} if env.get("OTEL_SERVICE_NAME") else {"service.name": service_name}
    provider = TracerProvider(resource=Resource.create(attributes))
    for name in _exporters(env) or ["otlp"]:
        provider.add_span_processor(BatchSpanProcessor(_exporter(name, env)))
    trace.set_tracer_provider(provider)  # so a handler's own spans nest under ours
    return Tracer(provider.get_tracer("kubefuncs"), provider)


def _exporter(name: str, env: Mapping[str, str]) -> Any:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    if name != "otlp":
        raise ImportError(f"no exporter {name!r} in kubefuncs[otel] (otlp, console)")
    protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
    )
    if protocol != "http/protobuf":
        log.warning("OTLP protocol %r is not in kubefuncs[otel]; using http/protobuf", protocol)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def current() -> Tracer | None:
    """The process's tracer: the one :func:`configure` made, or, in a program that set up
    OpenTelemetry itself (it is imported already), one over its global provider."""
    global _configured
    if _configured is None and "opentelemetry.trace" in sys.modules:
        from opentelemetry import trace

        if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
            _configured = Tracer(trace.get_tracer("kubefuncs"))
    return _configured


def install(tracer: Tracer | None) -> None:
    """Use ``tracer`` for this process (tests, or a program with its own provider)."""
    global _configured
    _configured = tracer
