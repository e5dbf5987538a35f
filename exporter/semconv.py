"""The OpenTelemetry GenAI instruments, counted from the same finished runs as the ledger.

Conventions followed: **semantic-conventions-genai v0.1.0** (`docs/gen-ai/gen-ai-metrics.md`, the
GenAI conventions' own repository, split from semantic-conventions after v1.41.0): names, units,
attributes and the recommended explicit bucket boundaries. They are `Series` like the ledger's, so
they are committed with the runs that fed them and survive restarts; pushed over OTLP under their
dotted names, and with `--semconv-metrics` also served on `/metrics` under the names the
OpenTelemetry → Prometheus translation gives them (`gen_ai_client_token_usage`, ...).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client.metrics_core import Metric

from exporter.model import FinishedRun, Step, StepMetrics
from exporter.otlp_metrics import OtlpName, otlp_name
from exporter.series import Family, Series
from exporter.spans import PROVIDERS
from exporter.types import Clock, ToolStatus

CONVENTIONS = "semantic-conventions-genai v0.1.0"
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
ATTRIBUTES = {  # Prometheus label → GenAI attribute
    "gen_ai_operation_name": "gen_ai.operation.name",
    "gen_ai_provider_name": "gen_ai.provider.name",
    "gen_ai_request_model": "gen_ai.request.model",
    "gen_ai_token_type": "gen_ai.token.type",
    "gen_ai_agent_id": "gen_ai.agent.id",
    "gen_ai_tool_name": "gen_ai.tool.name",
    "error_type": "error.type",
}
TOKENS = "gen_ai_client_token_usage"
OPERATION = "gen_ai_client_operation_duration_seconds"
AGENT = "gen_ai_invoke_agent_duration_seconds"
TOOL = "gen_ai_execute_tool_duration_seconds"


@dataclass(frozen=True)
class Instrument:
    otel: str  # the conventions' name
    unit: str
    family: Family  # the Prometheus family


INSTRUMENTS = {
    i.family.name: i
    for i in (
        Instrument(
            "gen_ai.client.token.usage",
            "{token}",
            Family(
                TOKENS,
                "Number of input and output tokens used (per model call).",
                ("gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model", "gen_ai_token_type"),
                TOKEN_BUCKETS,
                capped=("gen_ai_provider_name", "gen_ai_request_model"),
            ),
        ),
        Instrument(
            "gen_ai.client.operation.duration",
            "s",
            Family(
                OPERATION,
                "GenAI operation duration (the model call of each step).",
                ("gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model", "error_type"),
                DURATION_BUCKETS,
                capped=("gen_ai_provider_name", "gen_ai_request_model", "error_type"),
            ),
        ),
        Instrument(
            "gen_ai.invoke_agent.duration",
            "s",
            Family(
                AGENT,
                "Duration of agent invocations (runs).",
                ("gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_agent_id", "error_type"),
                DURATION_BUCKETS,
            ),
        ),
        Instrument(
            "gen_ai.execute_tool.duration",
            "s",
            Family(
                TOOL,
                "Duration of tool executions.",
                ("gen_ai_operation_name", "gen_ai_tool_name", "error_type"),
                DURATION_BUCKETS,
                capped=("gen_ai_tool_name",),
            ),
        ),
    )
}


def otlp_names(family: Metric) -> OtlpName:
    """The conventions' names for the GenAI instruments; the Prometheus name otherwise."""
    instrument = INSTRUMENTS.get(family.name)
    if instrument is None:
        return otlp_name(family)
    return OtlpName(instrument.otel, instrument.unit, ATTRIBUTES)


class GenAiInstruments(Series):
    """Fed by every runtime's ledger as it counts a finished run (an empty label is no attribute)."""

    def __init__(self, on_drop: Callable[[str], None] | None = None, clock: Clock | None = None) -> None:
        super().__init__({n: i.family for n, i in INSTRUMENTS.items()}, on_drop=on_drop, clock=clock)

    def run(self, finished: FinishedRun, agent: str) -> None:
        duration = finished.duration_ns
        if duration is not None:
            error = "" if finished.status == "completed" else finished.status
            labels = ("invoke_agent", finished.run.runtime, agent, error)
            self.observe(AGENT, labels, duration / 1e9, finished.trace_id)

    def step(self, step: Step, timing: StepMetrics | None) -> None:
        provider = PROVIDERS.get(step.provider or "", step.provider or "unknown")
        model = step.model or "unknown"
        if step.usage_reported:
            for kind, count in (("input", step.input_tokens), ("output", step.output_tokens)):
                self.observe(TOKENS, ("chat", provider, model, kind), count, step.trace_id)
        if timing is not None and timing.llm_request_ns is not None:
            error = (step.error_type or "failed") if step.status == "failed" else ""
            self.observe(OPERATION, ("chat", provider, model, error), timing.llm_request_ns / 1e9, step.trace_id)

    def tool(self, name: str, status: ToolStatus, seconds: float, trace_id: str | None) -> None:
        self.observe(TOOL, ("execute_tool", name, "tool_error" if status == "error" else ""), seconds, trace_id)
