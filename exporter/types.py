"""The names the exporter's pieces share: bounded vocabularies as `Literal`s, and the clock seam.

Every label value that reaches `/metrics` comes from one of these vocabularies (or is capped), so
their tuples double as the values to pre-initialise. The stop reasons are Letta's; the other
runtimes map their own endings onto them.
"""

from __future__ import annotations

from typing import Final, Literal, Protocol, get_args

OTHER: Final = "other"  # an unknown value of a bounded vocabulary, or a label folded by a series cap
NONE: Final = "none"  # a label whose value is absent

ActiveStatus = Literal["created", "running", "pending", "other"]  # "other": unknown, never an outcome
TerminalStatus = Literal["completed", "failed", "cancelled", "expired"]
RunStatus = ActiveStatus | TerminalStatus
ACTIVE_STATUSES: tuple[ActiveStatus, ...] = get_args(ActiveStatus)
TERMINAL_STATUSES: tuple[TerminalStatus, ...] = get_args(TerminalStatus)

StepStatus = Literal["pending", "success", "failed", "cancelled", "other"]
STEP_STATUSES: tuple[StepStatus, ...] = get_args(StepStatus)

LettaStopReason = Literal[
    "end_turn",
    "max_steps",
    "tool_rule",
    "requires_approval",
    "error",
    "invalid_tool_call",
    "no_tool_call",
    "invalid_llm_response",
    "llm_api_error",
    "max_tokens_exceeded",
    "context_window_overflow_in_system_prompt",
    "insufficient_credits",
    "cancelled",
    "other",
]
# The run status each stop reason implies: StopReasonType.run_status of Letta 0.16.8 (docs/letta-api.md §4.1).
STOP_REASON_STATUS: dict[str, TerminalStatus] = {
    "end_turn": "completed",
    "max_steps": "completed",
    "tool_rule": "completed",
    "requires_approval": "completed",  # paused for a human's approval, not a success: see the dashboards
    "error": "failed",
    "invalid_tool_call": "failed",
    "no_tool_call": "failed",
    "invalid_llm_response": "failed",
    "llm_api_error": "failed",
    "max_tokens_exceeded": "failed",
    "context_window_overflow_in_system_prompt": "failed",
    "insufficient_credits": "failed",
    "cancelled": "cancelled",
}
STOP_REASONS: tuple[LettaStopReason, ...] = get_args(LettaStopReason)

Runtime = Literal["letta", "behest", "agent_sdk"]
"""The agent runtime a run comes from; also the prefix of its metric families."""
EventRuntime = Literal["behest", "agent_sdk"]  # the runtimes that push events (docs/event-sources.md)
EVENT_RUNTIMES: tuple[EventRuntime, ...] = get_args(EventRuntime)

EventStopReason = Literal[
    # behest (docs/event-sources.md §4): finish reasons of completed runs, failure kinds, step ends
    "stop",
    "tool_calls",
    "length",
    "content_filter",
    "max_iterations",
    "token_budget",
    "doom_loop",
    # agent-sdk (§5)
    "refusal",
    "max_turns",
    "rate_limited",
    "server_error",
    "stream_error",
    "llm_error",
    "invalid_request",
    "budget_total_tokens",
    "budget_cost_usd",
    "tool_use",
]
StopReason = LettaStopReason | EventStopReason

# The stop reasons each runtime's runs end with, by terminal status: the series to pre-initialise.
OUTCOMES: dict[Runtime, dict[TerminalStatus, tuple[str, ...]]] = {
    "letta": {status: tuple(r for r, s in STOP_REASON_STATUS.items() if s == status) for status in TERMINAL_STATUSES},
    "behest": {
        "completed": ("stop", "tool_calls", "length", "content_filter", "error", "other"),
        "failed": ("max_iterations", "token_budget", "doom_loop", "error"),
        "cancelled": ("cancelled",),
        "expired": (),
    },
    "agent_sdk": {
        "completed": ("requires_approval", "refusal"),
        "failed": (
            "max_turns",
            "rate_limited",
            "server_error",
            "stream_error",
            "llm_error",
            "invalid_request",
            "budget_total_tokens",
            "budget_cost_usd",
            "error",
        ),
        "cancelled": ("cancelled",),
        "expired": (),
    },
}

Phase = Literal["active", "done", "expired"]
"""Where a known run is in the lifecycle: `active` (tracked, not yet counted), `done` (counted, or
seen finished before counting began; kept for de-duplication and re-checks), `expired` (counted as
expired while its source still shows it active)."""

TokenType = Literal["input", "output", "cached_input", "cache_write", "reasoning"]
TOKEN_TYPES: tuple[TokenType, ...] = get_args(TokenType)

ToolStatus = Literal["success", "error", "unknown", "not_executed", "blocked", "rejected", "awaiting_confirmation"]
"""unknown: no outcome known (Letta: no return message; behest: executed, outcome never on its wire);
not_executed (behest), blocked / rejected / awaiting_confirmation (agent-sdk): docs/event-sources.md §6."""
TOOL_STATUSES: tuple[ToolStatus, ...] = get_args(ToolStatus)

ToolMessagesMissing = Literal["filtered", "unavailable"]
"""Why a finished run's tool calls are not counted: the server `filtered` its tool messages out
(Letta: the run's `include_return_message_types`), or they were `unavailable` (deleted, or still
failing on the run's last try). Never guessed: `letta_runs_tool_messages_missing_total{reason}`."""
TOOL_MESSAGES_MISSING: tuple[ToolMessagesMissing, ...] = get_args(ToolMessagesMissing)

UnpricedReason = Literal["no_model", "self_hosted", "unknown_provider", "unknown_model", "invalid_tokens"]
"""Why a finished step adds nothing to `letta_step_cost_usd_total`: `letta_exporter_unpriced_steps_total{reason}`."""
UNPRICED_REASONS: tuple[UnpricedReason, ...] = get_args(UnpricedReason)

StepPhase = Literal["llm_request", "tool_execution", "step"]
STEP_PHASES: tuple[StepPhase, ...] = get_args(StepPhase)

ProblemKind = Literal[
    "invalid_run",
    "invalid_step",
    "invalid_metrics",
    "unknown_run_status",
    "unknown_step_status",
    "unknown_stop_reason",
    "missing_run_status",
    "invalid_trace_id",
    "invalid_message",
    "unknown_tool_status",
    "malformed_json",
    "not_a_list",
    "not_an_object",
    "cursor_not_advancing",
    "run_not_found",
    "future_timestamp",
    "invalid_event",
    "unknown_event_type",
]
"""What can be wrong with an answer or a record: the `kind` of `letta_exporter_parse_errors_total`."""
PROBLEM_KINDS: tuple[ProblemKind, ...] = get_args(ProblemKind)


class Clock(Protocol):
    """Seconds since the epoch; injected everywhere time matters, so tests drive a fake one."""

    def __call__(self) -> float: ...
