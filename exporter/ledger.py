"""The run ledger: every run-derived counter and histogram, persisted with the exactly-once marks.

Run-derived families are `Series` (`exporter.series`) rather than prometheus_client instruments
because their values are committed in the same state-store transaction that marks runs counted:
after a restart they continue from where they were instead of resetting, so a run is never
counted twice in `increase()` and never lost. The ledger is a collector of the `/metrics`
registry; the poll loop feeds it each poll's `Decisions`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from exporter.agents import AgentLabels
from exporter.lifecycle import Decisions
from exporter.model import FinishedRun, Step, ToolCall
from exporter.series import Family, Row, Series
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

if TYPE_CHECKING:
    from exporter.semconv import GenAiInstruments

RUN_DURATION_BUCKETS = (0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120)
STEP_PHASE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
STEPS_PER_RUN_BUCKETS = (1, 2, 3, 5, 8, 13, 21, 34, 55, 100)
TOOL_DURATION_BUCKETS = STEP_PHASE_BUCKETS
AGENT = "agent_id"


class Pricing(Protocol):
    """What one finished step cost in USD, or why it cannot be priced (`exporter.pricing`)."""

    def price(self, step: Step, at: datetime) -> float | UnpricedReason: ...


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


class Ledger(Series):
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
        genai: GenAiInstruments | None = None,
    ) -> None:
        self.runtime = runtime
        self._p = runtime + "_"
        families = {self._p + suffix: family for suffix, family in FAMILIES.items()}
        labels = {
            name: (*f.labels, AGENT) if agents is not None and f.per_agent else f.labels for name, f in families.items()
        }
        super().__init__(families, labels, max_series=max_series, on_drop=on_drop, clock=clock)
        self._agents = agents
        self._prices = prices
        self._genai = genai
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
        if self._genai is not None:
            self._genai.run(finished, agent[0] if agent else "")
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
            if self._genai is not None:
                self._genai.step(step, timings)
            if timings is None:
                continue
            for phase in STEP_PHASES:
                nanos = getattr(timings, f"{phase}_ns")
                if nanos is not None:
                    self.observe(p + "step_duration_seconds", (phase, model, provider), nanos / 1e9, step.trace_id)
            calls = tools.get(step.id, [])
            if len(calls) == 1 and timings.tool_execution_ns is not None:  # parallel calls share one time
                self._tool_duration(calls[0], timings.tool_execution_ns, step.trace_id)

    def _record_tools(
        self, finished: FinishedRun, agent: tuple[str, ...], trace_id: str | None
    ) -> dict[str, list[ToolCall]]:
        """Count the run's tool calls and the durations they carry; returns the calls of each
        step whose calls carry none, for the one-tool step durations."""
        p = self._p
        if finished.tool_messages_missing is not None:
            self.inc(p + "runs_tool_messages_missing", (finished.tool_messages_missing,))
        by_step: defaultdict[str, list[ToolCall]] = defaultdict(list)
        for call in finished.tool_calls or ():
            self.inc(p + "tool_calls", (call.name, call.status, *agent))
            if call.duration_ns is not None:
                self._tool_duration(call, call.duration_ns, trace_id)
            elif call.step_id:
                by_step[call.step_id].append(call)
        return by_step

    def _tool_duration(self, call: ToolCall, nanos: int, trace_id: str | None) -> None:
        self.observe(self._p + "tool_duration_seconds", (call.name,), nanos / 1e9, trace_id)
        if self._genai is not None:
            self._genai.tool(call.name, call.status, nanos / 1e9, trace_id)

    def take_dirty(self) -> list[Row]:
        """Rows changed since the last call, the GenAI instruments' included: the loop commits
        them with the runs that changed them."""
        return super().take_dirty() + (self._genai.take_dirty() if self._genai is not None else [])

    def restore(self, rows: Iterable[Row]) -> list[tuple[str, tuple[str, ...]]]:
        """Saved series back, and the agents they were counted for back in the label set."""
        rows = list(rows)
        if self._genai is not None:
            self._genai.restore(rows)
        restored: list[tuple[str, tuple[str, ...]]] = super().restore(rows)
        for name, labels in restored:
            if self._agents is not None and self.labels[name][-1] == AGENT:
                self._agents.restore(labels[-1:])
        return restored
