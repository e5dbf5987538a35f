"""The run ledger: what one finished run adds, persistence round trips, caps and exemplars."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.exposition import generate_latest as text_format
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics

from exporter.ledger import Ledger
from exporter.letta.records import RUN
from exporter.lifecycle import Decisions
from exporter.metrics import ExporterMetrics
from exporter.model import FinishedRun
from exporter.state import StateStore
from tests.samples import finished_sample


def test_series_exist_before_the_first_event() -> None:
    m = ExporterMetrics()
    get = m.registry.get_sample_value
    assert get("letta_runs_finished_total", {"status": "failed", "stop_reason": "none"}) == 0
    assert get("letta_runs_finished_total", {"status": "expired", "stop_reason": "none"}) == 0
    assert get("letta_runs_finished_total", {"status": "completed", "stop_reason": "end_turn"}) == 0
    assert get("letta_run_duration_seconds_count", {"status": "cancelled"}) == 0
    assert get("letta_runs_active", {"status": "running"}) == 0
    assert get("letta_exporter_parse_errors_total", {"kind": "unknown_run_status"}) == 0
    assert get("letta_runs_created_total") == 0


def test_one_finished_run_adds_exactly_its_numbers() -> None:
    m = ExporterMetrics()
    m.ledger.record(finished_sample())
    get = m.registry.get_sample_value
    assert get("letta_runs_finished_total", {"status": "completed", "stop_reason": "end_turn"}) == 1
    assert get("letta_run_duration_seconds_sum", {"status": "completed"}) == 0.499200512
    assert get("letta_run_duration_seconds_bucket", {"status": "completed", "le": "0.5"}) == 1
    assert get("letta_run_duration_seconds_bucket", {"status": "completed", "le": "0.25"}) == 0
    assert get("letta_run_steps_sum", {"status": "completed"}) == 2
    labels = {"model": "gpt-4o-mini", "provider": "openai"}
    assert get("letta_steps_total", {"status": "success", "stop_reason": "end_turn", **labels}) == 1
    assert get("letta_steps_total", {"status": "success", "stop_reason": "none", **labels}) == 1
    assert get("letta_step_tokens_total", {"type": "input", **labels}) == 2980 + 2604
    assert get("letta_step_tokens_total", {"type": "cached_input", **labels}) == 6
    assert get("letta_step_tokens_total", {"type": "reasoning", **labels}) == 4
    assert get("letta_step_duration_seconds_count", {"phase": "llm_request", **labels}) == 1
    assert get("letta_step_duration_seconds_sum", {"phase": "step", **labels}) == 0.090023529
    assert get("letta_step_duration_seconds_count", {"phase": "tool_execution", **labels}) is None
    assert get("letta_run_ttft_seconds_count") == 0  # 0.16 reports no TTFT: never invented


def test_ttft_is_observed_where_the_server_reports_it() -> None:
    m = ExporterMetrics()
    run = RUN(
        {
            "id": "run-1",
            "status": "completed",
            "created_at": "2025-08-01T00:00:00Z",
            "ttft_ns": 300_000_000,
            "total_duration_ns": 900_000_000,
        }
    )
    m.ledger.record(FinishedRun(run=run, status="completed"))
    assert m.registry.get_sample_value("letta_run_ttft_seconds_bucket", {"le": "0.5"}) == 1
    assert m.registry.get_sample_value("letta_run_ttft_seconds_bucket", {"le": "0.25"}) == 0


def test_exemplars_carry_the_trace_id_in_openmetrics_only() -> None:
    m = ExporterMetrics(clock=lambda: 1_700_000_000.0)
    m.ledger.record(finished_sample())
    om = openmetrics(m.registry).decode()
    line = next(
        x for x in om.splitlines() if x.startswith('letta_run_duration_seconds_bucket{le="0.5",status="completed"}')
    )
    assert '# {trace_id="ce08798fddb4a5983cceda9825ffc96a"} 0.499200512 1700000000.0' in line
    assert "# {trace_id=" not in text_format(m.registry).decode()


def test_ledger_survives_a_restart_through_the_state_store(tmp_path: Path) -> None:
    path = str(tmp_path / "state.db")
    first = ExporterMetrics()
    first.ledger.record(finished_sample())
    first.ledger.inc("letta_runs_created", (), 3)
    store = StateStore(path)
    store.commit(Decisions(watermark=1.0), first.ledger.take_dirty(), exports=False)
    store.close()
    second = ExporterMetrics()
    second.ledger.restore(StateStore(path).load().series)
    for name, labels in [
        ("letta_runs_created_total", {}),
        ("letta_runs_finished_total", {"status": "completed", "stop_reason": "end_turn"}),
        ("letta_run_duration_seconds_bucket", {"status": "completed", "le": "0.5"}),
        ("letta_run_duration_seconds_sum", {"status": "completed"}),
        ("letta_step_tokens_total", {"type": "input", "model": "gpt-4o-mini", "provider": "openai"}),
    ]:
        assert second.registry.get_sample_value(name, labels) == first.registry.get_sample_value(name, labels), name
    assert second.ledger.take_dirty() == []


def test_series_cap_folds_new_models_into_other_and_counts_it() -> None:
    drops: list[str] = []
    ledger = Ledger(max_series=3, on_drop=drops.append)
    for i in range(6):
        ledger.inc("letta_step_tokens", ("input", f"model-{i}", "openai"), 10)
    assert ledger.value("letta_step_tokens", ("input", "model-2", "openai")) == 10
    assert ledger.value("letta_step_tokens", ("input", "model-3", "openai")) is None
    assert ledger.value("letta_step_tokens", ("input", "other", "other")) == 30  # nothing lost
    assert drops == ["letta_step_tokens"] * 3


def test_metrics_endpoint_output_is_valid_for_both_formats() -> None:
    m = ExporterMetrics()
    m.ledger.record(finished_sample())
    assert b"# EOF" in openmetrics(m.registry)
    assert b"letta_exporter_build_info{" in text_format(m.registry)
