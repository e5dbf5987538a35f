"""One finished run → its trace fragment, as the SDK's `ReadableSpan`s, built directly.

Spans are built after the fact from Letta's records, so there is no live tracer: building the
SDK's span objects directly costs a fraction of starting and ending real spans. Every id is
derived from Letta's ids, so exporting the same run twice yields identical spans — which is what
lets delivery be retried safely.

Letta 0.16.8 steps carry no timestamps, only durations and order: step spans are laid end to end
from the run's start and marked `letta.timing = derived`. Where the server fills the step
metrics' start times (Letta Cloud documents them), those are used (`letta.timing = reported`).
"""

from __future__ import annotations

import hashlib

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from exporter import __version__
from exporter.model import FinishedRun, Step, StepMetrics, ToolCall

SCOPE = InstrumentationScope("letta-exporter", __version__)
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_UNSET = Status(StatusCode.UNSET)

# Letta provider names → OpenTelemetry GenAI `gen_ai.provider.name` values.
PROVIDERS = {
    "google_ai": "gcp.gemini",
    "google_vertex": "gcp.vertex_ai",
    "azure": "azure.ai.openai",
    "bedrock": "aws.bedrock",
    "xai": "x_ai",
    "mistral": "mistral_ai",
}


def _derived_id(kind: str, key: str, size: int) -> int:
    """A stable non-zero id of `size` bytes from a Letta id."""
    value = int.from_bytes(hashlib.sha256(f"{kind}:{key}".encode()).digest()[:size], "big")
    return value or 1


def trace_id_of(finished: FinishedRun) -> int:
    """Letta's own trace id when its tracing is on (spans then join its trace), else derived."""
    letta = finished.trace_id
    return int(letta, 16) if letta else _derived_id("trace", finished.run.id, 16)


def _context(trace_id: int, span_id: int) -> SpanContext:
    return SpanContext(trace_id, span_id, is_remote=False, trace_flags=_SAMPLED)


def build_spans(finished: FinishedRun, resource: Resource) -> list[ReadableSpan]:
    run = finished.run
    trace_id = trace_id_of(finished)
    run_context = _context(trace_id, _derived_id("run", run.id, 8))
    start = int(run.created_at.timestamp() * 1e9)
    completed = run.completed_at
    end = max(start, int(completed.timestamp() * 1e9) if completed else start + (finished.duration_ns or 0))
    ns = run.runtime  # the attribute namespace: letta.*, behest.*, agent_sdk.*
    agent = finished.agent_name or run.agent_id or (ns if ns != "letta" else "unknown")
    attributes: dict[str, str | bool | int] = {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.provider.name": ns,
        "gen_ai.agent.name": agent,
        f"{ns}.run.id": run.id.removeprefix(f"{ns}:"),
        f"{ns}.run.status": finished.status,
        f"{ns}.run.stop_reason": run.stop_reason or "none",
    }
    if run.raw_stop_reason:
        attributes[f"{ns}.run.raw_stop_reason"] = run.raw_stop_reason[:500]
    if run.agent_id:
        attributes["gen_ai.agent.id"] = run.agent_id
    if run.conversation_id:
        attributes["gen_ai.conversation.id"] = run.conversation_id
    if run.background is not None:
        attributes[f"{ns}.run.background"] = run.background
    events = []
    if run.ttft_ns is not None:
        events.append(Event("first_token", {f"{ns}.ttft_ns": run.ttft_ns}, start + run.ttft_ns))
    if finished.status in ("failed", "expired"):
        reason = run.error or ("still active after --expire-after" if finished.status == "expired" else "run failed")
        status = Status(StatusCode.ERROR, reason[:500])
        attributes["error.type"] = finished.status if finished.status == "expired" else _error_type(finished)
    else:
        status = _UNSET
    spans = [
        ReadableSpan(
            name=f"invoke_agent {agent}",
            context=run_context,
            resource=resource,
            attributes=attributes,
            events=events,
            kind=SpanKind.INTERNAL,
            status=status,
            start_time=start,
            end_time=end,
            instrumentation_scope=SCOPE,
        )
    ]
    run_metrics = finished.run_metrics
    cursor = run_metrics.run_start_ns if run_metrics and run_metrics.run_start_ns else start
    for step in finished.steps:
        timing = finished.step_metrics.get(step.id)
        step_start = timing.step_start_ns if timing and timing.step_start_ns else cursor
        spans.extend(_step_spans(finished, step, step_start, run_context, resource))
        cursor = step_start + ((timing.step_ns or 0) if timing else 0)
    return spans


def _error_type(finished: FinishedRun) -> str:
    failed = next((s for s in reversed(finished.steps) if s.status == "failed"), None)
    if failed and failed.error_type:
        return failed.error_type
    return finished.run.stop_reason or "failed"


def _step_spans(
    finished: FinishedRun, step: Step, start: int, run_context: SpanContext, resource: Resource
) -> list[ReadableSpan]:
    timing = finished.step_metrics.get(step.id) or StepMetrics()
    step_ns = timing.step_ns or 0
    llm_ns, tool_ns = timing.llm_request_ns, timing.tool_execution_ns
    own_trace = step.trace_id is not None and int(step.trace_id, 16) != run_context.trace_id
    trace_id = int(step.trace_id, 16) if own_trace and step.trace_id else run_context.trace_id
    context = _context(trace_id, _derived_id("step", step.id, 8))
    model, ns = step.model or "unknown", finished.run.runtime
    attributes: dict[str, str | int] = {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": model,
        "gen_ai.provider.name": PROVIDERS.get(step.provider or "", step.provider or "unknown"),
        "gen_ai.usage.input_tokens": step.input_tokens,
        "gen_ai.usage.output_tokens": step.output_tokens,
        "gen_ai.usage.cache_read.input_tokens": step.cached_input_tokens,
        "gen_ai.usage.reasoning.output_tokens": step.reasoning_tokens,
        f"{ns}.step.id": step.id,
        f"{ns}.step.status": step.status or "none",
        f"{ns}.step.stop_reason": step.stop_reason or "none",
        f"{ns}.timing": "reported" if timing.step_start_ns else "derived",
    }
    if llm_ns is not None:
        attributes[f"{ns}.step.llm_request_ns"] = llm_ns
    status = _UNSET
    if step.status == "failed":
        attributes["error.type"] = step.error_type or "failed"
        status = Status(StatusCode.ERROR, (step.error_message or "step failed")[:500])
    spans = [
        ReadableSpan(
            name=f"chat {model}",
            context=context,
            parent=None if own_trace else run_context,
            links=[Link(run_context)] if own_trace else [],
            resource=resource,
            attributes=attributes,
            kind=SpanKind.CLIENT,
            status=status,
            start_time=start,
            end_time=start + step_ns,
            instrumentation_scope=SCOPE,
        )
    ]
    calls = [call for call in finished.tool_calls or () if call.step_id == step.id]
    if calls or tool_ns is not None:
        tool_start = (timing.llm_request_start_ns or start) + (llm_ns or 0)
        tool_end = tool_start + (tool_ns or 0)  # parallel calls share the step's tool time
        for index, call in enumerate(calls or [None]):
            span_id = _derived_id("tool", f"{step.id}#{index}" if call else step.id, 8)
            own = call.duration_ns if call and call.duration_ns is not None else None  # the call's own time
            window = (tool_start, tool_end if own is None else tool_start + own)
            spans.append(_tool_span(call, ns, step.id, window, _context(trace_id, span_id), context, resource))
    return spans


def _tool_span(
    call: ToolCall | None,
    ns: str,
    step_id: str,
    window: tuple[int, int],
    context: SpanContext,
    parent: SpanContext,
    resource: Resource,
) -> ReadableSpan:
    """One tool call; without the run's messages (tool metrics off) one anonymous span per step."""
    attributes = {"gen_ai.operation.name": "execute_tool", f"{ns}.step.id": step_id, f"{ns}.timing": "derived"}
    status = _UNSET
    if call is not None:
        attributes["gen_ai.tool.name"] = call.name
        if call.call_id:
            attributes["gen_ai.tool.call.id"] = call.call_id
        attributes[f"{ns}.tool.status"] = call.status
        if call.status == "error":
            attributes["error.type"] = "tool_error"
            status = Status(StatusCode.ERROR, f"tool {call.name} returned an error")
    return ReadableSpan(
        name=f"execute_tool {call.name}" if call else "execute_tool",
        context=context,
        parent=parent,
        resource=resource,
        attributes=attributes,
        kind=SpanKind.INTERNAL,
        status=status,
        start_time=window[0],
        end_time=window[1],
        instrumentation_scope=SCOPE,
    )


def default_resource() -> Resource:
    """`OTEL_SERVICE_NAME` / `OTEL_RESOURCE_ATTRIBUTES` win; otherwise the service is letta-exporter."""
    resource = Resource.create()
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": "letta-exporter"}))
    return resource
