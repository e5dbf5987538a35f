"""OTLP delivery of finished runs' spans: bounded, persistent, at-least-once, never a duplicate count.

The poll loop persists each counted run's `FinishedRun` as a pending export in the same transaction
that counts it, and only then hands it here. A background thread builds the spans, exports them
through the SDK's OTLP exporter and deletes the pending row once the collector confirmed them.
A crash therefore re-sends at most the batch in flight (with identical ids) and loses nothing.
Memory holds at most `max_queued_runs` runs: a burst beyond that (a backfill, a catch-up) waits in
the state file, which already holds it, and is read back oldest first as the queue drains — a
healthy collector loses nothing. Only an outage that leaves more than `max_pending_runs` waiting
drops the oldest, counted in `letta_exporter_spans_dropped_total`.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Mapping

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from exporter.metrics import ExporterMetrics
from exporter.model import FinishedRun
from exporter.spans import build_spans
from exporter.state import StateStore

log = logging.getLogger(__name__)

PROTOCOLS = ("grpc", "http/protobuf")


class OtlpConfigError(ValueError):
    pass


def exporter_from_env(environ: Mapping[str, str] | None = None) -> SpanExporter | None:
    """The SDK exporter the standard `OTEL_*` variables ask for, or None when tracing is off.

    The exporter classes read endpoint, headers, timeout, compression and certificates from the
    same variables themselves; here we only decide whether and which.
    """
    env = os.environ if environ is None else environ
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if not endpoint or env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return None
    protocol = (
        env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf"
    ).strip()
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        return GrpcExporter()
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

        return HttpExporter()
    raise OtlpConfigError(f"OTEL_EXPORTER_OTLP_PROTOCOL: {protocol!r} is not supported (use one of {PROTOCOLS})")


class SpanDelivery:
    def __init__(
        self,
        exporter: SpanExporter,
        store: StateStore,
        metrics: ExporterMetrics,
        resource: Resource,
        *,
        max_queued_runs: int = 2048,
        max_pending_runs: int = 50_000,
        batch_runs: int = 64,
        retry_delays: tuple[float, float] = (0.5, 30.0),
    ) -> None:
        self._exporter = exporter
        self._store = store
        self._metrics = metrics
        self._resource = resource
        self._max_queued = max_queued_runs
        self._max_pending = max_pending_runs
        self._backlog = False  # runs beyond the queue wait in the state file
        self._batch_runs = batch_runs
        self._retry_delays = retry_delays
        self._queue: deque[FinishedRun] = deque()
        self._lock = threading.Condition()
        self._stopping = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._thread = threading.Thread(target=self._run, name="otlp", daemon=True)

    def start(self) -> None:
        """Resume what a previous process had counted but not delivered, then deliver as it comes."""
        self._backlog = True
        self._idle.clear()
        self._thread.start()

    def submit(self, runs: list[FinishedRun]) -> None:
        """Queue runs whose pending export is already committed; past the bound they wait there."""
        with self._lock:
            if not self._backlog and len(self._queue) + len(runs) <= self._max_queued:
                self._queue.extend(runs)
            elif runs:
                self._backlog = True  # read back from the state file, in order, as the queue drains
            if self._queue or self._backlog:
                self._idle.clear()
            self._lock.notify()

    @property
    def queued(self) -> int:
        with self._lock:
            return len(self._queue)

    def wait_idle(self, timeout: float) -> bool:
        """True once everything queued has been delivered (for shutdown and tests)."""
        return self._idle.wait(timeout)

    def close(self, flush_timeout: float = 5.0) -> None:
        """Deliver what is queued for up to `flush_timeout`; what remains stays pending in the state."""
        self.wait_idle(flush_timeout)
        self._stopping.set()
        with self._lock:
            self._lock.notify()
        self._exporter.shutdown()
        if self._thread.is_alive():
            self._thread.join(flush_timeout)

    def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            with self._lock:
                while not self._queue and not self._stopping.is_set():
                    if self._backlog:
                        break
                    self._idle.set()
                    self._lock.wait()
                if not self._queue and self._backlog:
                    self._refill()  # under the lock: a submit now waits, and finds the backlog flag right
                batch = [self._queue[i] for i in range(min(self._batch_runs, len(self._queue)))]
            if not batch:
                continue
            spans = [span for finished in batch for span in build_spans(finished, self._resource)]
            try:
                result = self._exporter.export(spans)
            except Exception:  # an exporter bug must not kill delivery; the batch is retried
                log.exception("span export raised")
                result = SpanExportResult.FAILURE
            if result is SpanExportResult.SUCCESS:
                self._store.forget_exports([f.run.id for f in batch])
                with self._lock:
                    for _ in batch:
                        self._queue.popleft()
                self._metrics.spans_exported.inc(len(spans))
                if failures:
                    log.info("span export recovered", extra={"failed_attempts": failures})
                failures = 0
                continue
            failures += 1
            if failures == 1:
                log.warning("span export failed; retrying with backoff", extra={"queued_runs": self.queued})
            self._trim()
            low, high = self._retry_delays
            self._stopping.wait(min(high, low * 2 ** min(failures - 1, 16)))

    def _refill(self) -> None:
        """The queue is empty: read the oldest waiting runs back from the state file."""
        payloads = self._store.pending_exports(self._max_queued)
        self._queue.extend(FinishedRun.model_validate_json(payload) for payload in payloads)
        self._backlog = len(payloads) == self._max_queued  # fewer: nothing else waits

    def _trim(self) -> None:
        """Bound the state file through an outage (only then: a burst to a healthy collector
        waits, however large): drop and count the oldest waiting runs past `max_pending_runs`,
        sparing those queued in memory (the oldest: they go first)."""
        dropped = [FinishedRun.model_validate_json(p) for p in self._store.trim_exports(self._max_pending, self.queued)]
        if not dropped:
            return
        spans = sum(len(build_spans(f, self._resource)) for f in dropped)
        self._metrics.spans_dropped.inc(spans)
        log.warning(
            "span backlog full: dropped the oldest waiting runs' spans (the collector has been down or slow "
            "for longer than --otlp-max-pending runs take to finish)",
            extra={"runs": len(dropped), "spans": spans, "bound": self._max_pending},
        )
