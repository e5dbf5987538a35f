"""`/metrics` pushed as OTLP metrics: the families one publish collected, serialised, not re-counted.

The values come from the same collection of the registry that `/metrics` renders after a poll, so
a push equals the scrape of that poll, and the ledger's families keep their values across
restarts. Names are chosen so that the OpenTelemetry → Prometheus translation (a monotonic sum
gains `_total`; a unit already at the end of the name is not added again) gives back the
Prometheus names. One snapshot at most waits for the collector: an outage keeps the newest, so
memory stays flat and the cumulative totals are whole again at the first export that gets through.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from opentelemetry.sdk.metrics._internal.exemplar.exemplar import Exemplar
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
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from prometheus_client import Counter
from prometheus_client.metrics_core import Metric as Family
from prometheus_client.samples import Sample

from exporter import __version__
from exporter.otlp import PROTOCOLS, OtlpConfigError

log = logging.getLogger(__name__)
SCOPE = InstrumentationScope("letta-exporter", __version__)
DEFAULT_INTERVAL = 60.0  # OTEL_METRIC_EXPORT_INTERVAL's default, in seconds
Key = tuple[str, tuple[tuple[str, str], ...]]


@dataclass(frozen=True)
class OtlpName:
    """How one Prometheus family is named in OTLP: its name, unit, and attribute names by label."""

    name: str
    unit: str = ""
    attributes: Mapping[str, str] | None = None  # label → attribute (semconv keys have dots)


def otlp_name(family: Family) -> OtlpName:
    """The same name, with the unit the translation knows by its suffix."""
    return OtlpName(family.name, "s" if family.name.endswith("_seconds") else "")


def metric_exporter_from_env(environ: Mapping[str, str] | None = None) -> tuple[MetricExporter, bool] | None:
    """The SDK exporter `OTEL_METRICS_EXPORTER=otlp` asks for, and whether deltas are preferred;
    None unless asked (scraping stays the default). The SDK classes read endpoint, headers,
    timeout, compression and certificates from the standard variables themselves."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_METRICS_EXPORTER", "none").strip().lower() != "otlp":
        return None
    preference = env.get("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "cumulative").strip().lower()
    if preference not in ("cumulative", "delta", "lowmemory"):
        raise OtlpConfigError(
            f"OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE: {preference!r} is not cumulative, delta or lowmemory"
        )
    protocol = (
        env.get("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf"
    ).strip()
    delta = preference != "cumulative"  # lowmemory: delta for counters and histograms, all there is here
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as Grpc

        return Grpc(), delta
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as Http

        return Http(), delta
    raise OtlpConfigError(
        f"OTEL_EXPORTER_OTLP_METRICS_PROTOCOL: {protocol!r} is not supported (use one of {PROTOCOLS})"
    )


def interval_from_env(environ: Mapping[str, str] | None = None) -> float:
    """Seconds between pushes (`OTEL_METRIC_EXPORT_INTERVAL`, milliseconds)."""
    env = os.environ if environ is None else environ
    raw = env.get("OTEL_METRIC_EXPORT_INTERVAL", "").strip()
    try:
        interval = float(raw) / 1000 if raw else DEFAULT_INTERVAL
    except ValueError:
        interval = -1.0
    if interval <= 0:
        raise OtlpConfigError(f"OTEL_METRIC_EXPORT_INTERVAL: {raw!r} is not a positive number of milliseconds")
    return interval


class Serialiser:
    """Prometheus families → OTLP `MetricsData`, cumulative, or as deltas since the last export
    that got through (`confirm`): a failed export's increments go out with the next one."""

    def __init__(
        self,
        resource: Resource,
        *,
        start_ns: int,
        delta: bool = False,
        names: Callable[[Family], OtlpName] = otlp_name,
    ) -> None:
        self._resource = resource
        self._start_ns = start_ns  # no ledger series is older than the state file
        self._delta = delta
        self._names = names
        self._temporality = AggregationTemporality.DELTA if delta else AggregationTemporality.CUMULATIVE
        self._sent: dict[Key, tuple[int, list[float]]] = {}  # delta baselines: (time, values)
        self._pending: dict[Key, tuple[int, list[float]]] = {}

    def serialise(self, families: Iterable[Family], now_ns: int) -> MetricsData:
        self._pending = {}
        metrics = [m for family in families if (m := self._metric(family, now_ns)) is not None and m.data.data_points]
        return MetricsData([ResourceMetrics(self._resource, [ScopeMetrics(SCOPE, metrics, "")], "")])

    def prime(self, families: Iterable[Family], now_ns: int) -> None:
        """Take the values restored from the state file as pushed already (by the process before
        this one): deltas start from them, not from 0, which would send every total again."""
        self.serialise(families, now_ns)
        self.confirm()

    def confirm(self) -> None:
        """The last serialised data reached the collector: deltas now start from it."""
        self._sent.update(self._pending)
        self._pending = {}

    def _metric(self, family: Family, now: int) -> Metric | None:
        named = self._names(family)
        attributes = named.attributes or {}
        created = {_key(family.name, s.labels): s.value for s in family.samples if s.name.endswith("_created")}
        if family.type == "counter":
            points = []
            for s in family.samples:
                if s.name.endswith("_total"):
                    start, (value,) = self._since(_key(family.name, s.labels), [s.value], now, created)
                    points.append(NumberDataPoint(_attrs(s.labels, attributes), start, now, value))
            return Metric(named.name, family.documentation, named.unit, Sum(points, self._temporality, True))
        if family.type in ("gauge", "info"):
            points = [
                NumberDataPoint(_attrs(s.labels, attributes), 0, now, s.value)
                for s in family.samples
                if s.name == family.name or family.type == "info"
            ]
            return Metric(named.name, family.documentation, named.unit, Gauge(points))
        if family.type == "histogram":
            histogram = Histogram(self._histogram(family, attributes, now, created), self._temporality)
            return Metric(named.name, family.documentation, named.unit, histogram)
        return None  # no summaries, no other types here

    def _histogram(
        self, family: Family, attributes: Mapping[str, str], now: int, created: dict[Key, float]
    ) -> list[HistogramDataPoint]:
        series: dict[Key, dict[str, list[Sample]]] = {}
        for s in family.samples:
            labels = {k: v for k, v in s.labels.items() if k != "le"}
            series.setdefault(_key(family.name, labels), {}).setdefault(s.name.removeprefix(family.name), []).append(s)
        points = []
        for key, parts in series.items():
            buckets = sorted(parts.get("_bucket", []), key=lambda b: float(b.labels["le"]))
            cumulative = [b.value for b in buckets]
            counts = [c - p for c, p in zip(cumulative, [0.0, *cumulative[:-1]], strict=True)]
            total = parts["_sum"][0].value if "_sum" in parts else 0.0
            start, values = self._since(key, [total, *counts], now, created)
            bounds = [float(b.labels["le"]) for b in buckets if b.labels["le"] != "+Inf"]
            exemplars = [_exemplar(b) for b in buckets if b.exemplar is not None] if not self._delta else []
            labels = dict(key[1])
            points.append(
                HistogramDataPoint(
                    _attrs(labels, attributes),
                    start,
                    now,
                    int(sum(values[1:])),
                    values[0],
                    [int(c) for c in values[1:]],
                    bounds,
                    None,  # type: ignore[arg-type]  # min and max are not known: None leaves them unset
                    None,  # type: ignore[arg-type]
                    exemplars,
                )
            )
        return points

    def _since(self, key: Key, values: list[float], now: int, created: dict[Key, float]) -> tuple[int, list[float]]:
        """The point's start time and values: cumulative from the series' start, or the change
        since the last confirmed export (a series that went down was reset: all of it is new)."""
        start = int(created[key] * 1e9) if key in created else self._start_ns
        if not self._delta:
            return start, values
        self._pending[key] = (now, values)
        sent = self._sent.get(key)
        if sent is None or len(sent[1]) != len(values) or any(v < b for v, b in zip(values, sent[1], strict=True)):
            return start, values
        return sent[0], [v - b for v, b in zip(values, sent[1], strict=True)]


def _key(name: str, labels: Mapping[str, str]) -> Key:
    return name, tuple(sorted(labels.items()))


def _attrs(labels: Mapping[str, str], renamed: Mapping[str, str]) -> dict[str, str]:
    """A label with an empty value is no label to Prometheus: no attribute either (no error.type)."""
    return {renamed.get(k, k): v for k, v in labels.items() if v}


def _exemplar(bucket: Sample) -> Exemplar:
    """The run's trace id as an attribute: OTLP exemplars carry binary ids only with a span id,
    which a histogram bucket of runs does not have."""
    exemplar = bucket.exemplar
    assert exemplar is not None
    return Exemplar(dict(exemplar.labels), exemplar.value, int(float(exemplar.timestamp or 0) * 1e9))


class MetricsPush:
    """Pushes the newest published snapshot every `interval`, on a thread of its own: a slow or
    absent collector never holds up a poll, and only one snapshot ever waits."""

    def __init__(
        self,
        exporter: MetricExporter,
        serialiser: Serialiser,
        failures: Counter,
        *,
        interval: float = DEFAULT_INTERVAL,
        clock: Callable[[], float] = time.time,
        extra: Callable[[], Iterable[Family]] = tuple,
    ) -> None:
        """`extra`: families pushed that `/metrics` does not show (the GenAI instruments without
        --semconv-metrics), collected with each offered snapshot."""
        self._exporter = exporter
        self._extra = extra
        self._next_push = 0.0
        self._serialiser = serialiser
        self._failures = failures
        self._interval = interval
        self._clock = clock
        self._latest: list[Family] | None = None
        self._wake = threading.Condition()
        self._stopping = False
        self._failed = 0
        self.exports = 0
        self._thread = threading.Thread(target=self._run, name="otlp-metrics", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def waiting(self) -> int:
        """Snapshots waiting to be pushed: 0 or 1, however long the collector is away."""
        with self._wake:
            return int(self._latest is not None)

    def prime(self, restored: list[Family]) -> None:
        """Before `start`: the values restored at start-up, taken as pushed (`Serialiser.prime`)."""
        self._serialiser.prime([*restored, *self._extra()], time.time_ns())

    def wanted(self) -> bool:
        """Whether a publish now would be pushed: between pushes the registry need not be collected."""
        with self._wake:
            return self._clock() >= self._next_push

    def offer(self, families: list[Family]) -> None:
        """A publish's families: replaces any snapshot still waiting (an outage keeps one, the newest)."""
        families = [*families, *self._extra()]
        with self._wake:
            self._latest = families
            self._wake.notify()

    def close(self, timeout: float = 5.0) -> None:
        """One last push of the newest snapshot, then stop."""
        with self._wake:
            self._stopping = True
            self._wake.notify()
        self._thread.join(timeout)
        self._exporter.shutdown()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._stopping and (self._latest is None or self._clock() < self._next_push):
                    self._wake.wait(max(0.05, self._next_push - self._clock()) if self._latest is not None else None)
                families, self._latest = self._latest, None
                stopping = self._stopping
            if families is not None:
                self._push(families)
                with self._wake:
                    self._next_push = self._clock() + self._interval
            if stopping:
                return

    def _push(self, families: list[Family]) -> None:
        data = self._serialiser.serialise(families, time.time_ns())
        try:
            result = self._exporter.export(data)
        except Exception:  # an exporter bug must not stop the pushes
            log.exception("metric export raised")
            result = MetricExportResult.FAILURE
        if result is MetricExportResult.SUCCESS:
            self._serialiser.confirm()
            self.exports += 1
            if self._failed:
                log.info("metric export recovered", extra={"failed_exports": self._failed})
            self._failed = 0
            return
        self._failures.inc()
        self._failed += 1
        if self._failed == 1:
            log.warning("metric export failed; the next push carries the newest values")
