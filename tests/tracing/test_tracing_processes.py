"""Traces across real processes: a gateway and a function, each exporting OTLP over HTTP to
a collector in this test; one request's spans form one trace from the caller's span to
the function's reply."""

from __future__ import annotations

import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.procs import Proc
from tests.servers import ServerProcess, free_port

from .test_tracing import CALLER_SPAN, CALLER_TRACE, TRACEPARENT

pytestmark = pytest.mark.real


class Collector(ThreadingHTTPServer):
    """Takes OTLP/HTTP protobuf trace exports; keeps (service, span) pairs."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Export)
        self.spans: list[tuple[str, Any]] = []
        self.lock = threading.Lock()


class _Export(BaseHTTPRequestHandler):
    server: Collector

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = ExportTraceServiceRequest.FromString(body)
        with self.server.lock:
            for resource_spans in request.resource_spans:
                attributes = {
                    a.key: a.value.string_value for a in resource_spans.resource.attributes
                }
                for scope in resource_spans.scope_spans:
                    for span in scope.spans:
                        self.server.spans.append((attributes.get("service.name", ""), span))
        reply = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[Collector]:
    server = Collector()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_one_request_is_one_trace_across_the_gateway_and_the_function(
    valkey_server: ServerProcess, collector: Collector, tmp_path: Path
) -> None:
    bus = f"valkey://127.0.0.1:{valkey_server.port}/0?prefix=traces"
    otel = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{collector.server_address[1]}",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "KF_LOG_LEVEL": "WARNING",
    }
    routes = tmp_path / "routes.yaml"
    routes.write_text("/t/: traced\n")
    port = free_port()
    function = Proc(
        ["kubefuncs", "tests.gateway.fns:behave"],
        {**otel, "KF_BUS_URL": bus, "KF_TOPIC": "traced", "KF_HEALTH_ADDR": ""},
    )
    gateway = Proc(
        ["kubefuncs.gateway", str(routes)],
        {**otel, "KF_BUS_URL": bus, "KF_GATEWAY_ADDR": f"127.0.0.1:{port}"},
    )
    try:
        gateway.wait_http(f"http://127.0.0.1:{port}/t/warm-up", expect=b"warm-up")
        collector.spans.clear()  # the warm-up's
        # When a request carrying the caller's trace goes through
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/t/order", headers={"traceparent": TRACEPARENT}
        )
        with urllib.request.urlopen(request, timeout=10) as r:
            assert r.status == 200
    finally:
        # Then (the processes flush their spans on SIGTERM)
        assert gateway.stop() == 0, gateway.output()
        assert function.stop() == 0, function.output()
    spans = {span.name: (service, span) for service, span in collector.spans}
    server = spans["GET /t/"]
    publish, process, reply = spans["traced publish"], spans["traced process"], spans["reply"]
    assert server[0] == publish[0] == "kubefuncs-gateway"
    assert process[0] == reply[0] == "behave"
    assert {s.trace_id.hex() for _, s in (server, publish, process, reply)} == {CALLER_TRACE}
    assert server[1].parent_span_id.hex() == CALLER_SPAN
    assert publish[1].parent_span_id == server[1].span_id
    assert process[1].parent_span_id == publish[1].span_id
    assert reply[1].parent_span_id == process[1].span_id
