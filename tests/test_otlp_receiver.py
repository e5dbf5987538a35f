"""The test OTLP receiver against the SDK's own exporters: what they send is what it decodes, over gRPC and HTTP."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.sdk.metrics import Exemplar
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricExporter,
    MetricExportResult,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from tests.otlp_receiver import ReceivedPoint, Receiver

PROTOCOLS = ["grpc", "http/protobuf", "http/protobuf+gzip"]
# Below the SDK exporters' first retry backoff (1 s ± 20 %): a failed export gives up after its one attempt.
FAILING_TIMEOUT = 0.5

TRACE_ID = 0x0123456789ABCDEF0123456789ABCDEF
SPAN_ID = 0x0123456789ABCDEF
START, T1, T2 = 1_700_000_000_000_000_000, 1_700_000_010_000_000_000, 1_700_000_020_000_000_000


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


def start(receiver: Receiver, protocol: str) -> int:
    return receiver.start_grpc() if protocol == "grpc" else receiver.start_http()


def metric_exporter(protocol: str, port: int, timeout: float = 5) -> MetricExporter:
    if protocol == "grpc":
        return GrpcMetricExporter(endpoint=f"http://127.0.0.1:{port}", insecure=True, timeout=timeout)
    compression = Compression.Gzip if protocol.endswith("+gzip") else Compression.NoCompression
    return HttpMetricExporter(endpoint=f"http://127.0.0.1:{port}/v1/metrics", timeout=timeout, compression=compression)


def span_exporter(protocol: str, port: int, timeout: float = 5) -> SpanExporter:
    if protocol == "grpc":
        return GrpcSpanExporter(endpoint=f"http://127.0.0.1:{port}", insecure=True, timeout=timeout)
    compression = Compression.Gzip if protocol.endswith("+gzip") else Compression.NoCompression
    return HttpSpanExporter(endpoint=f"http://127.0.0.1:{port}/v1/traces", timeout=timeout, compression=compression)


def metrics_data(runs: int) -> MetricsData:
    """A monotonic cumulative sum, a gauge and a delta histogram with an exemplar, as an SDK reader would hand over."""
    runs_total = Metric(
        name="letta.runs",
        description="runs finished",
        unit="{run}",
        data=Sum(
            data_points=[
                NumberDataPoint({"status": "completed", "agent": "a1"}, START, T1, runs),
                NumberDataPoint({"status": "failed", "agent": "a1"}, START, T1, 2),
            ],
            aggregation_temporality=AggregationTemporality.CUMULATIVE,
            is_monotonic=True,
        ),
    )
    backlog = Metric(
        name="letta.backlog",
        description=None,
        unit="1",
        data=Gauge(data_points=[NumberDataPoint({"queue": "runs"}, 0, T1, 0.25)]),
    )
    duration = Metric(
        name="letta.run.duration",
        description="run duration",
        unit="s",
        data=Histogram(
            data_points=[
                HistogramDataPoint(
                    attributes={"agent": "a1"},
                    start_time_unix_nano=T1,
                    time_unix_nano=T2,
                    count=6,
                    sum=7.5,
                    bucket_counts=[1, 3, 2],
                    explicit_bounds=[0.5, 2.0],
                    min=0.1,
                    max=3.0,
                    exemplars=[Exemplar({}, 1.5, T2, span_id=SPAN_ID, trace_id=TRACE_ID)],
                )
            ],
            aggregation_temporality=AggregationTemporality.DELTA,
        ),
    )
    scope = InstrumentationScope("letta-exporter", "0.1.0")
    resource = Resource({"service.name": "letta-exporter", "service.version": "0.1.0"})
    return MetricsData([ResourceMetrics(resource, [ScopeMetrics(scope, [runs_total, backlog, duration], "")], "")])


def point(
    metric: str,
    unit: str,
    kind: str,
    attributes: tuple[tuple[str, object], ...],
    start: int,
    time: int,
    value: float,
    *,
    request: int,
    monotonic: bool = False,
    temporality: int = 0,
    count: int = 0,
    bucket_counts: tuple[int, ...] = (),
    explicit_bounds: tuple[float, ...] = (),
    exemplars: tuple[tuple[float, str], ...] = (),
) -> ReceivedPoint:
    return ReceivedPoint(
        metric=metric,
        unit=unit,
        kind=kind,
        monotonic=monotonic,
        temporality=temporality,
        attributes=attributes,
        start=start,
        time=time,
        value=value,
        count=count,
        bucket_counts=bucket_counts,
        explicit_bounds=explicit_bounds,
        exemplars=exemplars,
        service_name="letta-exporter",
        scope="letta-exporter",
        request=request,
    )


def expected_points(runs: int, request: int) -> list[ReceivedPoint]:
    """What `metrics_data(runs)` decodes to, field by field (temporality 2 cumulative, 1 delta)."""
    completed, failed = (("agent", "a1"), ("status", "completed")), (("agent", "a1"), ("status", "failed"))
    return [
        point("letta.runs", "{run}", "sum", completed, START, T1, runs, request=request, monotonic=True, temporality=2),
        point("letta.runs", "{run}", "sum", failed, START, T1, 2.0, request=request, monotonic=True, temporality=2),
        point("letta.backlog", "1", "gauge", (("queue", "runs"),), 0, T1, 0.25, request=request),
        point(
            *("letta.run.duration", "s", "histogram", (("agent", "a1"),), T1, T2, 7.5),
            request=request,
            temporality=1,
            count=6,
            bucket_counts=(1, 3, 2),
            explicit_bounds=(0.5, 2.0),
            exemplars=((1.5, f"{TRACE_ID:032x}"),),
        ),
    ]


def finished_span() -> ReadableSpan:
    span = TracerProvider(resource=Resource({"service.name": "letta-exporter"})).get_tracer("t").start_span("run")
    span.end()
    assert isinstance(span, ReadableSpan)
    return span


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_metrics_the_sdk_exports_arrive_decoded_field_by_field(receiver: Receiver, protocol: str) -> None:
    exporter = metric_exporter(protocol, start(receiver, protocol))
    try:
        assert exporter.export(metrics_data(runs=7)) is MetricExportResult.SUCCESS
        assert exporter.export(metrics_data(runs=9)) is MetricExportResult.SUCCESS
    finally:
        exporter.shutdown()
    assert receiver.wait_for_metric_requests(2, timeout=5)
    assert receiver.metric_requests == 2
    assert receiver.metric_points() == expected_points(7, request=0) + expected_points(9, request=1)
    # the two signals are kept apart, and nothing was turned away
    assert (receiver.snapshot(), receiver.requests, receiver.rejected) == ([], 0, 0)


def test_metric_points_is_a_copy(receiver: Receiver) -> None:
    exporter = metric_exporter("grpc", receiver.start_grpc())
    try:
        assert exporter.export(metrics_data(runs=1)) is MetricExportResult.SUCCESS
    finally:
        exporter.shutdown()
    receiver.metric_points().clear()
    assert len(receiver.metric_points()) == 4


def test_waiting_for_more_metric_requests_than_arrive_times_out(receiver: Receiver) -> None:
    receiver.start_http()
    began = time.monotonic()
    assert not receiver.wait_for_metric_requests(1, timeout=0.2)
    assert time.monotonic() - began >= 0.2


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_failing_receiver_fails_metric_exports_and_keeps_nothing_until_it_recovers(
    receiver: Receiver, protocol: str
) -> None:
    port = start(receiver, protocol)
    receiver.failing = True
    exporter = metric_exporter(protocol, port, timeout=FAILING_TIMEOUT)
    try:
        began = time.monotonic()
        assert exporter.export(metrics_data(runs=7)) is MetricExportResult.FAILURE
        assert time.monotonic() - began < FAILING_TIMEOUT + 1  # one attempt: the first backoff is past the timeout
        assert receiver.rejected >= 1  # it reached the receiver and was turned away (not a refused connection)
        assert (receiver.metric_points(), receiver.metric_requests) == ([], 0)
        receiver.failing = False  # the collector is back: the same exporter gets through
        assert exporter.export(metrics_data(runs=8)) is MetricExportResult.SUCCESS
    finally:
        exporter.shutdown()
    assert receiver.metric_points() == expected_points(8, request=0)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_failing_receiver_fails_trace_exports_and_keeps_nothing_until_it_recovers(
    receiver: Receiver, protocol: str
) -> None:
    port = start(receiver, protocol)
    receiver.failing = True
    exporter = span_exporter(protocol, port, timeout=FAILING_TIMEOUT)
    span = finished_span()
    try:
        assert exporter.export([span]) is SpanExportResult.FAILURE
        assert receiver.rejected >= 1
        assert (receiver.snapshot(), receiver.requests) == ([], 0)
        receiver.failing = False
        assert exporter.export([span]) is SpanExportResult.SUCCESS
    finally:
        exporter.shutdown()
    assert [(s.name, s.service_name) for s in receiver.snapshot()] == [("run", "letta-exporter")]
    assert receiver.requests == 1
