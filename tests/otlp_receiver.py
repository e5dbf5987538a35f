"""A real OTLP trace receiver for the tests: gRPC and HTTP/protobuf (gzip too), spans kept in memory.

It speaks the wire protocols the OpenTelemetry SDK's exporters speak, decoded with the official
`opentelemetry-proto` messages, so what the tests assert on is what actually arrived.
"""

from __future__ import annotations

import gzip
import threading
from concurrent import futures
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2


@dataclass(frozen=True)
class ReceivedSpan:
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: int
    attributes: dict[str, Any]
    links: tuple[tuple[str, str], ...]
    events: tuple[str, ...]
    status_code: int
    start: int
    end: int
    service_name: str


def _value(any_value: Any) -> Any:
    field = any_value.WhichOneof("value")
    return getattr(any_value, field) if field else None


class Receiver:
    """Start with `start_grpc()` / `start_http()`; `stop()` takes it down (the port can be reused)."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self.spans: list[ReceivedSpan] = []
        self.requests = 0
        self._grpc: grpc.Server | None = None
        self._http: ThreadingHTTPServer | None = None

    def _store(self, request: trace_service_pb2.ExportTraceServiceRequest) -> None:
        received = []
        for resource_spans in request.resource_spans:
            resource = {kv.key: _value(kv.value) for kv in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(self._decode(span, str(resource.get("service.name", ""))))
        with self._lock:
            self.spans.extend(received)
            self.requests += 1
            self._lock.notify_all()

    @staticmethod
    def _decode(span: trace_pb2.Span, service: str) -> ReceivedSpan:
        return ReceivedSpan(
            trace_id=span.trace_id.hex(),
            span_id=span.span_id.hex(),
            parent_span_id=span.parent_span_id.hex(),
            name=span.name,
            kind=span.kind,
            attributes={kv.key: _value(kv.value) for kv in span.attributes},
            links=tuple((link.trace_id.hex(), link.span_id.hex()) for link in span.links),
            events=tuple(event.name for event in span.events),
            status_code=span.status.code,
            start=span.start_time_unix_nano,
            end=span.end_time_unix_nano,
            service_name=service,
        )

    def snapshot(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self.spans)

    def start_grpc(self, port: int = 0) -> int:
        receiver = self

        class Service(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request: Any, context: Any) -> trace_service_pb2.ExportTraceServiceResponse:
                receiver._store(request)
                return trace_service_pb2.ExportTraceServiceResponse()

        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Service(), server)
        bound: int = server.add_insecure_port(f"127.0.0.1:{port}")
        server.start()
        self._grpc = server
        return bound

    def start_http(self, port: int = 0) -> int:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path != "/v1/traces" or self.headers.get("Content-Type") != "application/x-protobuf":
                    self.send_response(404)
                    self.end_headers()
                    return
                request = trace_service_pb2.ExportTraceServiceRequest()
                request.ParseFromString(body)
                receiver._store(request)
                payload = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self._http = server
        return int(server.server_address[1])

    def stop(self) -> None:
        if self._grpc is not None:
            self._grpc.stop(grace=None).wait(5)
            self._grpc = None
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
