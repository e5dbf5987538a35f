"""Prometheus metrics: the contract's instrument table, the persisted run ledger, exporter health.

Run-derived counters and histograms live in a `Ledger` rather than in prometheus_client
instruments because their values are persisted with the exactly-once marks (see `state`): after
a restart they continue from where they were instead of resetting, so a run is never counted
twice in `increase()` and never lost. Exporter-health metrics are ordinary instruments.
"""

from __future__ import annotations

import logging
import math
import platform
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.samples import Exemplar

from exporter import __version__
from exporter.model import NONE, OTHER, STOP_REASON_STATUS, TERMINAL_STATUSES, FinishedRun

log = logging.getLogger(__name__)

RUN_DURATION_BUCKETS = (0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120)
STEP_PHASE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
STEPS_PER_RUN_BUCKETS = (1, 2, 3, 5, 8, 13, 21, 34, 55, 100)
API_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

TOKEN_TYPES = ("input", "output", "cached_input", "cache_write", "reasoning")
STEP_PHASES = {"llm_request": "llm_request_ns", "tool_execution": "tool_execution_ns", "step": "step_ns"}
ACTIVE_GAUGE_STATUSES = ("created", "running", "pending", OTHER)
PROBLEM_KINDS = (
    "invalid_run",
    "invalid_step",
    "invalid_metrics",
    "unknown_run_status",
    "unknown_step_status",
    "unknown_stop_reason",
    "missing_run_status",
    "invalid_trace_id",
    "malformed_json",
    "not_a_list",
    "not_an_object",
    "cursor_not_advancing",
    "run_not_found",
    "future_timestamp",
)


@dataclass(frozen=True)
class Family:
    name: str
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] | None = None  # None: a counter
    capped: tuple[str, ...] = ()  # labels whose values come from data: folded to "other" past the cap


FAMILIES = {
    f.name: f
    for f in (
        Family("letta_runs_created", "Runs first seen by the exporter."),
        Family("letta_runs_finished", "Runs that reached a terminal state.", ("status", "stop_reason")),
        Family(
            "letta_run_terminal_status_changes",
            "Counted runs whose terminal status changed later (never recounted).",
            ("from", "to"),
        ),
        Family(
            "letta_steps",
            "Finished steps.",
            ("status", "stop_reason", "model", "provider"),
            capped=("model", "provider"),
        ),
        Family(
            "letta_step_tokens",
            "Tokens used by steps.",
            ("type", "model", "provider"),
            capped=("model", "provider"),
        ),
        Family("letta_run_duration_seconds", "Run duration.", ("status",), RUN_DURATION_BUCKETS),
        Family("letta_run_ttft_seconds", "Time to first token, when the server reports it.", (), TTFT_BUCKETS),
        Family("letta_run_steps", "Steps per finished run.", ("status",), STEPS_PER_RUN_BUCKETS),
        Family(
            "letta_step_duration_seconds",
            "Step timings from step metrics.",
            ("phase", "model", "provider"),
            STEP_PHASE_BUCKETS,
            capped=("model", "provider"),
        ),
    )
}


@dataclass
class _Histogram:
    counts: list[float]  # per bucket, not cumulative; the last one is +Inf
    sum: float = 0.0
    exemplars: list[Exemplar | None] = field(default_factory=list)

    def state(self) -> dict[str, object]:
        return {"counts": self.counts, "sum": self.sum}


class Ledger:
    """Cumulative run metrics, thread-safe: the poller writes, the HTTP server collects."""

    def __init__(
        self,
        max_series: int = 2000,
        on_drop: Callable[[str], None] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._counters: dict[tuple[str, tuple[str, ...]], float] = {}
        self._histograms: dict[tuple[str, tuple[str, ...]], _Histogram] = {}
        self._series_count: dict[str, int] = {}
        self._dirty: set[tuple[str, tuple[str, ...]]] = set()
        self._max_series = max_series
        self._on_drop = on_drop or (lambda _metric: None)
        self._clock = clock
        self._preinitialise()

    def _preinitialise(self) -> None:
        """Series alerts and dashboards rely on exist (at 0) before the first event."""
        self.inc("letta_runs_created", (), 0)
        self.inc("letta_run_terminal_status_changes", ("cancelled", "completed"), 0)  # Letta's known overwrite
        for status in TERMINAL_STATUSES:
            for reason in [r for r, s in STOP_REASON_STATUS.items() if s == status] + [NONE]:
                self.inc("letta_runs_finished", (status, reason), 0)
            self._histogram("letta_run_duration_seconds", (status,))
            self._histogram("letta_run_steps", (status,))
        self._histogram("letta_run_ttft_seconds", ())
        self._dirty.clear()

    def _admit(
        self, name: str, labels: tuple[str, ...], store: Iterable[tuple[str, tuple[str, ...]]]
    ) -> tuple[str, ...]:
        """The labels to store under: past the series cap, data-derived labels fold to "other"."""
        family = FAMILIES[name]
        if (name, labels) in store or not family.capped:
            return labels
        if self._series_count.get(name, 0) < self._max_series:
            self._series_count[name] = self._series_count.get(name, 0) + 1
            return labels
        self._on_drop(name)
        return tuple(OTHER if n in family.capped else v for n, v in zip(family.labels, labels, strict=True))

    def inc(self, name: str, labels: tuple[str, ...], amount: float = 1.0) -> None:
        with self._lock:
            key = (name, self._admit(name, labels, self._counters))
            self._counters[key] = self._counters.get(key, 0.0) + amount
            self._dirty.add(key)

    def _histogram(self, name: str, labels: tuple[str, ...]) -> _Histogram:
        key = (name, self._admit(name, labels, self._histograms))
        if key not in self._histograms:
            size = len(FAMILIES[name].buckets or ()) + 1
            self._histograms[key] = _Histogram([0.0] * size, 0.0, [None] * size)
        self._dirty.add(key)
        return self._histograms[key]

    def observe(self, name: str, labels: tuple[str, ...], value: float, trace_id: str | None = None) -> None:
        buckets = FAMILIES[name].buckets or ()
        with self._lock:
            histogram = self._histogram(name, labels)
            index = next((i for i, bound in enumerate(buckets) if value <= bound), len(buckets))
            histogram.counts[index] += 1
            histogram.sum += value
            if trace_id:
                when = self._clock() if self._clock else None
                histogram.exemplars[index] = Exemplar({"trace_id": trace_id}, value, when)

    def record(self, finished: FinishedRun) -> None:
        """Count one finished run and its steps. Called exactly once per run by the tracker."""
        run, status = finished.run, finished.status
        trace_id = finished.trace_id
        self.inc("letta_runs_finished", (status, run.stop_reason or NONE))
        duration = finished.duration_ns
        if duration is not None:
            self.observe("letta_run_duration_seconds", (status,), duration / 1e9, trace_id)
        if run.ttft_ns is not None:
            self.observe("letta_run_ttft_seconds", (), run.ttft_ns / 1e9, trace_id)
        if status != "expired":
            self.observe("letta_run_steps", (status,), len(finished.steps), trace_id)
        for step in finished.steps:
            model, provider = step.model or OTHER, step.provider or OTHER
            self.inc("letta_steps", (step.status or NONE, step.stop_reason or NONE, model, provider))
            for kind, count in step.tokens().items():
                if count:
                    self.inc("letta_step_tokens", (kind, model, provider), count)
            timings = finished.step_metrics.get(step.id)
            if timings is None:
                continue
            for phase, attribute in STEP_PHASES.items():
                nanos = getattr(timings, attribute)
                if nanos is not None:
                    self.observe("letta_step_duration_seconds", (phase, model, provider), nanos / 1e9, step.trace_id)

    def take_dirty(self) -> list[tuple[str, tuple[str, ...], object]]:
        """Rows changed since the last call, for the state store's transaction."""
        with self._lock:
            rows: list[tuple[str, tuple[str, ...], object]] = []
            for key in sorted(self._dirty):
                name, labels = key
                if key in self._counters:
                    rows.append((name, labels, self._counters[key]))
                else:
                    rows.append((name, labels, self._histograms[key].state()))
            self._dirty.clear()
            return rows

    def restore(self, rows: Iterable[tuple[str, tuple[str, ...], object]]) -> None:
        with self._lock:
            for name, labels, value in rows:
                if name not in FAMILIES:
                    continue
                key = (name, labels)
                if isinstance(value, dict):
                    counts = [float(c) for c in value.get("counts", [])]
                    if len(counts) != len(FAMILIES[name].buckets or ()) + 1:
                        continue  # bucket layout changed since it was saved: start that series afresh
                    self._histograms[key] = _Histogram(counts, float(value.get("sum", 0.0)), [None] * len(counts))
                elif isinstance(value, int | float):
                    self._counters[key] = float(value)
                else:
                    continue
                self._series_count[name] = sum(1 for k in (*self._counters, *self._histograms) if k[0] == name)

    def value(self, name: str, labels: tuple[str, ...] = ()) -> float | None:
        """A counter's value or a histogram's count, for `check` output and tests."""
        with self._lock:
            if (name, labels) in self._counters:
                return self._counters[(name, labels)]
            histogram = self._histograms.get((name, labels))
            return sum(histogram.counts) if histogram else None

    def collect(self) -> Iterator[Metric]:
        """Built under the lock, yielded after it: a slow rendering must not hold up counting."""
        with self._lock:
            families = list(self._families())
        yield from families

    def _families(self) -> Iterator[Metric]:
        for name, family in FAMILIES.items():
            if family.buckets is None:
                counter = CounterMetricFamily(name, family.help, labels=family.labels)
                for (metric, labels), total in self._counters.items():
                    if metric == name:
                        counter.add_metric(labels, total)
                yield counter
                continue
            histogram = HistogramMetricFamily(name, family.help, labels=family.labels)
            for (metric, labels), state in self._histograms.items():
                if metric != name:
                    continue
                cumulative, buckets = 0.0, []
                bounds = [*(repr(float(b)) for b in family.buckets), "+Inf"]
                for bound, count, exemplar in zip(bounds, state.counts, state.exemplars, strict=True):
                    cumulative += count
                    buckets.append((bound, cumulative, exemplar) if exemplar else (bound, cumulative))
                histogram.add_metric(labels, buckets, state.sum)
            yield histogram


class ExporterMetrics:
    """The registry the `/metrics` endpoint serves: the ledger plus the exporter's own health."""

    def __init__(self, registry: CollectorRegistry | None = None, clock: Callable[[], float] | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.series_dropped = Counter(
            "letta_exporter_series_dropped",
            "Label sets folded to 'other' or dropped by the series cap.",
            ["metric"],
            registry=r,
        )
        for name, family in FAMILIES.items():
            if family.capped:
                self.series_dropped.labels(name)
        self.ledger = Ledger(on_drop=lambda metric: self.series_dropped.labels(metric).inc(), clock=clock)
        r.register(self.ledger)
        Gauge("letta_exporter_build_info", "Always 1.", ["version", "python_version"], registry=r).labels(
            __version__, platform.python_version()
        ).set(1)
        self.up = Gauge("letta_up", "1 when the last poll reached Letta and parsed its answers.", registry=r)
        self.last_success = Gauge(
            "letta_exporter_last_poll_success_timestamp_seconds",
            "When the last successful poll ended.",
            registry=r,
        )
        self.poll_duration = Gauge("letta_exporter_poll_duration_seconds", "Duration of the last poll.", registry=r)
        self.clock_offset = Gauge(
            "letta_exporter_server_clock_offset_seconds",
            "Letta's clock minus the exporter's, from its Date header (0 within the header's 1 s resolution).",
            registry=r,
        )
        self.api_requests = Counter(
            "letta_exporter_api_requests", "Requests to Letta.", ["endpoint", "code"], registry=r
        )
        self.api_duration = Histogram(
            "letta_exporter_api_request_duration_seconds",
            "Duration of requests to Letta.",
            ["endpoint"],
            buckets=API_DURATION_BUCKETS,
            registry=r,
        )
        self.parse_errors = Counter(
            "letta_exporter_parse_errors",
            "Records or answers that could not be understood.",
            ["kind"],
            registry=r,
        )
        for kind in PROBLEM_KINDS:
            self.parse_errors.labels(kind)
        self.tracked = Gauge("letta_exporter_tracked_runs", "Runs the tracker holds.", registry=r)
        self.active = Gauge("letta_runs_active", "Non-terminal runs being tracked.", ["status"], registry=r)
        self.stuck = Gauge("letta_runs_stuck", "Active runs older than --stuck-after.", ["status"], registry=r)
        for status in ACTIVE_GAUGE_STATUSES:
            self.active.labels(status)
            self.stuck.labels(status)
        self.oldest_active = Gauge(
            "letta_run_oldest_active_created_timestamp_seconds",
            "Creation time of the oldest active run.",
            registry=r,
        )
        self.spans_exported = Counter("letta_exporter_spans_exported", "Spans delivered over OTLP.", registry=r)
        self.spans_dropped = Counter("letta_exporter_spans_dropped", "Spans that could not be delivered.", registry=r)
        self._logged_kinds: set[str] = set()

    def api_request(self, endpoint: str, code: str, seconds: float) -> None:
        self.api_requests.labels(endpoint, code).inc()
        self.api_duration.labels(endpoint).observe(seconds)

    def problem(self, kind: str, context: str) -> None:
        """Count every occurrence; log the first of each kind with its context, later ones at debug."""
        self.parse_errors.labels(kind).inc()
        if kind in self._logged_kinds:
            log.debug("letta answer problem", extra={"kind": kind, "context": context})
            return
        self._logged_kinds.add(kind)
        log.warning(
            "letta answer problem (logged once per kind, counted in letta_exporter_parse_errors_total)",
            extra={"kind": kind, "context": context},
        )

    def set_active(
        self, by_status: dict[str, int], stuck_by_status: dict[str, int], oldest: float | None, tracked: int
    ) -> None:
        for status in ACTIVE_GAUGE_STATUSES:
            self.active.labels(status).set(by_status.get(status, 0))
            self.stuck.labels(status).set(stuck_by_status.get(status, 0))
        self.oldest_active.set(oldest if oldest is not None else math.nan)
        self.tracked.set(tracked)
