"""The normalized model against every recorded sample and every older payload shape."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from exporter.model import FinishedRun, Run, RunMetrics, Step, StepMetrics

SAMPLES = Path(__file__).parent / "fixtures" / "letta-0.16.8"


def parse(model: Any, data: Any) -> tuple[Any, list[str]]:
    problems: list[str] = []
    return model.model_validate(data, context={"problems": problems}), problems


RUN_FILES = ("run", "run_failed", "run_cancelled", "run_cancelled_stream", "send_message_async_response",
             "runs_active_deprecated_endpoint")  # fmt: skip
STEP_FILES = ("step", "run_steps", "run_steps_order_asc", "run_failed_steps", "run_cancelled_steps",
              "run_cancelled_stream_steps")  # fmt: skip


def sample_records() -> list[tuple[str, Any, dict[str, Any]]]:
    """Every run, step and metrics object in the recorded samples, with the model it must parse as."""
    models: dict[str, Any] = {name: Run for name in RUN_FILES} | {name: Step for name in STEP_FILES}
    models |= {
        "run_metrics": RunMetrics,
        "run_failed_metrics": RunMetrics,
        "run_cancelled_metrics": RunMetrics,
        "step_metrics": StepMetrics,
    }
    models |= {path.stem: Run for path in SAMPLES.glob("runs_list*.json")}
    out: list[tuple[str, Any, dict[str, Any]]] = []
    for name, model in sorted(models.items(), key=lambda item: item[0]):
        data = json.loads((SAMPLES / f"{name}.json").read_text())
        out.extend((name, model, item) for item in (data if isinstance(data, list) else [data]))
    return out


RECORDS = sample_records()


def test_the_samples_cover_every_kind_of_record() -> None:
    kinds = {model.__name__ for _, model, _ in RECORDS}
    assert kinds == {"Run", "Step", "RunMetrics", "StepMetrics"}
    assert len(RECORDS) > 30


@pytest.mark.parametrize(("name", "model", "item"), RECORDS, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(RECORDS)])
def test_every_recorded_sample_parses_without_problems(name: str, model: Any, item: dict[str, Any]) -> None:
    parsed, problems = parse(model, item)
    assert problems == []
    if model is Run:
        assert parsed.id == item["id"] and parsed.created_at.tzinfo is UTC


def test_naive_completed_at_is_utc_and_duration_falls_back_to_timestamps() -> None:
    run, _ = parse(Run, json.loads((SAMPLES / "run_failed.json").read_text()))
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
    listed, _ = parse(Run, {**base, "total_duration_ns": 1_500_000_000})
    assert FinishedRun(run=listed, status="completed").duration_ns == 1_500_000_000
    single, _ = parse(Run, base)
    metrics = RunMetrics.model_validate({"run_ns": 1_900_000_000, "run_start_ns": 1})
    assert FinishedRun(run=single, status="completed", run_metrics=metrics).duration_ns == 1_900_000_000
    assert FinishedRun(run=single, status="completed").duration_ns == 2_000_000_000


def test_job_shaped_run_of_letta_0_11() -> None:
    job = {
        "id": "run-0f7c", "status": "pending", "created_at": "2025-08-01T10:00:00",
        "completed_at": None, "metadata": {"agent_id": "agent-9"}, "job_type": "run",
        "ttft_ns": 120_000_000, "total_duration_ns": None, "user_id": "user-1",
    }  # fmt: skip
    run, problems = parse(Run, job)
    assert (run.status, run.agent_id, run.run_type, run.ttft_ns, run.active) == (
        "pending",
        "agent-9",
        "run",
        120_000_000,
        True,
    )
    assert problems == []
    expired, _ = parse(Run, {**job, "status": "expired"})
    assert expired.terminal and expired.stop_reason is None


def test_step_of_letta_0_11_uses_job_id_and_has_no_status() -> None:
    step, problems = parse(
        Step,
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
        Step,
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
        Run, {"id": "run-x", "status": "paused", "stop_reason": "quota", "created_at": "2026-01-01T00:00:00Z"}
    )
    assert (run.status, run.stop_reason, run.active) == ("other", "other", True)
    assert sorted(problems) == ["unknown_run_status", "unknown_stop_reason"]
    step, problems = parse(Step, {"id": "step-x", "status": "retrying", "trace_id": "not-hex"})
    assert (step.status, step.trace_id) == ("other", None)
    assert sorted(problems) == ["invalid_trace_id", "unknown_step_status"]


def test_status_lagging_behind_a_terminal_stop_reason_is_corrected() -> None:
    run, _ = parse(
        Run, {"id": "run-l", "status": "running", "stop_reason": "end_turn", "created_at": "2026-01-01T00:00:00Z"}
    )
    assert run.status == "completed" and run.terminal
    failed, _ = parse(
        Run, {"id": "run-f", "status": "created", "stop_reason": "llm_api_error", "created_at": "2026-01-01T00:00:00Z"}
    )
    assert failed.status == "failed"


def test_missing_and_odd_fields_are_tolerated() -> None:
    run, problems = parse(
        Run,
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
    step, _ = parse(Step, {"id": "step-m", "prompt_tokens": None, "completion_tokens": "7"})
    assert (step.input_tokens, step.output_tokens) == (0, 7)


@pytest.mark.parametrize(
    "data",
    [None, [], "run", {"status": "completed"}, {"id": "run-1"}, {"id": "run-1", "created_at": "yesterday"}],
)
def test_unusable_runs_raise_a_validation_error(data: Any) -> None:
    with pytest.raises(ValidationError):
        Run.model_validate(data)
