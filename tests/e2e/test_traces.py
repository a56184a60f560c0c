"""OpenTelemetry traces: a server started with --otlp-endpoint sends a span per request to an
OTLP/HTTP receiver (a real protobuf ExportTraceServiceRequest, decoded with the
opentelemetry-proto package): named by the route template, a child of the caller's W3C
traceparent, with the answer's status, and the API's own span beneath it. A shutdown sends what
was still batched."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import requests
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from e2e_support import free_port

pytestmark = [pytest.mark.slipway_only, pytest.mark.backend_independent]

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"


class Receiver:
    """An OTLP/HTTP traces endpoint: keeps every decoded export request."""

    def __init__(self):
        self.exports: list[ExportTraceServiceRequest] = []
        self.paths: list[str] = []
        exports, paths = self.exports, self.paths

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                paths.append(self.path)
                assert self.headers.get("Content-Type") == "application/x-protobuf"
                message = ExportTraceServiceRequest()
                message.ParseFromString(body)
                exports.append(message)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.port = free_port()
        self.server = HTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.port}"

    def spans(self) -> list[tuple[dict, Span]]:
        found = []
        for export in self.exports:
            for resource_spans in export.resource_spans:
                resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                for scope in resource_spans.scope_spans:
                    found.extend((resource, span) for span in scope.spans)
        return found

    def close(self):
        self.server.shutdown()


def _attributes(span: Span) -> dict:
    values = {}
    for a in span.attributes:
        kind = a.value.WhichOneof("value")
        values[a.key] = getattr(a.value, kind) if kind else None
    return values


def test_request_spans_reach_the_collector_under_the_callers_trace(slipway_factory):
    receiver = Receiver()
    try:
        server = slipway_factory(extra_args=["--otlp-endpoint", receiver.url])
        traceparent = f"00-{TRACE_ID}-{PARENT_ID}-01"
        r = requests.get(f"{server.url}/api/2.0/mlflow/experiments/get-by-name",
                         params={"experiment_name": "Default"},
                         headers={"traceparent": traceparent}, timeout=10)
        assert r.status_code == 200, r.text
        missing = requests.get(f"{server.url}/api/2.0/mlflow/runs/get",
                               params={"run_id": "0" * 32}, timeout=10)
        assert missing.status_code == 404
        # SIGTERM: the exporter sends its batch before the process exits.
        assert server.stop(timeout=20), server.stderr()
        deadline = time.monotonic() + 10
        while not receiver.spans():
            assert time.monotonic() < deadline, "no spans reached the receiver"
            time.sleep(0.1)
        assert set(receiver.paths) == {"/v1/traces"}
        spans = receiver.spans()
        resource = spans[0][0]
        assert resource["service.name"] == "slipway"
        assert resource["service.version"]
        by_name = {}
        for _, span in spans:
            by_name.setdefault(span.name, []).append(span)
        outer = by_name["GET /api/2.0/mlflow/experiments/get-by-name"]
        assert len(outer) == 1, [s.name for _, s in spans]
        outer = outer[0]
        # The caller's trace, with the caller's span as parent.
        assert outer.trace_id.hex() == TRACE_ID
        assert outer.parent_span_id.hex() == PARENT_ID
        assert outer.kind == Span.SPAN_KIND_SERVER
        attributes = _attributes(outer)
        assert attributes["http.response.status_code"] == 200
        assert attributes["http.route"] == "/api/2.0/mlflow/experiments/get-by-name"
        assert attributes["http.request.method"] == "GET"
        # The API's own span is its child, in the same trace.
        inner = [s for s in by_name.get("request", []) if s.trace_id.hex() == TRACE_ID]
        assert inner and inner[0].parent_span_id == outer.span_id, by_name.keys()
        # A request without a traceparent starts its own trace, named by its template too.
        (other,) = by_name["GET /api/2.0/mlflow/runs/get"]
        assert other.trace_id.hex() != TRACE_ID
        assert not other.parent_span_id
        assert _attributes(other)["http.response.status_code"] == 404
        assert "panicked" not in server.stderr()
    finally:
        receiver.close()


def test_an_unreachable_collector_does_not_hold_requests_up(slipway_factory):
    """Spans are batched off the request path: a collector that is down costs nothing."""
    dead = f"http://127.0.0.1:{free_port()}"
    server = slipway_factory(extra_args=["--otlp-endpoint", dead])
    started = time.monotonic()
    for _ in range(20):
        r = requests.get(f"{server.url}/api/2.0/mlflow/experiments/get-by-name",
                         params={"experiment_name": "Default"}, timeout=10)
        assert r.status_code == 200
    assert time.monotonic() - started < 10
    assert server.stop(timeout=30), server.stderr()
