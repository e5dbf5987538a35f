"""A real OTLP receiver for the tests: traces and metrics over gRPC and HTTP/protobuf (gzip too), kept in memory.

It speaks the wire protocols the OpenTelemetry SDK's exporters speak, decoded with the official
`opentelemetry-proto` messages, so what the tests assert on is what actually arrived. `failing = True`
makes it answer every export the way a collector that is down does (gRPC UNAVAILABLE, HTTP 503) and
keep nothing, for outage tests that need the port to stay open.
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

_FAILING = "the receiver is failing exports on purpose"


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


@dataclass(frozen=True)
class ReceivedPoint:
    """One data point of a metric that arrived, flattened with its metric, resource and scope."""

    metric: str  # OTLP metric name
    unit: str
    kind: str  # "sum" | "gauge" | "histogram"
    monotonic: bool  # sums only (False otherwise)
    temporality: int  # AggregationTemporality value: 1 delta, 2 cumulative; 0 for gauges
    attributes: tuple[tuple[str, Any], ...]  # sorted by key
    start: int  # start_time_unix_nano
    time: int  # time_unix_nano
    value: float  # sums and gauges: the value (as_int or as_double); histograms: the sum
    count: int  # histograms: the count; else 0
    bucket_counts: tuple[int, ...]  # histograms; else ()
    explicit_bounds: tuple[float, ...]  # histograms; else ()
    exemplars: tuple[tuple[float, str], ...]  # (value, trace_id hex) of each exemplar
    service_name: str
    scope: str  # instrumentation scope name
    request: int  # index (0-based) of the metric export request it came in


def _value(any_value: Any) -> Any:
    field = any_value.WhichOneof("value")
    return getattr(any_value, field) if field else None


def _attributes(attributes: Any) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted(((kv.key, _value(kv.value)) for kv in attributes), key=lambda kv: kv[0]))


def _number(point: metrics_pb2.NumberDataPoint | metrics_pb2.Exemplar) -> float:
    return float(point.as_int if point.WhichOneof("value") == "as_int" else point.as_double)


def _exemplars(point: metrics_pb2.NumberDataPoint | metrics_pb2.HistogramDataPoint) -> tuple[tuple[float, str], ...]:
    return tuple((_number(exemplar), exemplar.trace_id.hex()) for exemplar in point.exemplars)


def _service(resource_attributes: Any) -> str:
    return str(dict(_attributes(resource_attributes)).get("service.name", ""))


def _points(
    metric: metrics_pb2.Metric, service: str, scope: common_pb2.InstrumentationScope, request: int
) -> list[ReceivedPoint]:
    kind = metric.WhichOneof("data")

    def point(
        data: metrics_pb2.NumberDataPoint | metrics_pb2.HistogramDataPoint,
        value: float,
        *,
        monotonic: bool = False,
        temporality: int = 0,
        count: int = 0,
        bucket_counts: tuple[int, ...] = (),
        explicit_bounds: tuple[float, ...] = (),
    ) -> ReceivedPoint:
        return ReceivedPoint(
            metric=metric.name,
            unit=metric.unit,
            kind=str(kind),
            monotonic=monotonic,
            temporality=temporality,
            attributes=_attributes(data.attributes),
            start=data.start_time_unix_nano,
            time=data.time_unix_nano,
            value=value,
            count=count,
            bucket_counts=bucket_counts,
            explicit_bounds=explicit_bounds,
            exemplars=_exemplars(data),
            service_name=service,
            scope=scope.name,
            request=request,
        )

    if kind == "sum":
        sum_ = metric.sum
        return [
            point(p, _number(p), monotonic=sum_.is_monotonic, temporality=sum_.aggregation_temporality)
            for p in sum_.data_points
        ]
    if kind == "gauge":
        return [point(p, _number(p)) for p in metric.gauge.data_points]
    if kind == "histogram":
        histogram = metric.histogram
        return [
            point(
                p,
                p.sum,
                temporality=histogram.aggregation_temporality,
                count=p.count,
                bucket_counts=tuple(p.bucket_counts),
                explicit_bounds=tuple(p.explicit_bounds),
            )
            for p in histogram.data_points
        ]
    # exponential histograms and summaries: nothing here sends them; fail loudly rather than drop them
    raise ValueError(f"metric {metric.name!r}: unsupported data {kind!r}")


class Receiver:
    """Start with `start_grpc()` / `start_http()`; `stop()` takes it down (the port can be reused).

    Both servers take traces and metrics. Set `failing = True` (and back) at any time: while it is
    set, exports are answered UNAVAILABLE (gRPC) / 503 (HTTP), counted in `rejected`, and not kept.
    """

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self.spans: list[ReceivedSpan] = []
        self.requests = 0  # trace export requests kept
        self._metric_points: list[ReceivedPoint] = []
        self.metric_requests = 0  # metric export requests kept
        self.failing = False
        self.rejected = 0  # export requests (traces or metrics) answered with a failure because of `failing`
        self._grpc: grpc.Server | None = None
        self._http: ThreadingHTTPServer | None = None

    def _reject(self) -> bool:
        """Under the lock: whether to fail this export (counted), so a stored request is never a rejected one."""
        if not self.failing:
            return False
        self.rejected += 1
        self._lock.notify_all()
        return True

    def _store(self, request: trace_service_pb2.ExportTraceServiceRequest) -> bool:
        received = []
        for resource_spans in request.resource_spans:
            resource = {kv.key: _value(kv.value) for kv in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    received.append(self._decode(span, str(resource.get("service.name", ""))))
        with self._lock:
            if self._reject():
                return False
            self.spans.extend(received)
            self.requests += 1
            self._lock.notify_all()
        return True

    def _store_metrics(self, request: metrics_service_pb2.ExportMetricsServiceRequest) -> bool:
        with self._lock:  # decoded under the lock: `request` is the index this request gets
            if self._reject():
                return False
            received = [
                point
                for resource_metrics in request.resource_metrics
                for scope_metrics in resource_metrics.scope_metrics
                for metric in scope_metrics.metrics
                for point in _points(
                    metric,
                    _service(resource_metrics.resource.attributes),
                    scope_metrics.scope,
                    self.metric_requests,
                )
            ]
            self._metric_points.extend(received)
            self.metric_requests += 1
            self._lock.notify_all()
        return True

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

    def metric_points(self) -> list[ReceivedPoint]:
        """Every metric data point kept so far, in arrival order (a copy)."""
        with self._lock:
            return list(self._metric_points)

    def wait_for_metric_requests(self, n: int, timeout: float) -> bool:
        """Whether at least `n` metric export requests were kept within `timeout` seconds."""
        with self._lock:
            return self._lock.wait_for(lambda: self.metric_requests >= n, timeout)

    def start_grpc(self, port: int = 0) -> int:
        receiver = self

        class Service(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request: Any, context: Any) -> trace_service_pb2.ExportTraceServiceResponse:
                if not receiver._store(request):
                    context.set_code(grpc.StatusCode.UNAVAILABLE)
                    context.set_details(_FAILING)
                return trace_service_pb2.ExportTraceServiceResponse()

        class MetricsService(metrics_service_pb2_grpc.MetricsServiceServicer):
            def Export(self, request: Any, context: Any) -> metrics_service_pb2.ExportMetricsServiceResponse:
                if not receiver._store_metrics(request):
                    context.set_code(grpc.StatusCode.UNAVAILABLE)
                    context.set_details(_FAILING)
                return metrics_service_pb2.ExportMetricsServiceResponse()

        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Service(), server)
        # the generated registration is unannotated (and only the trace one is in pyproject's
        # untyped_calls_exclude): called through a typed name, so mypy --strict holds either way
        add_metrics: Callable[[Any, Any], None] = metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server
        add_metrics(MetricsService(), server)
        bound: int = server.add_insecure_port(f"127.0.0.1:{port}")
        server.start()
        self._grpc = server
        return bound

    def start_http(self, port: int = 0) -> int:
        receiver = self

        def traces(body: bytes) -> bool:
            request = trace_service_pb2.ExportTraceServiceRequest()
            request.ParseFromString(body)
            return receiver._store(request)

        def metrics(body: bytes) -> bool:
            request = metrics_service_pb2.ExportMetricsServiceRequest()
            request.ParseFromString(body)
            return receiver._store_metrics(request)

        # path -> (parse and store the body: whether it was kept, the serialized response)
        routes: dict[str, tuple[Callable[[bytes], bool], bytes]] = {
            "/v1/traces": (traces, trace_service_pb2.ExportTraceServiceResponse().SerializeToString()),
            "/v1/metrics": (metrics, metrics_service_pb2.ExportMetricsServiceResponse().SerializeToString()),
        }

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                route = routes.get(self.path)
                if route is None or self.headers.get("Content-Type") != "application/x-protobuf":
                    self.send_response(404)
                    self.end_headers()
                    return
                store, payload = route
                if not store(body):
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
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
