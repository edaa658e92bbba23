"""OpenTelemetry spans (the ``kubefuncs[otel]`` extra): gateway request -> publish ->
handle -> reply, linked by the W3C context the envelope carries; in one process with the
SDK's in-memory exporter, and across real processes exporting OTLP to a collector here."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from kubefuncs import Context, function, tracing
from kubefuncs.testing import run
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
PROVIDERS: list[TracerProvider] = []


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Every span this process makes in the test, kept in memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(tracing.Tracer(provider.get_tracer("tests"), provider))
    PROVIDERS[:] = [provider]  # a process that traces sets it as the global provider
    yield exporter
    tracing.install(None)
    provider.shutdown()


def named(exporter: InMemorySpanExporter, name: str) -> ReadableSpan:
    found = [s for s in exporter.get_finished_spans() if s.name == name]
    assert len(found) == 1, [s.name for s in exporter.get_finished_spans()]
    return found[0]


def parent_of(span: ReadableSpan) -> int:
    assert span.parent is not None, span.name
    return span.parent.span_id


async def test_a_call_is_a_client_span_over_the_handler_and_its_reply(
    spans: InMemorySpanExporter,
) -> None:
    @function("traced")
    async def handler(payload: Any, ctx: Context) -> Any:
        with PROVIDERS[0].get_tracer("user").start_as_current_span("user work"):  # nests
            return payload

    async with run(handler) as fn:
        assert await fn.client.call("traced", "hi", headers={"traceparent": TRACEPARENT}) == "hi"
    call, process = named(spans, "traced call"), named(spans, "traced process")
    reply, user = named(spans, "reply"), named(spans, "user work")
    # Then the caller's trace goes on, each hop the parent of the next
    assert {s.context.trace_id for s in (call, process, reply, user)} == {int(CALLER_TRACE, 16)}
    assert parent_of(call) == int(CALLER_SPAN, 16)
    assert parent_of(process) == call.context.span_id
    assert parent_of(reply) == parent_of(user) == process.context.span_id
    assert (call.kind, process.kind, reply.kind) == (
        SpanKind.CLIENT,
        SpanKind.CONSUMER,
        SpanKind.PRODUCER,
    )
    assert process.attributes is not None
    assert process.attributes["messaging.destination.name"] == "traced"
    assert process.attributes["kubefuncs.attempt"] == 1


async def test_a_failing_handler_marks_its_span_failed(spans: InMemorySpanExporter) -> None:
    @function("traced-failing", max_attempts=1)
    async def handler(payload: Any) -> Any:
        raise ValueError("no such order")

    async with run(handler) as fn:
        await fn.publish("x")
        await fn.settle()
    process = named(spans, "traced-failing process")
    assert process.status.status_code is StatusCode.ERROR
    assert process.events and process.events[0].name == "exception"


async def test_a_publish_from_a_handler_is_a_child_of_its_span(
    spans: InMemorySpanExporter,
) -> None:
    @function("traced-chain")
    async def first(payload: Any, ctx: Context) -> None:
        await ctx.publish("traced-next", payload)

    async with run(first) as fn:
        await fn.publish("go", headers={"traceparent": TRACEPARENT})
        await fn.settle()
    process, onward = named(spans, "traced-chain process"), named(spans, "traced-next publish")
    assert parent_of(onward) == process.context.span_id
    assert onward.context.trace_id == int(CALLER_TRACE, 16)


async def test_a_gateway_request_is_a_server_span_over_publish_and_handle(
    spans: InMemorySpanExporter,
) -> None:
    from tests.gateway.test_app import gateway

    async with gateway() as client:
        r = await client.get("/echo/a", headers={"traceparent": TRACEPARENT})
        assert r.status == 200
        # the function's span ends after its reply is on the bus
        async with asyncio.timeout(5):
            while not [s for s in spans.get_finished_spans() if s.name == "e2e process"]:
                await asyncio.sleep(0.01)
    server, publish = named(spans, "GET /echo/"), named(spans, "e2e publish")
    process = named(spans, "e2e process")
    assert parent_of(server) == int(CALLER_SPAN, 16)
    assert parent_of(publish) == server.context.span_id
    assert parent_of(process) == publish.context.span_id
    assert server.kind is SpanKind.SERVER
    assert server.attributes is not None
    assert server.attributes["http.response.status_code"] == 200


@pytest.mark.parametrize(
    ("env", "wanted"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"}, False),
    ],
)
def test_traces_are_made_only_when_the_environment_asks(env: dict[str, str], wanted: bool) -> None:
    assert tracing.wanted(env) is wanted


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", **env},
    )


def test_nothing_of_opentelemetry_is_imported_when_no_traces_are_asked_for() -> None:
    code = (
        "import sys, kubefuncs.__main__, kubefuncs.gateway.__main__\n"
        "from kubefuncs import tracing\n"
        "assert tracing.configure('f') is None\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    done = _python(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_without_the_extra_traces_asked_for_are_a_warning_not_a_failure() -> None:
    code = (
        "import sys; sys.modules['opentelemetry'] = None\n"  # as if it were not installed
        "import logging; logging.basicConfig()\n"
        "from kubefuncs import tracing\n"
        "assert tracing.configure('f') is None\n"
    )
    done = _python(code, OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9")
    assert done.returncode == 0, done.stderr
    assert "install kubefuncs[otel]" in done.stderr
