"""The recorded answers of a real Letta 0.16.8 (tests/fixtures/letta-0.16.8/), each record with the
reader it must parse with: the model tests check them one by one, the fuzz tests damage them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from exporter.letta import records
from exporter.model import FinishedRun

SAMPLES = Path(__file__).parent / "fixtures" / "letta-0.16.8"
Reader = records.Reader[BaseModel]

RUN_FILES = (
    "run",
    "run_failed",
    "run_cancelled",
    "run_cancelled_stream",
    "send_message_async_response",
    "runs_active_deprecated_endpoint",
)
STEP_FILES = (
    "step",
    "run_steps",
    "run_steps_order_asc",
    "run_failed_steps",
    "run_cancelled_steps",
    "run_cancelled_stream_steps",
)


def sample(name: str) -> Any:
    return json.loads((SAMPLES / f"{name}.json").read_text())


def sample_records() -> list[tuple[str, Reader, dict[str, Any]]]:
    """Every run, step and metrics object in the recorded samples, with the reader it must parse with."""
    readers: dict[str, Any] = {name: records.RUN for name in RUN_FILES} | {name: records.STEP for name in STEP_FILES}
    readers |= {
        "run_metrics": records.RUN_METRICS,
        "run_failed_metrics": records.RUN_METRICS,
        "run_cancelled_metrics": records.RUN_METRICS,
        "step_metrics": records.STEP_METRICS,
    }
    readers |= {path.stem: records.RUN for path in SAMPLES.glob("runs_list*.json")}
    out: list[tuple[str, Reader, dict[str, Any]]] = []
    for name, reader in sorted(readers.items(), key=lambda item: item[0]):
        data = sample(name)
        out.extend((name, reader, item) for item in (data if isinstance(data, list) else [data]))
    return out


RECORDS = sample_records()


def finished_sample() -> FinishedRun:
    listed = next(r for r in sample("runs_list") if r["id"] == "run-bcc66b21-d2c0-459d-b866-0a96b0f0f64d")
    steps = tuple(records.STEP(s) for s in sample("run_steps"))
    timing = records.STEP_METRICS(sample("step_metrics"))
    return FinishedRun(run=records.RUN(listed), status="completed", steps=steps, step_metrics={steps[0].id: timing})
