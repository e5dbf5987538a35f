"""The `/metrics` registry: the run ledger plus the exporter's own health instruments.

Exporter-health metrics (requests to Letta, problems, polls, span delivery, active-run gauges)
are ordinary prometheus_client instruments; run-derived families are the ledger's (`ledger`).
"""

from __future__ import annotations

import logging
import math
import platform
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from exporter import __version__
from exporter.agents import AgentLabels
from exporter.ledger import AGENT, Ledger
from exporter.lifecycle import ActiveSummary
from exporter.pricing import PriceTable
from exporter.types import ACTIVE_STATUSES, PROBLEM_KINDS, Clock, ProblemKind, Runtime

if TYPE_CHECKING:
    from exporter.semconv import GenAiInstruments

log = logging.getLogger(__name__)

API_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class ExporterMetrics:
    """The registry the `/metrics` endpoint serves: the ledger plus the exporter's own health."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        clock: Clock | None = None,
        *,
        agents: AgentLabels | None = None,
        prices: PriceTable | None = None,
        tools: bool = False,
        genai: GenAiInstruments | None = None,
    ) -> None:
        """`genai`: the GenAI instruments, fed by every runtime's ledger (registered on `/metrics`
        by the caller when asked, else only pushed)."""
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.series_dropped = Counter(
            "letta_exporter_series_dropped",
            "Label sets folded to 'other' or dropped by the series cap.",
            ["metric"],
            registry=r,
        )
        self._clock, self._prices, self._tools, self.genai = clock, prices, tools, genai
        self.runtimes: dict[Runtime, RuntimeMetrics] = {}
        self.letta = self.add_runtime("letta", agents)
        self.ledger = self.letta.ledger
        self.agents = agents
        if agents is not None:
            self.series_dropped.labels(AGENT)  # runs whose agent was folded into agent_id="other"
            r.register(agents)
        if prices is not None:
            info = prices.info
            Gauge(
                "letta_exporter_price_table_info", "The price table steps are priced from.", list(info), registry=r
            ).labels(*info.values()).set(1)
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
        self.spans_exported = Counter("letta_exporter_spans_exported", "Spans delivered over OTLP.", registry=r)
        self.spans_dropped = Counter("letta_exporter_spans_dropped", "Spans that could not be delivered.", registry=r)
        self.events = Counter(
            "letta_exporter_events",
            "Event lines received from agent runtimes, by what became of them.",
            ["runtime", "transport", "result"],
            registry=r,
        )
        self.metric_exports_failed = Counter(
            "letta_exporter_otlp_metric_exports_failed",
            "OTLP metric pushes that failed (after the SDK exporter's retries); the next carries the newest values.",
            registry=r,
        )
        self.late_events = Counter(
            "letta_exporter_late_events",
            "Events of runs already counted (late past --event-settle, or resent): dropped, never recounted.",
            ["runtime"],
            registry=r,
        )
        self.event_source_errors = Counter(
            "letta_exporter_event_source_errors",
            "Failures reading an event way in (retried with backoff).",
            ["transport"],
            registry=r,
        )
        self._logged_kinds: set[ProblemKind] = set()

    def add_runtime(self, runtime: Runtime, agents: AgentLabels | None = None) -> RuntimeMetrics:
        """The families of one more runtime, under its prefix, priced and capped like the others."""
        ledger = Ledger(
            on_drop=lambda metric: self.series_dropped.labels(metric).inc(),
            clock=self._clock,
            agents=agents,
            prices=self._prices,
            tools=self._tools,
            runtime=runtime,
            genai=self.genai,
        )
        for name, family in ledger.families.items():
            if family.capped:
                self.series_dropped.labels(name)
        self.runtimes[runtime] = RuntimeMetrics(self.registry, ledger)
        return self.runtimes[runtime]

    def api_request(self, endpoint: str, code: str, seconds: float) -> None:
        self.api_requests.labels(endpoint, code).inc()
        self.api_duration.labels(endpoint).observe(seconds)

    def problem(self, kind: ProblemKind, context: str) -> None:
        """Count every occurrence; log the first of each kind with its context, later ones at debug."""
        self.parse_errors.labels(kind).inc()
        if kind in self._logged_kinds:
            log.debug("problem in what a source sent", extra={"kind": kind, "context": context})
            return
        self._logged_kinds.add(kind)
        log.warning(
            "problem in what a source sent (logged once per kind, counted in letta_exporter_parse_errors_total)",
            extra={"kind": kind, "context": context},
        )


class RuntimeMetrics:
    """One runtime's run families: its ledger and its active-run gauges, under its prefix."""

    def __init__(self, registry: CollectorRegistry, ledger: Ledger) -> None:
        p, r = ledger.runtime + "_", registry
        self.ledger = ledger
        r.register(ledger)
        self.tracked = Gauge(
            p + "exporter_tracked_runs", "Runs the lifecycle holds (active and recently finished).", registry=r
        )
        self.active = Gauge(p + "runs_active", "Non-terminal runs being tracked.", ["status"], registry=r)
        self.stuck = Gauge(p + "runs_stuck", "Active runs older than --stuck-after.", ["status"], registry=r)
        for status in ACTIVE_STATUSES:
            self.active.labels(status)
            self.stuck.labels(status)
        self.oldest_active = Gauge(
            p + "run_oldest_active_created_timestamp_seconds",
            "Creation time of the oldest active run.",
            registry=r,
        )

    def set_active(self, summary: ActiveSummary, clock_offset: float = 0.0) -> None:
        """The active-run gauges; the oldest creation time is shown on the exporter's clock."""
        for status in ACTIVE_STATUSES:
            self.active.labels(status).set(summary.by_status.get(status, 0))
            self.stuck.labels(status).set(summary.stuck.get(status, 0))
        self.oldest_active.set(math.nan if summary.oldest is None else summary.oldest - clock_offset)
        self.tracked.set(summary.tracked)
