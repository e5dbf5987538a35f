"""Span building and delivery, in-process: the SDK's in-memory exporter receives what OTLP would."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from exporter.letta.records import RUN, RUN_METRICS, STEP
from exporter.lifecycle import Decisions
from exporter.metrics import ExporterMetrics
from exporter.model import FinishedRun, StepMetrics
from exporter.otlp import OtlpConfigError, SpanDelivery, exporter_from_env
from exporter.simulator import Scenario
from exporter.spans import build_spans, default_resource, trace_id_of
from exporter.state import StateStore
from tests.harness import SETTINGS, Harness
from tests.samples import sample as load
from tests.support import wait_until

RESOURCE = Resource({"service.name": "letta-exporter-test"})


def sample_run(tool_ns: int | None = 30_000_000) -> FinishedRun:
    listed = next(r for r in load("runs_list") if r["id"] == "run-bcc66b21-d2c0-459d-b866-0a96b0f0f64d")
    steps = tuple(reversed([STEP(s) for s in load("run_steps")]))
    timings = {
        steps[0].id: StepMetrics(llm_request_ns=70_000_000, tool_execution_ns=tool_ns, step_ns=110_000_000),
        steps[1].id: StepMetrics(llm_request_ns=72_409_628, step_ns=90_023_529),
    }
    return FinishedRun(
        run=RUN(listed),
        status="completed",
        steps=steps,
        step_metrics=timings,
        run_metrics=RUN_METRICS(load("run_metrics")),
        agent_name="support-bot",
    )


def test_run_and_step_spans_form_one_tree_in_lettas_trace() -> None:
    finished = sample_run()
    spans = build_spans(finished, RESOURCE)
    assert [s.name for s in spans] == [
        "invoke_agent support-bot",
        "chat gpt-4o-mini",
        "execute_tool",
        "chat gpt-4o-mini",
    ]
    run_span, step1, tool, step2 = spans
    assert {f"{s.context.trace_id:032x}" for s in spans} == {"ce08798fddb4a5983cceda9825ffc96a"}
    assert run_span.parent is None and run_span.kind is SpanKind.INTERNAL
    assert step1.parent == run_span.context and step2.parent == run_span.context and tool.parent == step1.context
    assert step1.kind is SpanKind.CLIENT
    assert run_span.attributes == {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.provider.name": "letta",
        "gen_ai.agent.name": "support-bot",
        "gen_ai.agent.id": "agent-5e7e64e9-c25d-4078-8a45-4f8bd5a01ca9",
        "letta.run.id": "run-bcc66b21-d2c0-459d-b866-0a96b0f0f64d",
        "letta.run.status": "completed",
        "letta.run.stop_reason": "end_turn",
        "letta.run.background": True,
    }
    assert step2.attributes is not None and step2.attributes["gen_ai.usage.input_tokens"] == 2980
    assert step2.attributes["gen_ai.usage.cache_read.input_tokens"] == 3
    assert step2.attributes["gen_ai.provider.name"] == "openai"
    assert step2.attributes["letta.timing"] == "derived"
    # steps laid end to end from the run's start, the tool after the LLM request
    run_start = 1795351237989598208
    assert (step1.start_time, step1.end_time) == (run_start, run_start + 110_000_000)
    assert (tool.start_time, tool.end_time) == (run_start + 70_000_000, run_start + 100_000_000)
    assert (step2.start_time, step2.end_time) == (run_start + 110_000_000, run_start + 200_023_529)
    assert run_span.status.status_code is StatusCode.UNSET


def test_reported_step_start_times_are_used_where_the_server_fills_them() -> None:
    """Letta Cloud documents `step_start_ns` / `llm_request_start_ns`; 0.16.8 leaves them null."""
    finished = sample_run()
    first, second = finished.steps
    reported_start = 1795351238000000000
    timings = {
        first.id: finished.step_metrics[first.id].model_copy(
            update={"step_start_ns": reported_start, "llm_request_start_ns": reported_start + 5_000_000}
        ),
        second.id: finished.step_metrics[second.id],  # not filled: laid out after the first
    }
    _, step1, tool, step2 = build_spans(finished.model_copy(update={"step_metrics": timings}), RESOURCE)
    assert step1.attributes is not None and step1.attributes["letta.timing"] == "reported"
    assert (step1.start_time, step1.end_time) == (reported_start, reported_start + 110_000_000)
    assert tool.start_time == reported_start + 5_000_000 + 70_000_000
    assert step2.attributes is not None and step2.attributes["letta.timing"] == "derived"
    assert step2.start_time == reported_start + 110_000_000


def test_ids_are_derived_so_a_re_export_is_identical() -> None:
    first = [(s.context.trace_id, s.context.span_id) for s in build_spans(sample_run(), RESOURCE)]
    second = [(s.context.trace_id, s.context.span_id) for s in build_spans(sample_run(), RESOURCE)]
    assert first == second and len({span_id for _, span_id in first}) == 4


def test_without_lettas_trace_id_the_trace_id_is_derived_from_the_run() -> None:
    finished = sample_run()
    untraced = replace_steps(finished, trace_id=None)
    assert trace_id_of(untraced) == trace_id_of(replace_steps(finished, trace_id=None)) != trace_id_of(finished)
    assert {s.context.trace_id for s in build_spans(untraced, RESOURCE)} == {trace_id_of(untraced)}


def replace_steps(finished: FinishedRun, **changes: object) -> FinishedRun:
    steps = tuple(s.model_copy(update=changes) for s in finished.steps)
    return finished.model_copy(update={"steps": steps})


def test_a_step_in_another_trace_gets_its_own_trace_and_a_link() -> None:
    finished = sample_run(tool_ns=None)
    other = finished.steps[1].model_copy(update={"trace_id": "0123456789abcdef0123456789abcdef"})
    finished = finished.model_copy(update={"steps": (finished.steps[0], other)})
    run_span, _, moved = build_spans(finished, RESOURCE)
    assert f"{moved.context.trace_id:032x}" == "0123456789abcdef0123456789abcdef"
    assert moved.parent is None and [link.context for link in moved.links] == [run_span.context]


def test_failed_run_carries_error_status_type_and_text() -> None:
    run = RUN(load("run_failed"))
    steps = tuple(STEP(s) for s in load("run_failed_steps"))
    run_span, step_span = build_spans(FinishedRun(run=run, status="failed", steps=steps), RESOURCE)
    assert run_span.status.status_code is StatusCode.ERROR
    assert run_span.status.description is not None and run_span.status.description.startswith("INTERNAL_SERVER_ERROR")
    assert run_span.attributes is not None and run_span.attributes["error.type"] == "LLMServerError"
    assert step_span.status.status_code is StatusCode.ERROR
    assert step_span.attributes is not None and step_span.attributes["error.type"] == "LLMServerError"
    assert step_span.attributes["letta.step.stop_reason"] == "llm_api_error"


def test_first_token_event_and_provider_mapping() -> None:
    run = RUN(
        {
            "id": "run-t",
            "status": "completed",
            "created_at": "2025-08-01T00:00:00Z",
            "ttft_ns": 250_000_000,
            "total_duration_ns": 900_000_000,
        }
    )
    step = STEP({"id": "step-t", "model": "gemini-2.5-flash", "provider_name": "google_ai"})
    run_span, step_span = build_spans(FinishedRun(run=run, status="completed", steps=(step,)), RESOURCE)
    start, end = run_span.start_time, run_span.end_time
    assert start is not None and end is not None
    assert [(e.name, e.timestamp - start) for e in run_span.events] == [("first_token", 250_000_000)]
    assert end - start == 900_000_000
    assert step_span.attributes is not None and step_span.attributes["gen_ai.provider.name"] == "gcp.gemini"


def test_otlp_is_off_without_an_endpoint_and_follows_the_protocol_variables() -> None:
    assert exporter_from_env({}) is None
    assert exporter_from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318", "OTEL_TRACES_EXPORTER": "none"}) is None
    http = exporter_from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    grpc = exporter_from_env(
        {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4317", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"}
    )
    assert http is not None and "proto.http" in type(http).__module__
    assert grpc is not None and "proto.grpc" in type(grpc).__module__
    for exporter in (http, grpc):
        exporter.shutdown()
    try:
        exporter_from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})
    except OtlpConfigError as exc:
        assert "http/json" in str(exc)
    else:
        raise AssertionError("http/json must be refused")


def test_service_name_defaults_to_letta_exporter(monkeypatch: object) -> None:
    assert default_resource().attributes["service.name"] == "letta-exporter"


class Flaky(SpanExporter):
    """Fails while `down` is set; records what it accepted."""

    def __init__(self) -> None:
        self.down = threading.Event()
        self.accepted: list[ReadableSpan] = []
        self.attempts = 0
        self.delivered = threading.Condition()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.attempts += 1
        if self.down.is_set():
            return SpanExportResult.FAILURE
        with self.delivered:
            self.accepted.extend(spans)
            self.delivered.notify_all()
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


def runs(n: int) -> list[FinishedRun]:
    base = sample_run()
    return [base.model_copy(update={"run": base.run.model_copy(update={"id": f"run-{i}"})}) for i in range(n)]


def commit_pending(store: StateStore, finished: list[FinishedRun]) -> None:
    store.commit(Decisions(finished=finished), series=[], exports=True)


def delivered_run_ids(exporter: Flaky) -> list[str]:
    return [
        str(s.attributes["letta.run.id"]) for s in exporter.accepted if s.attributes and s.name.startswith("invoke")
    ]


def test_a_burst_beyond_the_queue_waits_in_the_state_file_and_is_delivered_in_order(tmp_path: Path) -> None:
    store, metrics, exporter = StateStore(str(tmp_path / "s.db")), ExporterMetrics(), Flaky()
    delivery = SpanDelivery(exporter, store, metrics, RESOURCE, max_queued_runs=5, batch_runs=2)
    delivery.start()
    assert delivery.wait_idle(10)
    for chunk in (runs(40)[i : i + 8] for i in range(0, 40, 8)):  # a backfill committing chunk by chunk
        commit_pending(store, chunk)
        delivery.submit(chunk)
        assert delivery.queued <= 5  # memory holds the queue's bound, the rest waits on disk
    assert delivery.wait_idle(10)
    delivery.close()
    assert delivered_run_ids(exporter) == [f"run-{i}" for i in range(40)]  # each once, oldest first
    assert metrics.registry.get_sample_value("letta_exporter_spans_dropped_total") == 0
    assert metrics.registry.get_sample_value("letta_exporter_spans_exported_total") == 40 * 4
    assert store.pending_exports(100) == []


def test_an_outage_longer_than_the_bound_drops_the_oldest_waiting_runs_and_counts_them(tmp_path: Path) -> None:
    store, metrics, exporter = StateStore(str(tmp_path / "s.db")), ExporterMetrics(), Flaky()
    delivery = SpanDelivery(
        exporter, store, metrics, RESOURCE, max_queued_runs=3, max_pending_runs=10, retry_delays=(0.01, 0.02)
    )
    exporter.down.set()
    delivery.start()
    batch = runs(16)
    commit_pending(store, batch)
    delivery.submit(batch)
    wait_until(lambda: exporter.attempts >= 3, timeout=10, what="retries while the collector is down")
    assert exporter.accepted == [] and delivery.queued == 3
    assert len(store.pending_exports(100)) == 10  # disk bounded too
    assert metrics.registry.get_sample_value("letta_exporter_spans_dropped_total") == 6 * 4
    exporter.down.clear()
    assert delivery.wait_idle(10)
    delivery.close()
    # the queued (oldest) three were spared; runs 3-8 were dropped; the newest seven waited and went
    assert delivered_run_ids(exporter) == [f"run-{i}" for i in (0, 1, 2, *range(9, 16))]
    assert metrics.registry.get_sample_value("letta_exporter_spans_exported_total") == 10 * 4
    assert store.pending_exports(100) == []


def test_pending_exports_are_delivered_by_the_next_process(tmp_path: Path) -> None:
    path = str(tmp_path / "s.db")
    store = StateStore(path)
    commit_pending(store, runs(3))  # counted, then the process died before delivering
    store.close()
    exporter = InMemorySpanExporter()
    delivery = SpanDelivery(exporter, StateStore(path), ExporterMetrics(), RESOURCE)
    delivery.start()
    assert delivery.wait_idle(10)
    delivery.close()
    assert len(exporter.get_finished_spans()) == 3 * 4


def test_the_poll_loop_exports_one_trace_fragment_per_counted_run() -> None:
    memory = InMemorySpanExporter()
    h = Harness(Scenario(seed=21, runs_per_second=3.0, max_runs=60, flip=0.0, zombie=0.0), settings=SETTINGS)
    delivery = SpanDelivery(memory, h.store, h.metrics, RESOURCE)
    delivery.start()
    h.loop = h.make_loop(delivery)
    h.run_for(40)
    assert delivery.wait_idle(10)
    delivery.close()
    spans = memory.get_finished_spans()
    run_spans = [s for s in spans if s.name.startswith("invoke_agent")]
    assert len(run_spans) == sum(h.finished_by_status().values()) == 60
    assert len({s.context.span_id for s in spans}) == len(spans)
    truth = {r["id"]: r for r in h.sim.truth()["terminal"]}
    for span in run_spans:
        assert span.attributes is not None
        run_id = str(span.attributes["letta.run.id"])
        steps = [s for s in spans if s.parent == span.context]
        assert len(steps) == truth[run_id]["steps"]
        assert str(span.name).startswith("invoke_agent sim-agent-")
