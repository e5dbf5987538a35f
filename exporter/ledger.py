"""The run ledger: every run-derived counter and histogram, persisted with the exactly-once marks.

Run-derived families live here rather than in prometheus_client instruments because their values
are committed in the same state-store transaction that marks runs counted: after a restart they
continue from where they were instead of resetting, so a run is never counted twice in
`increase()` and never lost. The ledger is a collector of the `/metrics` registry; the poll loop
feeds it each poll's `Decisions`.
"""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.samples import Exemplar

from exporter.agents import AgentLabels
from exporter.lifecycle import Decisions
from exporter.model import FinishedRun, Step
from exporter.types import (
    NONE,
    OTHER,
    OUTCOMES,
    STEP_PHASES,
    TOOL_MESSAGES_MISSING,
    UNPRICED_REASONS,
    Clock,
    Runtime,
    UnpricedReason,
)

RUN_DURATION_BUCKETS = (0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120)
STEP_PHASE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
STEPS_PER_RUN_BUCKETS = (1, 2, 3, 5, 8, 13, 21, 34, 55, 100)
TOOL_DURATION_BUCKETS = STEP_PHASE_BUCKETS
AGENT = "agent_id"


class Pricing(Protocol):
    """What one finished step cost in USD, or why it cannot be priced (`exporter.pricing`)."""

    def price(self, step: Step, at: datetime) -> float | UnpricedReason: ...


@dataclass(frozen=True)
class Family:
    name: str
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] | None = None  # None: a counter
    capped: tuple[str, ...] = ()  # labels whose values come from data: folded to "other" past the cap
    per_agent: bool = False  # gains an agent_id label with --agent-labels


# Keyed by suffix: each runtime's ledger exposes them under its prefix (`letta_`, `behest_`, `agent_sdk_`).
FAMILIES = {
    f.name: f
    for f in (
        Family("runs_created", "Runs first seen by the exporter."),
        Family("runs_finished", "Runs that reached a terminal state.", ("status", "stop_reason"), per_agent=True),
        Family(
            "run_terminal_status_changes",
            "Counted runs whose terminal status changed later (never recounted).",
            ("from", "to"),
        ),
        Family(
            "steps",
            "Finished steps.",
            ("status", "stop_reason", "model", "provider"),
            capped=("model", "provider"),
        ),
        Family(
            "step_tokens",
            "Tokens used by steps.",
            ("type", "model", "provider"),
            capped=("model", "provider"),
            per_agent=True,
        ),
        Family(
            "step_cost_usd",
            "What finished steps cost in USD, priced from the price table.",
            ("model", "provider"),
            capped=("model", "provider"),
            per_agent=True,
        ),
        Family(
            "exporter_unpriced_steps",
            "Finished steps that could not be priced, so added nothing to the cost.",
            ("reason",),
        ),
        Family(
            "tool_calls",
            "Tool calls of finished runs, by the status of their return (unknown: no return).",
            ("tool", "status"),
            capped=("tool",),
            per_agent=True,
        ),
        Family(
            "tool_duration_seconds",
            "Tool execution time: the call's own, else that of a step that ran exactly one tool.",
            ("tool",),
            TOOL_DURATION_BUCKETS,
            capped=("tool",),
        ),
        Family(
            "runs_tool_messages_missing",
            "Finished runs whose tool calls could not be read, so are not counted.",
            ("reason",),
        ),
        Family(
            "steps_usage_missing",
            "Finished steps whose runtime reported no token usage: their tokens are unknown, not 0.",
            ("model", "provider"),
            capped=("model", "provider"),
        ),
        Family("run_duration_seconds", "Run duration.", ("status",), RUN_DURATION_BUCKETS, per_agent=True),
        Family("run_ttft_seconds", "Time to first token, when the server reports it.", (), TTFT_BUCKETS),
        Family("run_steps", "Steps per finished run.", ("status",), STEPS_PER_RUN_BUCKETS),
        Family(
            "step_duration_seconds",
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
    """One runtime's cumulative run metrics, thread-safe: its poll loop writes, the HTTP server collects."""

    def __init__(
        self,
        max_series: int = 2000,
        on_drop: Callable[[str], None] | None = None,
        clock: Clock | None = None,
        *,
        agents: AgentLabels | None = None,
        prices: Pricing | None = None,
        tools: bool = False,
        runtime: Runtime = "letta",
    ) -> None:
        self.runtime = runtime
        self._p = runtime + "_"
        self.families = {self._p + suffix: family for suffix, family in FAMILIES.items()}
        self._lock = threading.Lock()
        self._counters: dict[tuple[str, tuple[str, ...]], float] = {}
        self._histograms: dict[tuple[str, tuple[str, ...]], _Histogram] = {}
        self._series_count: dict[str, int] = {}
        self._dirty: set[tuple[str, tuple[str, ...]]] = set()
        self._max_series = max_series
        self._on_drop = on_drop or (lambda _metric: None)
        self._clock = clock
        self._agents = agents
        self._prices = prices
        self.labels = {
            name: (*f.labels, AGENT) if agents is not None and f.per_agent else f.labels
            for name, f in self.families.items()
        }
        self._preinitialise(tools)

    def _preinitialise(self, tools: bool) -> None:
        """Series alerts and dashboards rely on exist (at 0) before the first event."""
        agent, p = (OTHER,) if self._agents is not None else (), self._p
        self.inc(p + "runs_created", (), 0)
        # Letta's known overwrite; an event run that expired and ended after all
        changed = ("cancelled", "completed") if self.runtime == "letta" else ("expired", "completed")
        self.inc(p + "run_terminal_status_changes", changed, 0)
        for status, reasons in OUTCOMES[self.runtime].items():
            for reason in (*reasons, NONE):
                self.inc(p + "runs_finished", (status, reason, *agent), 0)
            self._histogram(p + "run_duration_seconds", (status, *agent))
            self._histogram(p + "run_steps", (status,))
        self._histogram(p + "run_ttft_seconds", ())
        for unpriced in UNPRICED_REASONS if self._prices is not None else ():
            self.inc(p + "exporter_unpriced_steps", (unpriced,), 0)
        for missing in TOOL_MESSAGES_MISSING if tools and self.runtime == "letta" else ():
            self.inc(p + "runs_tool_messages_missing", (missing,), 0)
        self._dirty.clear()

    def _admit(
        self, name: str, labels: tuple[str, ...], store: Iterable[tuple[str, tuple[str, ...]]]
    ) -> tuple[str, ...]:
        """The labels to store under: past the series cap, data-derived labels fold to "other"."""
        family = self.families[name]
        if (name, labels) in store or not family.capped:
            return labels
        if self._series_count.get(name, 0) < self._max_series:
            self._series_count[name] = self._series_count.get(name, 0) + 1
            return labels
        self._on_drop(name)
        return tuple(OTHER if n in family.capped else v for n, v in zip(self.labels[name], labels, strict=True))

    def inc(self, name: str, labels: tuple[str, ...], amount: float = 1.0) -> None:
        with self._lock:
            key = (name, self._admit(name, labels, self._counters))
            self._counters[key] = self._counters.get(key, 0.0) + amount
            self._dirty.add(key)

    def _histogram(self, name: str, labels: tuple[str, ...]) -> _Histogram:
        key = (name, self._admit(name, labels, self._histograms))
        if key not in self._histograms:
            size = len(self.families[name].buckets or ()) + 1
            self._histograms[key] = _Histogram([0.0] * size, 0.0, [None] * size)
        self._dirty.add(key)
        return self._histograms[key]

    def observe(self, name: str, labels: tuple[str, ...], value: float, trace_id: str | None = None) -> None:
        buckets = self.families[name].buckets or ()
        with self._lock:
            histogram = self._histogram(name, labels)
            index = next((i for i, bound in enumerate(buckets) if value <= bound), len(buckets))
            histogram.counts[index] += 1
            histogram.sum += value
            if trace_id:
                when = self._clock() if self._clock else None
                histogram.exemplars[index] = Exemplar({"trace_id": trace_id}, value, when)

    def count(self, decisions: Decisions) -> None:
        """Count what one poll decided (each run reaches here exactly once)."""
        if decisions.created:
            self.inc(self._p + "runs_created", (), decisions.created)
        for finished in decisions.finished:
            self.record(finished)
        for before, after in decisions.status_changes:
            self.inc(self._p + "run_terminal_status_changes", (before, after))

    def record(self, finished: FinishedRun) -> None:
        """Count one finished run: its outcome, steps, tokens, cost and tool calls."""
        run, status, p = finished.run, finished.status, self._p
        trace_id = finished.trace_id
        agent: tuple[str, ...] = ()
        if self._agents is not None:
            label, folded = self._agents.label(run.agent_id)
            agent = (label,)
            if folded:
                self._on_drop(AGENT)
        self.inc(p + "runs_finished", (status, run.stop_reason or NONE, *agent))
        duration = finished.duration_ns
        if duration is not None:
            self.observe(p + "run_duration_seconds", (status, *agent), duration / 1e9, trace_id)
        if run.ttft_ns is not None:
            self.observe(p + "run_ttft_seconds", (), run.ttft_ns / 1e9, trace_id)
        if status != "expired":
            self.observe(p + "run_steps", (status,), len(finished.steps), trace_id)
        tools = self._record_tools(finished, agent, trace_id)
        for step in finished.steps:
            model, provider = step.model or OTHER, step.provider or OTHER
            self.inc(p + "steps", (step.status or NONE, step.stop_reason or NONE, model, provider))
            if not step.usage_reported:
                self.inc(p + "steps_usage_missing", (model, provider))
            for kind, count in step.tokens().items():
                if count:
                    self.inc(p + "step_tokens", (kind, model, provider, *agent), count)
            if self._prices is not None and step.usage_reported:
                cost = self._prices.price(step, run.created_at)
                if isinstance(cost, str):
                    self.inc(p + "exporter_unpriced_steps", (cost,))
                else:
                    self.inc(p + "step_cost_usd", (model, provider, *agent), cost)
            timings = finished.step_metrics.get(step.id)
            if timings is None:
                continue
            for phase in STEP_PHASES:
                nanos = getattr(timings, f"{phase}_ns")
                if nanos is not None:
                    self.observe(p + "step_duration_seconds", (phase, model, provider), nanos / 1e9, step.trace_id)
            names = tools.get(step.id, [])
            if len(names) == 1 and timings.tool_execution_ns is not None:  # parallel calls share one time
                seconds = timings.tool_execution_ns / 1e9
                self.observe(p + "tool_duration_seconds", (names[0],), seconds, step.trace_id)

    def _record_tools(
        self, finished: FinishedRun, agent: tuple[str, ...], trace_id: str | None
    ) -> dict[str, list[str]]:
        """Count the run's tool calls and the durations they carry; returns the tool names of
        each step whose calls carry none, for the one-tool step durations."""
        p = self._p
        if finished.tool_messages_missing is not None:
            self.inc(p + "runs_tool_messages_missing", (finished.tool_messages_missing,))
        by_step: defaultdict[str, list[str]] = defaultdict(list)
        for call in finished.tool_calls or ():
            self.inc(p + "tool_calls", (call.name, call.status, *agent))
            if call.duration_ns is not None:
                self.observe(p + "tool_duration_seconds", (call.name,), call.duration_ns / 1e9, trace_id)
            elif call.step_id:
                by_step[call.step_id].append(call.name)
        return by_step

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
        """Saved series back; a series whose label set changed since (e.g. --agent-labels toggled,
        a bucket layout changed) starts afresh rather than being read under the wrong labels."""
        with self._lock:
            for name, labels, value in rows:
                if name not in self.families or len(labels) != len(self.labels[name]):
                    continue  # another runtime's, or stored under other labels
                key = (name, labels)
                if isinstance(value, dict):
                    counts = [float(c) for c in value.get("counts", [])]
                    if len(counts) != len(self.families[name].buckets or ()) + 1:
                        continue
                    self._histograms[key] = _Histogram(counts, float(value.get("sum", 0.0)), [None] * len(counts))
                elif isinstance(value, int | float):
                    self._counters[key] = float(value)
                else:
                    continue
                if self._agents is not None and self.labels[name][-1] == AGENT:
                    self._agents.restore(labels[-1:])
            self._series_count = dict(Counter(name for name, _ in (*self._counters, *self._histograms)))

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
        for name, family in self.families.items():
            if family.buckets is None:
                counter = CounterMetricFamily(name, family.help, labels=self.labels[name])
                for (metric, labels), total in self._counters.items():
                    if metric == name:
                        counter.add_metric(labels, total)
                yield counter
                continue
            histogram = HistogramMetricFamily(name, family.help, labels=self.labels[name])
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
