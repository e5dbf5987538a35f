"""behest's events of one run → the finished run the sinks count (docs/event-sources.md §4).

behest says which model call (iteration) events belong to only through `ModelStarted`: every
later event, in event time, belongs to the latest one. Tool outcomes never reach its wire, so a
call is only known to be executed (`unknown`) or not (`not_executed`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from exporter.events.timeline import Timed, at, trace_id
from exporter.model import FinishedRun, Run, Step, StepMetrics, ToolCall
from exporter.types import StepStatus, StopReason, TerminalStatus

_FINISH_REASONS: dict[str, StopReason] = {
    "stop": "stop",
    "tool_calls": "tool_calls",
    "length": "length",
    "content_filter": "content_filter",
    "error": "error",
}
_FAILURES: tuple[tuple[str, StopReason], ...] = (
    ("iteration limit exceeded", "max_iterations"),
    ("token budget exceeded", "token_budget"),
    ("doom loop detected", "doom_loop"),
)
_FIRST_TOKEN = frozenset({"TextDelta", "ToolCallStarted", "ToolCallDelta"})


@dataclass
class _Call:
    start_ns: int
    usage: dict[str, int] | None = None
    cache: dict[str, int] | None = None
    model: str | None = None
    provider: str | None = None
    committed_ns: int | None = None  # AssistantMessageCommitted
    tool_messages: list[int] = field(default_factory=list)  # ToolMessageCommitted times
    calls: dict[str, str] = field(default_factory=dict)  # call id → tool name, first seen first
    first_token_ns: int | None = None
    streamed: bool = False
    text_deltas: int = 0
    last_ns: int = 0


def fold(run_id: str, events: Sequence[Timed], expired: bool) -> FinishedRun:
    """`events` sorted by time; `expired`: no terminal event came, the run went silent."""
    started: Timed | None = None
    end: Timed | None = None
    iterations: dict[int, _Call] = {}
    current: _Call | None = None
    for event in events:
        kind, data = event.type, event.data
        if end is not None:
            break  # the first terminal event decides; anything after it is noise
        if kind == "RunStarted" and started is None:
            started = event
        elif kind == "ModelStarted":
            current = iterations.setdefault(data["iteration"], _Call(event.ts_ns))
            current.model, current.provider = data.get("model"), data.get("provider")
        elif kind in ("RunCompleted", "RunFailed", "RunCancelled"):
            end = event
        elif current is not None:
            _belongs(current, event)
    first_ns = started.ts_ns if started else events[0].ts_ns
    run_model = started.data if started else {}
    status, stop, raw = _outcome(end)
    run = Run(
        id=f"behest:{run_id}",
        runtime="behest",
        status=status or "running",
        stop_reason=stop,
        raw_stop_reason=raw,
        created_at=at(first_ns),
        completed_at=at(end.ts_ns) if end else None,
        conversation_id=run_model.get("session_id"),
        error=end.data.get("error") if end and status == "failed" else None,
        total_duration_ns=end.ts_ns - first_ns if end else None,
        ttft_ns=_ttft(iterations.get(min(iterations, default=0)), first_ns),
    )
    trace = trace_id(run_id)
    steps: list[Step] = []
    timings: dict[str, StepMetrics] = {}
    calls: list[ToolCall] = []
    last = max(iterations, default=None)
    for number in sorted(iterations):
        call = iterations[number]
        step_id = f"{run.id}#{number}"
        step_status: StepStatus
        if call.committed_ns is not None:
            step_status = "success"
        else:
            step_status = (
                "pending" if expired or status is None else ("cancelled" if status == "cancelled" else "failed")
            )
        if call.calls:
            step_stop: StopReason | None = "tool_calls"
        elif number == last and status == "completed":
            step_stop = stop
        else:
            step_stop = None
        steps.append(_step(step_id, run.id, call, run_model, step_status, step_stop, trace))
        timings[step_id] = _timings(call)
        executed = len(call.tool_messages) if call.committed_ns is not None else 0
        calls.extend(
            ToolCall(name=name, call_id=call_id, step_id=step_id, status="unknown" if i < executed else "not_executed")
            for i, (call_id, name) in enumerate(call.calls.items())
        )
    return FinishedRun(
        run=run,
        status="expired" if expired else (status or "expired"),
        steps=tuple(steps),
        step_metrics=timings,
        tool_calls=tuple(calls),
    )


def _belongs(call: _Call, event: Timed) -> None:
    """An event of the model call `call` (the latest `ModelStarted` before it)."""
    kind, data = event.type, event.data
    call.last_ns = max(call.last_ns, event.ts_ns)
    if kind in _FIRST_TOKEN and call.first_token_ns is None:
        call.first_token_ns = event.ts_ns
    if kind == "TextDelta":
        call.text_deltas += 1
        call.streamed = call.streamed or call.text_deltas > 1
    elif kind in ("ToolCallStarted", "ToolCallCompleted"):
        call.streamed = call.streamed or kind == "ToolCallStarted"
        call.calls.setdefault(data["call_id"], data["tool_name"])
    elif kind == "ToolCallDelta":
        call.streamed = True
    elif kind == "UsageRecorded" and call.usage is None:
        call.usage = data["usage"]
    elif kind == "CacheMetrics" and call.cache is None:
        call.cache = data
    elif kind == "AssistantMessageCommitted" and call.committed_ns is None:
        call.committed_ns = event.ts_ns
    elif kind == "ToolMessageCommitted" and call.committed_ns is not None:
        call.tool_messages.append(event.ts_ns)


def _outcome(end: Timed | None) -> tuple[TerminalStatus | None, StopReason | None, str | None]:
    if end is None:
        return None, None, None
    if end.type == "RunCancelled":
        return "cancelled", "cancelled", None
    if end.type == "RunFailed":
        error = str(end.data.get("error", ""))
        reason: StopReason = next((r for prefix, r in _FAILURES if error.startswith(prefix)), "error")
        return "failed", reason, error
    finish = end.data["finish_reason"]
    return "completed", _FINISH_REASONS.get(finish, "other"), finish


def _ttft(first: _Call | None, run_start_ns: int) -> int | None:
    """Only a streamed first call's first token says when the answer began (§4)."""
    if first is None or not first.streamed or first.first_token_ns is None:
        return None
    return first.first_token_ns - run_start_ns


def _step(
    step_id: str,
    run_id: str,
    call: _Call,
    run_model: dict[str, Any],
    status: StepStatus,
    stop: StopReason | None,
    trace: str,
) -> Step:
    usage, cache = call.usage or {}, call.cache or {}
    if not any(k.startswith("cache") or k == "cached_input_tokens" for k in usage):
        usage = {**usage, **cache}
    read, written = usage.get("cache_read_input_tokens", 0), usage.get("cache_creation_input_tokens", 0)
    return Step(
        id=step_id,
        run_id=run_id,
        model=call.model or run_model.get("model"),
        provider=call.provider or run_model.get("provider"),
        status=status,
        stop_reason=stop,
        input_tokens=usage.get("input_tokens", 0) + read + written,
        output_tokens=usage.get("output_tokens", 0),
        cached_input_tokens=read + usage.get("cached_input_tokens", 0),
        cache_write_tokens=written,
        trace_id=trace,
        usage_reported=call.usage is not None,
    )


def _timings(call: _Call) -> StepMetrics:
    llm = call.committed_ns - call.start_ns if call.committed_ns is not None else None
    tools = call.tool_messages[-1] - call.committed_ns if call.tool_messages and call.committed_ns else None
    end = max(call.last_ns, call.start_ns)
    step = (llm or 0) + (tools or 0) if llm is not None else end - call.start_ns
    return StepMetrics(
        step_start_ns=call.start_ns,
        llm_request_start_ns=call.start_ns,
        llm_request_ns=llm,
        tool_execution_ns=tools,
        step_ns=step,
    )
