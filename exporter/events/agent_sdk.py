"""agent-sdk's events of one run → the finished run the sinks count (docs/event-sources.md §5).

A step is a turn: `start{turn}` opens it, `turn_complete{turn}`, the next `start` or the run's end
close it. Tool events carry no turn and belong to the open one. A resumed run begins with the
paused turn's tool end and `turn_complete` and no `start`: that turn is a step of the resumed run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from exporter.events.timeline import Timed, at, trace_id
from exporter.model import FinishedRun, Run, Step, StepMetrics, ToolCall
from exporter.types import StepStatus, StopReason, TerminalStatus, ToolStatus

_ERRORS: tuple[tuple[str, StopReason], ...] = (
    ("Maximum turns", "max_turns"),
    ("Rate limited", "rate_limited"),
    ("Server error", "server_error"),
    ("Streaming error", "stream_error"),
    ("LLM error", "llm_error"),
    ("Invalid request", "invalid_request"),
)
_TOKENS = ("input_tokens", "output_tokens", "cached_input_tokens", "cache_creation_input_tokens")


@dataclass
class _Turn:
    start_ns: int | None  # None: a paused turn finished by this (resumed) run
    close_ns: int | None = None
    usage: dict[str, int] | None = None
    calls: list[str] = field(default_factory=list)  # call ids, first seen first
    first_tool_ns: int | None = None
    last_tool_end_ns: int | None = None
    last_ns: int = 0


@dataclass
class _Call:
    name: str
    status: ToolStatus = "unknown"
    duration_ms: int | None = None
    ended: bool = False


def fold(run_id: str, events: Sequence[Timed], expired: bool) -> FinishedRun:
    """`events` sorted by time; `expired`: no terminal event came, the run went silent."""
    turns: dict[int, _Turn] = {}
    calls: dict[str, _Call] = {}
    wrapper: dict[str, Any] = {}
    open_turn: _Turn | None = None
    orphan = _Turn(None)  # tool events before any start: the paused turn's, adopted by its turn_complete
    end: Timed | None = None
    first_token: int | None = None
    for event in events:
        kind, data = event.type, event.data
        for name in ("model", "provider", "thread_id"):
            if name in data:
                wrapper.setdefault(name, data[name])
        if end is not None:
            break
        if kind == "start":
            if open_turn is not None:
                open_turn.close_ns = open_turn.close_ns or event.ts_ns
            open_turn = turns.setdefault(data["turn"], _Turn(event.ts_ns))
        elif kind == "turn_complete":
            turn = turns.get(data["turn"])
            if turn is None:
                turn = turns[data["turn"]] = orphan if orphan.calls else _Turn(None)
            turn.usage = turn.usage or data.get("usage", {})
            turn.close_ns = turn.close_ns or event.ts_ns
            open_turn = None if turn is open_turn else open_turn
        elif kind in ("tool_call_start", "tool_call_end", "tool_requires_confirmation"):
            _tool(open_turn or orphan, calls, event)
            if kind == "tool_requires_confirmation":
                end = event
        elif kind == "text_delta" and first_token is None:
            first_token = event.ts_ns
        elif kind in ("done", "error", "cancelled", "refusal", "budget_exceeded", "final_state"):
            end = event
        if open_turn is not None:
            open_turn.last_ns = max(open_turn.last_ns, event.ts_ns)
    first_ns = events[0].ts_ns
    status, stop = _outcome(end)
    run = Run(
        id=f"agent_sdk:{run_id}",
        runtime="agent_sdk",
        status=status or "running",
        stop_reason=stop,
        raw_stop_reason=end.data.get("message") if end and end.type in ("error", "final_state") else None,
        created_at=at(first_ns),
        completed_at=at(end.ts_ns) if end else None,
        conversation_id=wrapper.get("thread_id"),
        error=end.data.get("message") if end and status == "failed" else None,
        total_duration_ns=_duration(end, first_ns),
        ttft_ns=first_token - first_ns if first_token is not None else None,
    )
    if end is not None and end.type == "done":
        _last_turn_usage(turns, end.data.get("total_usage"))
    trace = trace_id(run_id)
    steps: list[Step] = []
    timings: dict[str, StepMetrics] = {}
    tool_calls: list[ToolCall] = []
    for number in sorted(turns):
        turn = turns[number]
        # the paused turn is no step (its end and usage come in the resumed run), but its calls count (§5)
        paused = turn is open_turn and end is not None and end.type == "tool_requires_confirmation"
        step_id = None if paused else f"{run.id}#{number}"
        if step_id is not None:
            steps.append(_step(step_id, run.id, turn, wrapper, _status(turn, open_turn, end, expired), trace))
            timings[step_id] = _timings(turn, end)
        for call_id in turn.calls:
            call = calls[call_id]
            duration = call.duration_ms * 1_000_000 if call.duration_ms is not None else None
            tool_calls.append(
                ToolCall(name=call.name, call_id=call_id, step_id=step_id, status=call.status, duration_ns=duration)
            )
    return FinishedRun(
        run=run,
        status="expired" if expired else (status or "expired"),
        steps=tuple(steps),
        step_metrics=timings,
        tool_calls=tuple(tool_calls),
    )


def _tool(turn: _Turn, calls: dict[str, _Call], event: Timed) -> None:
    data, kind = event.data, event.type
    call = calls.get(data["id"])
    if call is None:
        call = calls[data["id"]] = _Call(data["name"])
        turn.calls.append(data["id"])
    if turn.first_tool_ns is None and kind != "tool_call_end":
        turn.first_tool_ns = event.ts_ns
    if kind == "tool_requires_confirmation" and not call.ended:
        call.status = "awaiting_confirmation"
    elif kind == "tool_call_end" and not call.ended:
        call.ended = True
        result = data["result"]
        call.duration_ms = result.get("duration_ms")
        call.status = _tool_status(result)
        turn.last_tool_end_ns = event.ts_ns


def _tool_status(result: dict[str, Any]) -> ToolStatus:
    if result["success"]:
        return "success"
    output = result.get("output", "")
    return "blocked" if output.startswith("Blocked:") else "rejected" if output.startswith("Rejected:") else "error"


def _outcome(end: Timed | None) -> tuple[TerminalStatus | None, StopReason | None]:
    if end is None:
        return None, None
    kind, data = end.type, end.data
    if kind == "final_state":
        kind = {"done": "done", "awaiting_confirmation": "tool_requires_confirmation"}.get(data["kind"], "error")
    if kind == "done":
        return "completed", None  # done carries no reason: end_turn would be a guess
    if kind == "tool_requires_confirmation":
        return "completed", "requires_approval"
    if kind == "refusal":
        return "completed", "refusal"
    if kind == "cancelled":
        return "cancelled", "cancelled"
    if kind == "budget_exceeded":
        return "failed", "budget_cost_usd" if data.get("limit") == "cost_usd" else "budget_total_tokens"
    message = data.get("message", "")
    return "failed", next((r for prefix, r in _ERRORS if message.startswith(prefix)), "error")


def _duration(end: Timed | None, first_ns: int) -> int | None:
    """The run call's own clock when `done` reports it (it also covers a resumed call's confirmed
    tool, which runs before the first event), else the event times."""
    if end is None:
        return None
    duration = end.data.get("duration")
    if isinstance(duration, dict) and isinstance(duration.get("secs"), int):
        return int(duration["secs"]) * 1_000_000_000 + int(duration.get("nanos") or 0)
    if isinstance(end.data.get("duration_ms"), int):
        return int(end.data["duration_ms"]) * 1_000_000
    return end.ts_ns - first_ns


def _last_turn_usage(turns: dict[int, _Turn], total: dict[str, int] | None) -> None:
    """agent-sdk 0.4.x reports no `turn_complete` for the last turn: `done.total_usage` minus
    the turns reported gives it (§5). Not for a resume from turn 2 or later: its total also holds
    the paused run's earlier turns, counted there, so its last turn stays unknown."""
    missing = [t for t in turns.values() if t.usage is None]
    if total is None or len(missing) != 1 or min(turns) != 1:
        return
    reported = [t.usage for t in turns.values() if t.usage is not None]
    missing[0].usage = {k: max(0, total.get(k, 0) - sum(u.get(k, 0) for u in reported)) for k in _TOKENS}


def _status(turn: _Turn, open_turn: _Turn | None, end: Timed | None, expired: bool) -> StepStatus:
    if turn is not open_turn or (end is not None and end.type in ("done", "refusal")):
        return "success"
    if expired or end is None:
        return "pending"
    if end.type == "final_state" and end.data["kind"] == "done":
        return "success"
    return "cancelled" if end.type == "cancelled" else "failed"


def _step(step_id: str, run_id: str, turn: _Turn, wrapper: dict[str, Any], status: StepStatus, trace: str) -> Step:
    usage = turn.usage or {}
    return Step(
        id=step_id,
        run_id=run_id,
        model=wrapper.get("model"),
        provider=wrapper.get("provider"),
        status=status,
        stop_reason="tool_use" if turn.calls else None,
        input_tokens=usage.get("input_tokens", 0),
        output_tokens=usage.get("output_tokens", 0),
        cached_input_tokens=usage.get("cached_input_tokens", 0),
        cache_write_tokens=usage.get("cache_creation_input_tokens", 0),
        trace_id=trace,
        usage_reported=turn.usage is not None,
    )


def _timings(turn: _Turn, end: Timed | None) -> StepMetrics:
    if turn.start_ns is None:
        return StepMetrics()
    close = turn.close_ns or (end.ts_ns if end else max(turn.last_ns, turn.start_ns))
    llm_end = turn.first_tool_ns or close
    tools = turn.last_tool_end_ns - llm_end if turn.last_tool_end_ns is not None and turn.first_tool_ns else None
    return StepMetrics(
        step_start_ns=turn.start_ns,
        llm_request_start_ns=turn.start_ns,
        llm_request_ns=llm_end - turn.start_ns,
        tool_execution_ns=tools,
        step_ns=close - turn.start_ns,
    )
