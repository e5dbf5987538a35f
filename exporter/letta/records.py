"""Letta's JSON → the source-neutral model, tolerant of every server version from 0.6 to 0.16.

Letta's payloads drift between versions (Job-shaped runs before 0.12, `job_id` on old steps, token
detail fields added in 0.16.x) and carry enum values we may not know yet; its workarounds live
here, not in the shared model (docs/letta-api.md §1, §4): a terminal stop reason beats a lagging
`running` status, a `completed` run with a failure stop reason failed, naive timestamps are UTC.
Reading never raises for oddities: unknown enum values become `other` and each oddity is appended
to `problems` for the caller to count. Only a record that cannot be used at all (no id, no
creation time) raises `InvalidRecord`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from exporter.model import Run, RunMetrics, Step, StepMetrics, ToolCall
from exporter.problems import ProblemLog
from exporter.types import (
    ACTIVE_STATUSES,
    OTHER,
    STEP_STATUSES,
    STOP_REASON_STATUS,
    STOP_REASONS,
    TERMINAL_STATUSES,
    ProblemKind,
    ToolStatus,
)

M = TypeVar("M", bound=BaseModel)
M_co = TypeVar("M_co", bound=BaseModel, covariant=True)
Problems = list[ProblemKind]

_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")
# Letta 0.16.8 RunStatus plus 0.6's `not_started` (a JobStatus, the same as `created`).
_RUN_STATUSES = ("created", "running", "pending", *TERMINAL_STATUSES, "not_started")
_RETURN_STATUSES: dict[str, ToolStatus] = {"success": "success", "error": "error"}
MAX_COUNT = 2**63  # nothing real is larger (centuries in ns); beyond it a float would overflow downstream


class InvalidRecord(ValueError):
    """A record that cannot be used at all; `where` names the field."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where


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


def created_at(raw: object) -> float | None:
    """A listed run's creation time, for paging; None when absent or unreadable."""
    if not isinstance(raw, dict):
        return None
    try:
        created = parse_timestamp(raw.get("created_at"))
    except ValueError:
        return None
    return created.timestamp() if created else None


def _count(value: object) -> int | None:
    """Token and duration fields: tolerate null, floats and numeric strings; reject negatives and
    absurdly large values."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value  # epoch nanoseconds exceed a float's precision: never round-trip through one
    elif isinstance(value, float | str):
        try:
            number = int(float(value))
        except (ValueError, OverflowError):  # "abc", nan, inf
            return None
    else:
        return None
    return number if 0 <= number < MAX_COUNT else None


def _enum(value: object, known: tuple[str, ...], problems: Problems, kind: ProblemKind) -> str | None:
    if value is None:
        return None
    text = str(value).lower()
    if text in known:
        return text
    problems.append(kind)
    return OTHER


def _mapping(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _object(raw: object, what: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise InvalidRecord("record", f"a {what} must be a JSON object")
    return raw


def _timestamp(data: dict[str, Any], field: str) -> datetime | None:
    try:
        return parse_timestamp(data.get(field))
    except ValueError as exc:
        raise InvalidRecord(field, str(exc)) from None


def _run(raw: object, problems: Problems) -> dict[str, Any]:
    data = _object(raw, "run")
    metadata = _mapping(data.get("metadata") or data.get("metadata_"))
    stop_reason = _enum(data.get("stop_reason"), STOP_REASONS, problems, "unknown_stop_reason")
    status = _enum(data.get("status"), _RUN_STATUSES, problems, "unknown_run_status")
    if status is None:
        problems.append("missing_run_status")
        status = OTHER
    if status == "not_started":
        status = "created"
    implied = STOP_REASON_STATUS.get(stop_reason) if stop_reason else None
    if status in ACTIVE_STATUSES and implied is not None:
        status = implied  # Letta's lagging status: "running" after a terminal stop reason
    elif status == "completed" and implied == "failed":
        status = "failed"  # reported completed, ended by an error: not a success
    error = metadata.get("error")
    return {
        "id": data.get("id"),
        "status": status,
        "stop_reason": stop_reason,
        "created_at": _timestamp(data, "created_at"),
        "completed_at": _timestamp(data, "completed_at"),
        "agent_id": data.get("agent_id") or metadata.get("agent_id"),  # <= 0.11: Job rows, metadata
        "conversation_id": data.get("conversation_id"),
        "background": data.get("background") if isinstance(data.get("background"), bool) else None,
        "run_type": metadata.get("run_type") or data.get("job_type"),
        "error": None if error is None else str(error),
        "ttft_ns": _count(data.get("ttft_ns")),
        "total_duration_ns": _count(data.get("total_duration_ns")),
        "message_types": _message_types(data.get("request_config")),
    }


def _message_types(request_config: object) -> tuple[str, ...] | None:
    """Letta filters a run's messages by the types its request asked for, after paging (an empty
    list filters nothing: docs/letta-api.md §2.8)."""
    kept = _mapping(request_config).get("include_return_message_types")
    return tuple(str(t) for t in kept) if isinstance(kept, list) and kept else None


def _first(*values: object) -> int:
    return next((n for n in map(_count, values) if n is not None), 0)


def _step(raw: object, problems: Problems) -> dict[str, Any]:
    data = _object(raw, "step")
    prompt_details = _mapping(data.get("prompt_tokens_details"))
    completion_details = _mapping(data.get("completion_tokens_details"))
    error_data = _mapping(data.get("error_data"))
    trace_id = data.get("trace_id")
    if trace_id is not None and not (isinstance(trace_id, str) and _TRACE_ID.match(trace_id)):
        problems.append("invalid_trace_id")
        trace_id = None
    return {
        "id": data.get("id"),
        "run_id": data.get("run_id") or data.get("job_id"),  # job_id on <= 0.11
        "agent_id": data.get("agent_id"),
        "model": data.get("model") or None,
        "provider": data.get("provider_name") or None,
        "status": _enum(data.get("status"), STEP_STATUSES, problems, "unknown_step_status"),
        "stop_reason": _enum(data.get("stop_reason"), STOP_REASONS, problems, "unknown_stop_reason"),
        "input_tokens": _first(data.get("prompt_tokens")),
        "output_tokens": _first(data.get("completion_tokens")),
        "cached_input_tokens": _first(
            data.get("cached_input_tokens"),
            prompt_details.get("cached_tokens"),
            prompt_details.get("cache_read_tokens"),
        ),
        "cache_write_tokens": _first(data.get("cache_write_tokens"), prompt_details.get("cache_creation_tokens")),
        "reasoning_tokens": _first(data.get("reasoning_tokens"), completion_details.get("reasoning_tokens")),
        "trace_id": trace_id,
        "error_type": None if data.get("error_type") is None else str(data["error_type"]),
        "error_message": None if error_data.get("message") is None else str(error_data["message"]),
    }


def _numbers(*fields: str) -> Callable[[object, Problems], dict[str, Any]]:
    def read(raw: object, problems: Problems) -> dict[str, Any]:
        data = _object(raw, "metrics object")
        return {field: _count(data.get(field)) for field in fields}

    return read


def tool_calls(messages: list[Any], problems: Problems) -> tuple[ToolCall, ...]:
    """A run's tool calls with their outcomes, from its messages in any order. Parallel calls
    share one call message (`tool_calls`) and one return message (`tool_returns`, a status per
    call id); a call without a return is `unknown`; a repeated call id counts once."""
    calls: dict[str, dict[str, Any]] = {}
    statuses: dict[str, ToolStatus] = {}
    for message in messages:
        if not isinstance(message, dict):
            problems.append("invalid_message")
            continue
        kind, step_id = message.get("message_type"), message.get("step_id")
        if kind == "tool_call_message":
            listed = message.get("tool_calls") or [message.get("tool_call")]
            for index, call in enumerate(listed if isinstance(listed, list) else [listed]):
                name = _mapping(call).get("name")
                if not isinstance(name, str) or not name:
                    problems.append("invalid_message")
                    continue
                call_id = _mapping(call).get("tool_call_id")
                key = str(call_id) if call_id else f"{message.get('id')}#{index}"
                calls.setdefault(key, {"name": name, "call_id": call_id and str(call_id), "step_id": step_id})
        elif kind == "tool_return_message":
            returns = message.get("tool_returns") or [message]
            for returned in returns if isinstance(returns, list) else []:
                call_id, status = _mapping(returned).get("tool_call_id"), _mapping(returned).get("status")
                if status is not None and str(status).lower() not in _RETURN_STATUSES:
                    problems.append("unknown_tool_status")
                if call_id:
                    statuses[str(call_id)] = _RETURN_STATUSES.get(str(status).lower(), "unknown")
    return tuple(
        ToolCall(name=c["name"], call_id=c["call_id"], step_id=c["step_id"], status=statuses.get(key, "unknown"))
        for key, c in calls.items()
    )


@dataclass(frozen=True)
class Reader(Generic[M_co]):
    """One kind of Letta record: how to normalise it, and the problem kind of an unusable one."""

    model: type[M_co]
    normalise: Callable[[object, Problems], dict[str, Any]]
    invalid: ProblemKind

    def __call__(self, raw: object, problems: Problems | None = None) -> M_co:
        """The record; its oddities are appended to `problems` (dropped when not given)."""
        try:
            return self.model.model_validate(self.normalise(raw, [] if problems is None else problems))
        except ValidationError as exc:
            first = exc.errors()[0]
            raise InvalidRecord(".".join(map(str, first["loc"])) or "record", first["msg"]) from None


RUN = Reader(Run, _run, "invalid_run")
STEP = Reader(Step, _step, "invalid_step")
RUN_METRICS = Reader(RunMetrics, _numbers("run_start_ns", "run_ns", "num_steps"), "invalid_metrics")
STEP_METRICS = Reader(
    StepMetrics,
    _numbers("step_start_ns", "llm_request_start_ns", "llm_request_ns", "tool_execution_ns", "step_ns"),
    "invalid_metrics",
)


class Reading:
    """The readers bound to a problem log: an unusable record, and each oddity of a usable one,
    counted once per record however often it is read again."""

    def __init__(self, problems: ProblemLog) -> None:
        self._problems = problems

    def __call__(self, reader: Reader[M], raw: Any) -> M | None:
        found: Problems = []
        key = str(raw.get("id")) if isinstance(raw, dict) else repr(raw)[:80]
        try:
            parsed = reader(raw, found)
        except InvalidRecord as exc:
            self._problems.report(reader.invalid, key, str(exc))
            return None
        self._report(found, key, f"{reader.model.__name__} {key}")
        return parsed

    def tool_calls(self, run_id: str, messages: list[Any]) -> tuple[ToolCall, ...]:
        found: Problems = []
        calls = tool_calls(messages, found)
        self._report(found, run_id, f"messages of {run_id}")
        return calls

    def _report(self, found: Problems, key: str, context: str) -> None:
        for problem in found:
            self._problems.report(problem, key, context)
