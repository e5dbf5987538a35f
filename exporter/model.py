"""Normalized views of Letta runs and steps, tolerant of every server version from 0.6 to 0.16.

Letta's payloads drift between versions (Job-shaped runs before 0.12, `job_id` on old steps, token
detail fields added in 0.16.x) and carry enum values we may not know yet. Parsing never raises for
those: unknown enum values become ``"other"`` and each oddity is reported through the validation
context (``context={"problems": list}``) so the caller can count it. Only a record we cannot use at
all (no id, no creation time) raises ``pydantic.ValidationError``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator, model_validator

OTHER = "other"
NONE = "none"

ACTIVE_STATUSES = ("created", "running", "pending")
TERMINAL_STATUSES = ("completed", "failed", "cancelled", "expired")
RUN_STATUSES = ACTIVE_STATUSES + TERMINAL_STATUSES

STEP_STATUSES = ("pending", "success", "failed", "cancelled")

# StopReasonType.run_status in letta/schemas/letta_stop_reason.py (0.16.8).
STOP_REASON_STATUS = {
    "end_turn": "completed",
    "max_steps": "completed",
    "tool_rule": "completed",
    "requires_approval": "completed",
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
STOP_REASONS = tuple(STOP_REASON_STATUS)

_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")


def _note(info: ValidationInfo, problem: str) -> None:
    if isinstance(info.context, dict):
        problems = info.context.get("problems")
        if isinstance(problems, list):
            problems.append(problem)


def _enum(value: object, known: tuple[str, ...], info: ValidationInfo, kind: str) -> str | None:
    if value is None:
        return None
    text = str(value).lower()
    if text in known:
        return text
    _note(info, kind)
    return OTHER


def parse_timestamp(value: object) -> datetime | None:
    """Letta mixes `...Z` (created_at) and naive UTC (completed_at on 0.16); both mean UTC."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    else:
        raise ValueError(f"not a timestamp: {value!r}")
    try:
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except OverflowError:  # year 1 with a positive offset: before datetime.min in UTC
        raise ValueError(f"timestamp out of range: {value!r}") from None


MAX_COUNT = 2**63  # nothing real is larger (centuries in ns); beyond it a float would overflow downstream


def _count(value: object) -> int | None:
    """Token and duration fields: tolerate null, floats and numeric strings; reject negatives and
    absurdly large values."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value  # epoch nanoseconds exceed a float's precision: never round-trip through one
    else:
        try:
            number = int(float(value))  # type: ignore[arg-type]
        except (TypeError, ValueError, OverflowError):
            return None
    return number if 0 <= number < MAX_COUNT else None


def _mapping(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class Run(_Record):
    """One agent request, normalized. ``status`` is what the exporter acts on."""

    id: str
    status: str
    stop_reason: str | None = None
    created_at: datetime
    completed_at: datetime | None = None
    agent_id: str | None = None
    conversation_id: str | None = None
    background: bool | None = None
    run_type: str | None = None
    error: str | None = None
    ttft_ns: int | None = None
    total_duration_ns: int | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_any_version(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, dict):
            raise ValueError("a run must be a JSON object")
        metadata = _mapping(data.get("metadata") or data.get("metadata_"))
        out = dict(data)
        # <= 0.11 runs are Job rows: the agent id lives in metadata.
        out.setdefault("agent_id", None)
        out["agent_id"] = data.get("agent_id") or metadata.get("agent_id")
        out["run_type"] = metadata.get("run_type") or data.get("job_type")
        error = metadata.get("error")
        out["error"] = None if error is None else str(error)
        stop_reason = _enum(data.get("stop_reason"), STOP_REASONS, info, "unknown_stop_reason")
        out["stop_reason"] = stop_reason
        status = _enum(data.get("status"), (*RUN_STATUSES, "not_started"), info, "unknown_run_status")
        if status is None:
            _note(info, "missing_run_status")
            status = OTHER
        if status == "not_started":  # 0.6.x JobStatus
            status = "created"
        # A known Letta bug leaves status "running" after a terminal stop reason: trust the reason.
        if status in (*ACTIVE_STATUSES, OTHER) and stop_reason in STOP_REASON_STATUS:
            status = STOP_REASON_STATUS[stop_reason]
        out["status"] = status
        for field in ("ttft_ns", "total_duration_ns"):
            out[field] = _count(data.get(field))
        return out

    @field_validator("created_at", "completed_at", mode="before")
    @classmethod
    def _utc(cls, value: object) -> datetime | None:
        return parse_timestamp(value)

    @field_validator("background", mode="before")
    @classmethod
    def _flag(cls, value: object) -> bool | None:
        return value if isinstance(value, bool) else None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def active(self) -> bool:
        """``other`` counts as active: an unknown status is never taken for an outcome."""
        return not self.terminal


class Step(_Record):
    """One LLM round trip of a run. Letta gives steps no timestamps, only order and durations."""

    id: str
    run_id: str | None = None
    agent_id: str | None = None
    model: str | None = None
    provider: str | None = None
    status: str | None = None
    stop_reason: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    trace_id: str | None = None
    error_type: str | None = None
    error_message: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_any_version(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, dict):
            raise ValueError("a step must be a JSON object")
        prompt_details = _mapping(data.get("prompt_tokens_details"))
        completion_details = _mapping(data.get("completion_tokens_details"))
        error_data = _mapping(data.get("error_data"))
        trace_id = data.get("trace_id")
        if trace_id is not None and not (isinstance(trace_id, str) and _TRACE_ID.match(trace_id)):
            _note(info, "invalid_trace_id")
            trace_id = None

        def first(*values: object) -> int:
            for value in values:
                number = _count(value)
                if number is not None:
                    return number
            return 0

        return {
            "id": data.get("id"),
            "run_id": data.get("run_id") or data.get("job_id"),  # job_id on <= 0.11
            "agent_id": data.get("agent_id"),
            "model": data.get("model") or None,
            "provider": data.get("provider_name") or None,
            "status": _enum(data.get("status"), STEP_STATUSES, info, "unknown_step_status"),
            "stop_reason": _enum(data.get("stop_reason"), STOP_REASONS, info, "unknown_stop_reason"),
            "input_tokens": first(data.get("prompt_tokens")),
            "output_tokens": first(data.get("completion_tokens")),
            "cached_input_tokens": first(
                data.get("cached_input_tokens"),
                prompt_details.get("cached_tokens"),
                prompt_details.get("cache_read_tokens"),
            ),
            "cache_write_tokens": first(data.get("cache_write_tokens"), prompt_details.get("cache_creation_tokens")),
            "reasoning_tokens": first(data.get("reasoning_tokens"), completion_details.get("reasoning_tokens")),
            "trace_id": trace_id,
            "error_type": data.get("error_type"),
            "error_message": None if error_data.get("message") is None else str(error_data["message"]),
        }

    def tokens(self) -> dict[str, int]:
        """Token counts by the `type` label of `letta_step_tokens_total`."""
        return {
            "input": self.input_tokens,
            "output": self.output_tokens,
            "cached_input": self.cached_input_tokens,
            "cache_write": self.cache_write_tokens,
            "reasoning": self.reasoning_tokens,
        }


class RunMetrics(_Record):
    """`GET /v1/runs/{id}/metrics` (0.12+): the only place single-run durations live."""

    run_start_ns: int | None = None
    run_ns: int | None = None
    num_steps: int | None = None

    @field_validator("run_start_ns", "run_ns", "num_steps", mode="before")
    @classmethod
    def _number(cls, value: object) -> int | None:
        return _count(value)


class StepMetrics(_Record):
    """`GET /v1/steps/{id}/metrics` (0.11.4+)."""

    llm_request_ns: int | None = None
    tool_execution_ns: int | None = None
    step_ns: int | None = None

    @field_validator("llm_request_ns", "tool_execution_ns", "step_ns", mode="before")
    @classmethod
    def _number(cls, value: object) -> int | None:
        return _count(value)


class FinishedRun(BaseModel):
    """Everything the sinks (metrics, spans) need about one run that reached a terminal state."""

    model_config = ConfigDict(frozen=True)

    run: Run
    status: str  # the terminal status counted: run.status, or "expired" when the exporter gave up
    steps: tuple[Step, ...] = ()
    step_metrics: dict[str, StepMetrics] = {}
    run_metrics: RunMetrics | None = None
    agent_name: str | None = None

    @property
    def duration_ns(self) -> int | None:
        """Best source first: list `total_duration_ns`, run metrics `run_ns`, then the timestamps."""
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
