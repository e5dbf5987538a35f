"""Span path throughput: our build (SDK ReadableSpans) + OTLP encoding vs plain protobuf encoding.

Both sides turn the same finished runs into the same OTLP bytes-on-the-wire: the baseline fills
`opentelemetry.proto` messages straight from the runs (the floor: no SDK objects at all), ours
builds the SDK's `ReadableSpan`s with `exporter.spans.build_spans` and encodes them with the SDK's
OTLP encoder, exactly as delivery does. Prints spans/s for each and the ratio, from one run.

    .venv/bin/python bench/spans.py [--runs 3000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import hashlib
import platform
import time
from collections.abc import Callable

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1 import trace_pb2

from exporter.letta import records
from exporter.model import FinishedRun, StepMetrics
from exporter.spans import build_spans, default_resource

MODELS = [("gpt-4o-mini", "openai"), ("claude-sonnet-4", "anthropic"), ("gemini-2.5-flash", "google_ai")]


def make_runs(count: int) -> list[FinishedRun]:
    runs = []
    for i in range(count):
        model, provider = MODELS[i % len(MODELS)]
        trace = hashlib.md5(str(i).encode()).hexdigest()
        steps = tuple(
            records.STEP(
                {
                    "id": f"step-{i}-{j}",
                    "run_id": f"run-{i}",
                    "model": model,
                    "provider_name": provider,
                    "status": "success",
                    "stop_reason": "end_turn" if j == 2 else None,
                    "prompt_tokens": 2000 + j,
                    "completion_tokens": 40,
                    "cached_input_tokens": 100,
                    "reasoning_tokens": 5,
                    "trace_id": trace,
                }
            )
            for j in range(3)
        )
        timings = {
            s.id: StepMetrics(llm_request_ns=80_000_000, tool_execution_ns=30_000_000, step_ns=120_000_000)
            for s in steps
        }
        run = records.RUN(
            {
                "id": f"run-{i}",
                "status": "completed",
                "stop_reason": "end_turn",
                "agent_id": f"agent-{i % 7}",
                "created_at": "2026-11-22T12:31:38.023373Z",
                "completed_at": "2026-11-22T12:31:38.456023",
                "background": False,
                "total_duration_ns": 430_000_000,
            }
        )
        runs.append(FinishedRun(run=run, status="completed", steps=steps, step_metrics=timings, agent_name="bench"))
    return runs


def _kv(key: str, value: str | int | bool) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def plain_protobuf(runs: list[FinishedRun]) -> tuple[int, bytes]:
    """The floor: the same spans as protobuf messages, no SDK objects, ids and layout computed inline."""
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    count = 0
    for finished in runs:
        run = finished.run
        trace_id = bytes.fromhex(finished.trace_id or "0" * 32)
        run_span_id = hashlib.sha256(f"run:{run.id}".encode()).digest()[:8]
        start = int(run.created_at.timestamp() * 1e9)
        span = scope.spans.add(
            trace_id=trace_id,
            span_id=run_span_id,
            name=f"invoke_agent {finished.agent_name}",
            kind=trace_pb2.Span.SPAN_KIND_INTERNAL,
            start_time_unix_nano=start,
            end_time_unix_nano=start + (finished.duration_ns or 0),
        )
        span.attributes.extend(
            [
                _kv("gen_ai.operation.name", "invoke_agent"),
                _kv("gen_ai.provider.name", "letta"),
                _kv("gen_ai.agent.name", finished.agent_name or ""),
                _kv("gen_ai.agent.id", run.agent_id or ""),
                _kv("letta.run.id", run.id),
                _kv("letta.run.status", finished.status),
                _kv("letta.run.stop_reason", run.stop_reason or "none"),
                _kv("letta.run.background", bool(run.background)),
            ]
        )
        count += 1
        cursor = start
        for step in finished.steps:
            timing = finished.step_metrics[step.id]
            step_id = hashlib.sha256(f"step:{step.id}".encode()).digest()[:8]
            child = scope.spans.add(
                trace_id=trace_id,
                span_id=step_id,
                parent_span_id=run_span_id,
                name=f"chat {step.model}",
                kind=trace_pb2.Span.SPAN_KIND_CLIENT,
                start_time_unix_nano=cursor,
                end_time_unix_nano=cursor + (timing.step_ns or 0),
            )
            child.attributes.extend(
                [
                    _kv("gen_ai.operation.name", "chat"),
                    _kv("gen_ai.request.model", step.model or ""),
                    _kv("gen_ai.provider.name", step.provider or ""),
                    _kv("gen_ai.usage.input_tokens", step.input_tokens),
                    _kv("gen_ai.usage.output_tokens", step.output_tokens),
                    _kv("gen_ai.usage.cache_read.input_tokens", step.cached_input_tokens),
                    _kv("gen_ai.usage.reasoning.output_tokens", step.reasoning_tokens),
                    _kv("letta.step.id", step.id),
                    _kv("letta.step.status", step.status or "none"),
                    _kv("letta.step.stop_reason", step.stop_reason or "none"),
                    _kv("letta.timing", "derived"),
                    _kv("letta.step.llm_request_ns", timing.llm_request_ns or 0),
                ]
            )
            tool_start = cursor + (timing.llm_request_ns or 0)
            tool = scope.spans.add(
                trace_id=trace_id,
                span_id=hashlib.sha256(f"tool:{step.id}".encode()).digest()[:8],
                parent_span_id=step_id,
                name="execute_tool",
                kind=trace_pb2.Span.SPAN_KIND_INTERNAL,
                start_time_unix_nano=tool_start,
                end_time_unix_nano=tool_start + (timing.tool_execution_ns or 0),
            )
            tool.attributes.extend(
                [
                    _kv("gen_ai.operation.name", "execute_tool"),
                    _kv("letta.step.id", step.id),
                    _kv("letta.timing", "derived"),
                ]
            )
            cursor += timing.step_ns or 0
            count += 2
    return count, request.SerializeToString()


def ours(runs: list[FinishedRun]) -> tuple[int, bytes]:
    resource = default_resource()
    spans = [span for finished in runs for span in build_spans(finished, resource)]
    return len(spans), encode_spans(spans).SerializeToString()


def best_rate(fn: Callable[[list[FinishedRun]], tuple[int, bytes]], runs: list[FinishedRun], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        count, _payload = fn(runs)
        best = min(best, time.perf_counter() - started)
    return count / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    runs = make_runs(args.runs)
    baseline = best_rate(plain_protobuf, runs, args.repeat)
    measured = best_rate(ours, runs, args.repeat)
    where = f"Python {platform.python_version()} on {platform.machine()}"
    print(f"# span path, {args.runs} runs x 7 spans, best of {args.repeat}; {where}")
    print("| path | spans/s | ratio to plain protobuf |")
    print("|---|---|---|")
    print(f"| plain protobuf encoding (floor) | {baseline:,.0f} | 1.00 |")
    print(f"| build_spans + SDK OTLP encoder | {measured:,.0f} | {measured / baseline:.2f} |")


if __name__ == "__main__":
    main()
