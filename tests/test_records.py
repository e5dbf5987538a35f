"""Reading Letta's records into the shared model: every recorded sample and every older payload shape."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from exporter.letta.records import RUN, RUN_METRICS, STEP, InvalidRecord
from exporter.model import FinishedRun, Run
from exporter.types import ProblemKind
from tests.samples import RECORDS, sample


def parse(reader: Any, data: Any) -> tuple[Any, list[str]]:
    problems: list[ProblemKind] = []
    return reader(data, problems), list(problems)


def test_the_samples_cover_every_kind_of_record() -> None:
    kinds = {reader.model.__name__ for _, reader, _ in RECORDS}
    assert kinds == {"Run", "Step", "RunMetrics", "StepMetrics"}
    assert len(RECORDS) > 30


@pytest.mark.parametrize(("name", "reader", "item"), RECORDS, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(RECORDS)])
def test_every_recorded_sample_parses_without_problems(name: str, reader: Any, item: dict[str, Any]) -> None:
    parsed, problems = parse(reader, item)
    assert problems == []
    if reader is RUN:
        assert parsed.id == item["id"] and parsed.created_at.tzinfo is UTC


def test_naive_completed_at_is_utc_and_duration_falls_back_to_timestamps() -> None:
    run, _ = parse(RUN, sample("run_failed"))
    assert run.completed_at == datetime(2026, 11, 22, 12, 40, 42, 499648, tzinfo=UTC)
    assert run.status == "failed" and run.stop_reason is None
    assert run.error is not None and run.error.startswith("INTERNAL_SERVER_ERROR")
    assert FinishedRun(run=run, status="failed").duration_ns == 204_596_000


def test_duration_prefers_list_value_then_run_metrics() -> None:
    base = {
        "id": "run-1",
        "status": "completed",
        "created_at": "2026-01-01T00:00:00Z",
        "completed_at": "2026-01-01T00:00:02",
    }
    listed, _ = parse(RUN, {**base, "total_duration_ns": 1_500_000_000})
    assert FinishedRun(run=listed, status="completed").duration_ns == 1_500_000_000
    single, _ = parse(RUN, base)
    metrics = RUN_METRICS({"run_ns": 1_900_000_000, "run_start_ns": 1}, [])
    assert FinishedRun(run=single, status="completed", run_metrics=metrics).duration_ns == 1_900_000_000
    assert FinishedRun(run=single, status="completed").duration_ns == 2_000_000_000


def test_job_shaped_run_of_letta_0_11() -> None:
    job = {
        "id": "run-0f7c",
        "status": "pending",
        "created_at": "2025-08-01T10:00:00",
        "completed_at": None,
        "metadata": {"agent_id": "agent-9"},
        "job_type": "run",
        "ttft_ns": 120_000_000,
        "total_duration_ns": None,
        "user_id": "user-1",
    }
    run, problems = parse(RUN, job)
    assert (run.status, run.agent_id, run.run_type, run.ttft_ns, run.terminal) == (
        "pending",
        "agent-9",
        "run",
        120_000_000,
        False,
    )
    assert problems == []
    expired, _ = parse(RUN, {**job, "status": "expired"})
    assert expired.terminal and expired.stop_reason is None


def test_step_of_letta_0_11_uses_job_id_and_has_no_status() -> None:
    step, problems = parse(
        STEP,
        {
            "id": "step-1",
            "job_id": "run-0f7c",
            "model": "gpt-4o",
            "provider_name": "openai",
            "prompt_tokens": 10,
            "completion_tokens": 3,
            "total_tokens": 13,
            "completion_tokens_details": {"reasoning_tokens": 2},
        },
    )
    assert (step.run_id, step.status, step.reasoning_tokens, step.cached_input_tokens) == ("run-0f7c", None, 2, 0)
    assert problems == []


def test_old_token_details_fill_the_0_16_6_fields() -> None:
    step, _ = parse(
        STEP,
        {
            "id": "step-2",
            "prompt_tokens": 100,
            "completion_tokens": 5,
            "prompt_tokens_details": {"cache_read_tokens": 40, "cache_creation_tokens": 7},
        },
    )
    assert step.tokens() == {"input": 100, "output": 5, "cached_input": 40, "cache_write": 7, "reasoning": 0}


def test_unknown_enum_values_become_other_and_are_reported() -> None:
    run, problems = parse(
        RUN, {"id": "run-x", "status": "paused", "stop_reason": "quota", "created_at": "2026-01-01T00:00:00Z"}
    )
    assert (run.status, run.stop_reason, run.terminal) == ("other", "other", False)
    assert sorted(problems) == ["unknown_run_status", "unknown_stop_reason"]
    step, problems = parse(STEP, {"id": "step-x", "status": "retrying", "trace_id": "not-hex"})
    assert (step.status, step.trace_id) == ("other", None)
    assert sorted(problems) == ["invalid_trace_id", "unknown_step_status"]


def test_status_lagging_behind_a_terminal_stop_reason_is_corrected() -> None:
    run, _ = parse(
        RUN, {"id": "run-l", "status": "running", "stop_reason": "end_turn", "created_at": "2026-01-01T00:00:00Z"}
    )
    assert run.status == "completed" and run.terminal
    failed, _ = parse(
        RUN, {"id": "run-f", "status": "created", "stop_reason": "llm_api_error", "created_at": "2026-01-01T00:00:00Z"}
    )
    assert failed.status == "failed"


def test_missing_and_odd_fields_are_tolerated() -> None:
    run, problems = parse(
        RUN,
        {
            "id": "run-m",
            "created_at": "2026-01-01T00:00:00+02:00",
            "ttft_ns": "-5",
            "total_duration_ns": "12.0",
            "background": "yes",
            "metadata": "oops",
        },
    )
    assert (run.status, run.ttft_ns, run.total_duration_ns, run.background) == ("other", None, 12, None)
    assert run.created_at == datetime(2025, 12, 31, 22, 0, tzinfo=UTC)
    assert problems == ["missing_run_status"]
    step, _ = parse(STEP, {"id": "step-m", "prompt_tokens": None, "completion_tokens": "7"})
    assert (step.input_tokens, step.output_tokens) == (0, 7)


@pytest.mark.parametrize(
    "data",
    [None, [], "run", {"status": "completed"}, {"id": "run-1"}, {"id": "run-1", "created_at": "yesterday"}],
)
def test_unusable_runs_raise_invalid_record(data: Any) -> None:
    with pytest.raises(InvalidRecord):
        RUN(data, [])


def test_a_completed_run_with_a_failure_stop_reason_failed() -> None:
    """Letta Cloud types allow it; a run that ended in an error is never counted as a success."""
    base = {"id": "run-c", "status": "completed", "created_at": "2026-01-01T00:00:00Z"}
    for reason in ("error", "llm_api_error", "invalid_llm_response", "max_tokens_exceeded"):
        run, problems = parse(RUN, {**base, "stop_reason": reason})
        assert (run.status, run.stop_reason, problems) == ("failed", reason, [])
    for reason in ("end_turn", "max_steps", "tool_rule", "requires_approval"):
        assert parse(RUN, {**base, "stop_reason": reason})[0].status == "completed"
    flipped, _ = parse(RUN, {**base, "stop_reason": "cancelled"})  # the overwrite keeps its own accounting
    assert flipped.status == "completed"


def test_the_shared_model_round_trips_through_json() -> None:
    """Pending span exports are stored as JSON and read back by another process."""
    run, _ = parse(RUN, sample("run_failed"))
    steps = tuple(parse(STEP, raw)[0] for raw in sample("run_failed_steps"))
    finished = FinishedRun(run=run, status="failed", steps=steps)
    assert FinishedRun.model_validate_json(finished.model_dump_json()) == finished
    assert isinstance(finished.run, Run)
