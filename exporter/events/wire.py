"""One NDJSON line of a runtime's events → an `Event`: its run, identity, time and the fields kept.

The four line formats of docs/event-sources.md §2 are told apart per line. Only the fields the
mappers read are kept (text, arguments and outputs are dropped), so stored events stay small.
Every way a line can be wrong raises `BadLine` with a reason safe to show the sender.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Final

from exporter.types import EventRuntime

BEHEST_TERMINAL: Final = frozenset({"RunCompleted", "RunFailed", "RunCancelled"})
AGENT_SDK_TERMINAL: Final = frozenset(
    {"done", "error", "cancelled", "refusal", "budget_exceeded", "tool_requires_confirmation", "final_state"}
)
# behest 0.3.0 to 0.5.9 variants (docs/event-sources.md §4), with the fields kept of each
_BEHEST: Final[dict[str, tuple[str, ...]]] = {
    "RunStarted": ("session_id", "provider", "model"),
    "ContextBuilt": (),
    "ModelStarted": ("provider", "model", "iteration"),
    "TextDelta": (),
    "ToolCallStarted": ("call_id", "tool_name"),
    "ToolCallDelta": ("call_id",),
    "ToolCallCompleted": ("call",),
    "UsageRecorded": ("usage",),
    "CacheMetrics": ("cache_creation_input_tokens", "cache_read_input_tokens", "cached_input_tokens"),
    "AssistantMessageCommitted": (),
    "ToolMessageCommitted": (),
    "DoomLoopDetected": (),
    "RunCompleted": ("finish_reason", "iterations"),
    "RunFailed": ("error",),
    "RunCancelled": (),
    "CompactionCircuitOpened": (),
    "ToolExecutionStarted": (),
    "ToolExecutionFinished": (),
}
# agent-sdk 0.4.4 and ≥ 0.9 event types (§5)
_AGENT_SDK: Final[dict[str, tuple[str, ...]]] = {
    "start": ("turn",),
    "text_delta": (),
    "tool_call_start": ("id", "name"),
    "tool_call_end": ("id", "name", "result"),
    "tool_requires_confirmation": ("id", "name"),
    "turn_complete": ("turn", "usage"),
    "done": ("total_turns", "total_usage", "duration", "duration_ms"),
    "error": ("message",),
    "refusal": (),
    "cancelled": ("turn",),
    "budget_exceeded": ("limit", "duration_ms"),
    **{
        name: ()
        for name in (
            "thinking",
            "thinking_delta",
            "text",
            "tool_progress",
            "context_compacted",
            "subagent_progress",
            "auto_retry_start",
            "auto_retry_end",
            "user_input",
        )
    },
}
_TIME = re.compile(r"(\d{4}-\d\d-\d\d)[Tt ](\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?([Zz]|[+-]\d\d:\d\d)")
_MAX_TEXT: Final = 500


class BadLine(ValueError):
    """The line cannot be used; the message says why (it is shown to the sender)."""


@dataclass(frozen=True, slots=True)
class Event:
    runtime: EventRuntime
    run_id: str  # the runtime's own run id
    key: str  # identity: a resent line has the same one
    ts_ns: int  # event time, epoch nanoseconds
    seq: int | None  # the runtime's order within the run, when the line has one
    type: str  # behest variant or agent-sdk type (or "final_state")
    data: dict[str, Any]  # the kept fields; agent-sdk wrapper fields as "model", "provider", "thread_id"

    @property
    def terminal(self) -> bool:
        return self.type in (BEHEST_TERMINAL if self.runtime == "behest" else AGENT_SDK_TERMINAL)


@dataclass(frozen=True, slots=True)
class Unknown:
    """A well-formed line of a type this version does not know (a newer runtime): ignored."""

    runtime: EventRuntime
    type: str


def parse(line: bytes) -> Event | Unknown:
    try:
        raw = json.loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadLine(f"not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise BadLine("not a JSON object")
    if "envelope" in raw:
        return _agent_sdk_envelope(raw)
    if "final_state" in raw:
        return _final_state(raw, line)
    if isinstance(raw.get("event"), dict) and "type" in raw["event"]:
        return _agent_sdk_wrapper(raw, line)
    if "event_id" in raw and isinstance(raw.get("event"), dict):
        return _behest(raw["event"], key=f"e:{_text(raw, 'event_id')}", seq=_int(raw, "seq", optional=True))
    if len(raw) == 1:
        return _behest(raw)
    raise BadLine("unknown line format (see docs/event-sources.md §2)")


def nanos(text: str) -> int:
    """RFC 3339 → epoch nanoseconds, every fraction digit kept."""
    match = _TIME.fullmatch(text)
    if match is None:
        raise BadLine(f"not an RFC 3339 time: {text[:40]!r}")
    day, clock, fraction, zone = match.groups()
    try:
        whole = datetime.fromisoformat(f"{day}T{clock}").replace(tzinfo=_zone(zone))
    except ValueError:
        raise BadLine(f"not a valid time: {text[:40]!r}") from None
    return int(whole.timestamp()) * 1_000_000_000 + int((fraction or "0").ljust(9, "0"))


def _zone(text: str) -> timezone:
    if text in ("Z", "z"):
        return UTC
    sign = -1 if text[0] == "-" else 1
    return timezone(sign * timedelta(hours=int(text[1:3]), minutes=int(text[4:6])))


def _behest(raw: dict[str, Any], key: str | None = None, seq: int | None = None) -> Event | Unknown:
    if len(raw) != 1:
        raise BadLine("a behest event has exactly one key, its variant")
    ((variant, body),) = raw.items()
    if variant not in _BEHEST:
        if isinstance(body, dict) and variant[:1].isupper():
            return Unknown("behest", variant)
        raise BadLine("unknown line format (see docs/event-sources.md §2)")
    if not isinstance(body, dict):
        raise BadLine(f"{variant}: not an object")
    run_id, stamp = _text(body, "run_id"), _text(body, "timestamp")
    data = {name: body[name] for name in _BEHEST[variant] if body.get(name) is not None}
    _check_behest(variant, data)
    key = key or f"b:{run_id}:{variant}:{stamp}"
    return Event("behest", run_id, key, nanos(stamp), seq, variant, data)


def _check_behest(variant: str, data: dict[str, Any]) -> None:
    if variant == "ModelStarted":
        _int(data, "iteration")
    elif variant == "UsageRecorded":
        usage = data.get("usage")
        if not isinstance(usage, dict):
            raise BadLine("UsageRecorded: usage is not an object")
        data["usage"] = _counts(usage, "UsageRecorded")
    elif variant == "CacheMetrics":
        data.update(_counts(data, "CacheMetrics"))
    elif variant == "ToolCallCompleted":
        call = data.pop("call", None)
        if not isinstance(call, dict):
            raise BadLine("ToolCallCompleted: call is not an object")
        data["call_id"], data["tool_name"] = _text(call, "id"), _text(call, "name")
    elif variant == "RunCompleted":
        reason = data.get("finish_reason")
        if isinstance(reason, dict) and len(reason) == 1 and "unknown" in reason:
            data["finish_reason"] = f"unknown:{reason['unknown']}"
        elif not isinstance(reason, str):
            raise BadLine("RunCompleted: finish_reason is neither a string nor {unknown: …}")
    elif variant == "RunFailed":
        data["error"] = str(data.get("error", ""))[:_MAX_TEXT]
    for name in ("call_id", "tool_name", "model", "provider", "session_id"):
        if name in data and not isinstance(data[name], str):
            raise BadLine(f"{variant}: {name} is not a string")


def _agent_sdk_wrapper(raw: dict[str, Any], line: bytes) -> Event | Unknown:
    run_id = _text(raw, "run_id", missing="missing run_id: the host wrapper must add one per run() call")
    seq = _int(raw, "seq", optional=True)
    key = f"s:{run_id}:{seq}" if seq is not None else f"h:{hashlib.sha256(line.strip()).hexdigest()}"
    return _agent_sdk(raw, raw["event"], run_id, key, nanos(_text(raw, "ts")), seq)


def _agent_sdk_envelope(raw: dict[str, Any]) -> Event | Unknown:
    envelope = raw["envelope"]
    if not isinstance(envelope, dict):
        raise BadLine("envelope is not an object")
    run_id = _text(raw, "run_id", missing="missing run_id: the host wrapper must add one per run() call")
    key = f"e:{_text(envelope, 'event_id')}"
    return _agent_sdk(raw, envelope, run_id, key, nanos(_text(envelope, "timestamp")), _int(envelope, "sequence"))


def _final_state(raw: dict[str, Any], line: bytes) -> Event:
    run_id = _text(raw, "run_id", missing="missing run_id: the host wrapper must add one per run() call")
    state = raw["final_state"]
    if not isinstance(state, dict) or state.get("kind") not in ("done", "error", "awaiting_confirmation"):
        raise BadLine("final_state.kind is not done, error or awaiting_confirmation")
    data = {**_wrapper(raw), "kind": state["kind"], "message": str(state.get("message") or "")[:_MAX_TEXT]}
    return Event("agent_sdk", run_id, f"f:{run_id}", nanos(_text(raw, "ts")), None, "final_state", data)


def _agent_sdk(
    wrapper: dict[str, Any], event: dict[str, Any], run_id: str, key: str, ts_ns: int, seq: int | None
) -> Event | Unknown:
    kind = event.get("type")
    if not isinstance(kind, str):
        raise BadLine("event.type is not a string")
    if kind not in _AGENT_SDK:
        return Unknown("agent_sdk", kind)
    data = {**_wrapper(wrapper), **{n: event[n] for n in _AGENT_SDK[kind] if event.get(n) is not None}}
    if kind in ("start", "turn_complete"):
        _int(data, "turn")
    for name in ("usage", "total_usage"):
        if name in data:
            if not isinstance(data[name], dict):
                raise BadLine(f"{kind}: {name} is not an object")
            data[name] = _counts(data[name], kind)
    if kind == "tool_call_end":
        result = data.get("result")
        if not isinstance(result, dict) or not isinstance(result.get("success"), bool):
            raise BadLine("tool_call_end: result.success is not a boolean")
        data["result"] = {
            "success": result["success"],
            "output": str(result.get("output") or "")[:16],  # only its prefix tells blocked / rejected
            "duration_ms": _int(result, "duration_ms", optional=True),
        }
    if kind == "error":
        data["message"] = str(data.get("message", ""))[:_MAX_TEXT]
    if kind in ("tool_call_start", "tool_call_end", "tool_requires_confirmation"):
        _text(data, "id"), _text(data, "name")
    return Event("agent_sdk", run_id, key, ts_ns, seq, kind, data)


def _wrapper(raw: dict[str, Any]) -> dict[str, Any]:
    return {name: raw[name] for name in ("model", "provider", "thread_id") if isinstance(raw.get(name), str)}


def _counts(raw: dict[str, Any], where: str) -> dict[str, int]:
    """Token counts: non-negative integers; null (behest 0.5.9's absent cache fields) is left out."""
    counts = {}
    for name, value in raw.items():
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise BadLine(f"{where}: {name} is not a non-negative integer")
        counts[name] = value
    return counts


def _text(raw: dict[str, Any], name: str, missing: str | None = None) -> str:
    value = raw.get(name)
    if not isinstance(value, str) or not value:
        raise BadLine(missing if missing and value is None else f"{name} is missing or not a string")
    return value


def _int(raw: dict[str, Any], name: str, optional: bool = False) -> int | None:
    value = raw.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise BadLine(f"{name} is not a non-negative integer")
    return value
