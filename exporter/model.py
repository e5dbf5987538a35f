"""The source-neutral view of runs and steps: what the lifecycle tracks and the sinks count.

A source (the Letta poller today) turns what its runtime reports into these records, with its
own workarounds applied (Letta's live in `exporter.letta.records`); everything downstream —
lifecycle, ledger, spans, the state file's pending exports — sees only this shape. Records are
frozen, and serialise to JSON and back unchanged (pending span exports are stored that way).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from exporter.types import (
    TERMINAL_STATUSES,
    RunStatus,
    Runtime,
    StepStatus,
    StopReason,
    TerminalStatus,
    TokenType,
    ToolMessagesMissing,
    ToolStatus,
)


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class Run(_Record):
    """One agent request. Timestamps are timezone-aware UTC; an unknown status is `other`."""

    id: str  # unique across runtimes: an event runtime's are "<runtime>:<its run id>"
    status: RunStatus
    stop_reason: StopReason | None = None
    created_at: datetime
    completed_at: datetime | None = None
    agent_id: str | None = None
    conversation_id: str | None = None
    background: bool | None = None
    run_type: str | None = None
    error: str | None = None
    ttft_ns: int | None = None
    total_duration_ns: int | None = None
    # the message types the server keeps in this run's answers (Letta: include_return_message_types); None: all
    message_types: tuple[str, ...] | None = None
    runtime: Runtime = "letta"
    raw_stop_reason: str | None = None  # the runtime's own words for the end, when the label had to fold them

    @property
    def tool_messages_hidden(self) -> bool:
        """The server leaves this run's tool calls or returns out: they cannot be counted."""
        kept = self.message_types
        return kept is not None and not {"tool_call_message", "tool_return_message"} <= set(kept)

    @property
    def terminal(self) -> bool:
        """`other` is not terminal: an unknown status is never taken for an outcome."""
        return self.status in TERMINAL_STATUSES


class Step(_Record):
    """One model round trip of a run."""

    id: str
    run_id: str | None = None
    agent_id: str | None = None
    model: str | None = None
    provider: str | None = None
    status: StepStatus | None = None
    stop_reason: StopReason | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    trace_id: str | None = None  # 32 lowercase hex digits: the server's own OpenTelemetry trace
    error_type: str | None = None
    error_message: str | None = None
    usage_reported: bool = True  # False: the runtime reported no usage, so the tokens are unknown, not 0

    def tokens(self) -> dict[TokenType, int]:
        """Token counts by the `type` label of `letta_step_tokens_total`."""
        return {
            "input": self.input_tokens,
            "output": self.output_tokens,
            "cached_input": self.cached_input_tokens,
            "cache_write": self.cache_write_tokens,
            "reasoning": self.reasoning_tokens,
        }


class ToolCall(_Record):
    """One tool call of a run and its outcome (`unknown`: no return was recorded)."""

    name: str
    call_id: str | None = None
    step_id: str | None = None
    status: ToolStatus = "unknown"
    duration_ns: int | None = None  # the call's own execution time, when the runtime reports it


class RunMetrics(_Record):
    """Run timings a source may report apart from the run (Letta: `/v1/runs/{id}/metrics`)."""

    run_start_ns: int | None = None
    run_ns: int | None = None
    num_steps: int | None = None


class StepMetrics(_Record):
    """Step timings. Start times are epoch nanoseconds when the source fills them (else the
    spans lay steps out from durations alone)."""

    step_start_ns: int | None = None
    llm_request_start_ns: int | None = None
    llm_request_ns: int | None = None
    tool_execution_ns: int | None = None
    step_ns: int | None = None


class FinishedRun(BaseModel):
    """Everything the sinks (metrics, spans) need about one run that reached a terminal state."""

    model_config = ConfigDict(frozen=True)

    run: Run
    status: TerminalStatus  # the terminal status counted: run.status, or "expired" when the exporter gave up
    steps: tuple[Step, ...] = ()
    step_metrics: dict[str, StepMetrics] = {}
    run_metrics: RunMetrics | None = None
    agent_name: str | None = None
    tool_calls: tuple[ToolCall, ...] | None = None  # None: not read (tool metrics off, or missing)
    tool_messages_missing: ToolMessagesMissing | None = None

    @property
    def duration_ns(self) -> int | None:
        """Best source first: the run's own duration, run metrics `run_ns`, then the timestamps."""
        if self.run.total_duration_ns is not None:
            return self.run.total_duration_ns
        if self.run_metrics is not None and self.run_metrics.run_ns is not None:
            return self.run_metrics.run_ns
        if self.run.completed_at is not None and self.run.completed_at >= self.run.created_at:
            return int((self.run.completed_at - self.run.created_at).total_seconds() * 1e9)
        return None

    @property
    def trace_id(self) -> str | None:
        return next((s.trace_id for s in self.steps if s.trace_id), None)
