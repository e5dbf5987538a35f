"""Stored events → counted runs: settling, silent runs expiring once, late and resent events, restarts."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from exporter import app, config
from exporter.events.ingest import Ingest
from exporter.loop import PollLoop
from exporter.metrics import ExporterMetrics
from exporter.state import StateStore

RUN = "6972359a-1b2c-4d5e-8f90-0123456789ab"
MODEL = {"provider": "anthropic", "model": "claude-sonnet-4-20250514"}


def bare(variant: str, second: float, run: str = RUN, **fields: Any) -> bytes:
    return json.dumps({variant: {"run_id": run, **fields, "timestamp": f"2026-06-26T09:00:{second:06.3f}Z"}}).encode()


def completed(run: str = RUN) -> list[bytes]:
    return [
        bare("RunStarted", 0, run, session_id="s", **MODEL),
        bare("ModelStarted", 1, run, iteration=1, **MODEL),
        bare("UsageRecorded", 2, run, usage={"input_tokens": 10, "output_tokens": 5, "total_tokens": 15}),
        bare("AssistantMessageCommitted", 3, run, message_id="m"),
        bare("RunCompleted", 4, run, finish_reason="stop", iterations=1),
    ]


class Exporter:
    """The event side of one exporter process over a state file, on a fake clock."""

    def __init__(self, path: Path, clock: list[float]) -> None:
        self.clock = clock
        self.store = StateStore(str(path))
        self.metrics = ExporterMetrics()
        settings = config.load(None, {"LETTA_EXPORTER_INGEST_TOKEN": "t", "LETTA_EXPORTER_LETTA": "false"})
        self.loops: list[PollLoop] = app.event_loops(self.store, self.metrics, settings, clock=lambda: clock[0])
        self.ingest = Ingest(self.store, self.metrics, clock=lambda: clock[0])

    def poll(self) -> None:
        async def all_loops() -> None:
            for loop in self.loops:
                await loop.poll()

        asyncio.run(all_loops())

    def value(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0

    def finished(self, status: str, stop_reason: str) -> float:
        return self.value("behest_runs_finished_total", status=status, stop_reason=stop_reason)


@pytest.fixture
def clock() -> list[float]:
    return [1_800_000_000.0]


@pytest.fixture
def exporter(tmp_path: Path, clock: list[float]) -> Exporter:
    return Exporter(tmp_path / "state.db", clock)


def test_a_run_is_counted_once_it_has_settled(exporter: Exporter, clock: list[float]) -> None:
    exporter.ingest.accept(completed(), "http")
    exporter.poll()
    assert exporter.value("behest_runs_created_total") == 1
    assert exporter.finished("completed", "stop") == 0  # a late UsageRecorded may still come
    clock[0] += 15
    exporter.poll()
    assert exporter.finished("completed", "stop") == 1
    assert exporter.value("behest_step_tokens_total", type="input", **MODEL) == 10
    assert exporter.store.event_runs("behest") == [] and exporter.store.run_events(f"behest:{RUN}") == []
    exporter.poll()
    assert exporter.finished("completed", "stop") == 1


def test_an_event_arriving_within_the_settle_time_is_still_counted(exporter: Exporter, clock: list[float]) -> None:
    lines = completed()
    usage = lines.pop(2)
    exporter.ingest.accept(lines, "redis")
    clock[0] += 10
    exporter.ingest.accept([usage], "redis")  # behest retried its publish
    clock[0] += 10
    exporter.poll()
    assert exporter.finished("completed", "stop") == 0  # settle restarts at the last arrival
    clock[0] += 5
    exporter.poll()
    assert exporter.value("behest_step_tokens_total", type="output", **MODEL) == 5


def test_a_silent_run_expires_once_and_a_late_end_is_a_status_change(exporter: Exporter, clock: list[float]) -> None:
    lines = completed()
    exporter.ingest.accept(lines[:2], "http")  # then the provider fails: behest says nothing
    clock[0] += 899
    exporter.poll()
    assert exporter.value("behest_runs_active", status="running") == 1
    assert exporter.value("behest_runs_stuck", status="running") == 0
    clock[0] += 2
    exporter.poll()
    exporter.poll()
    assert exporter.finished("expired", "none") == 1
    assert exporter.value("behest_steps_total", status="pending", stop_reason="none", **MODEL) == 1
    assert exporter.value("behest_runs_active", status="running") == 0
    exporter.ingest.accept(lines[2:], "http")  # it ended after all
    exporter.poll()
    assert exporter.finished("expired", "none") == 1 and exporter.finished("completed", "stop") == 0
    assert exporter.value("behest_run_terminal_status_changes_total", **{"from": "expired", "to": "completed"}) == 1
    assert exporter.value("letta_exporter_late_events_total", runtime="behest") == 3


def test_resent_lines_change_nothing(exporter: Exporter, clock: list[float]) -> None:
    first = exporter.ingest.accept(completed(), "http")
    again = exporter.ingest.accept(completed(), "http")
    assert (first.accepted, first.duplicate, again.accepted, again.duplicate) == (5, 0, 0, 5)
    clock[0] += 20
    exporter.poll()
    late = exporter.ingest.accept(completed(), "http")  # resent after the run was counted
    exporter.poll()
    assert late.accepted == 5  # stored, then found to belong to a counted run
    assert exporter.finished("completed", "stop") == 1
    assert exporter.value("letta_exporter_late_events_total", runtime="behest") == 5
    assert exporter.value("letta_exporter_events_total", runtime="behest", transport="http", result="duplicate") == 5


def test_counting_survives_a_restart(tmp_path: Path, clock: list[float]) -> None:
    path = tmp_path / "state.db"
    before = Exporter(path, clock)
    before.ingest.accept(completed() + completed("0190aaaa-0000-4000-8000-000000000002")[:2], "http")
    before.poll()
    clock[0] += 20
    before.poll()
    assert before.finished("completed", "stop") == 1
    before.store.close()
    after = Exporter(path, clock)  # a new process over the same state file
    after.ingest.accept(completed(), "http")
    after.poll()
    assert after.finished("completed", "stop") == 1  # restored, not recounted
    assert after.value("behest_runs_created_total") == 2
    clock[0] += 900
    after.poll()
    assert after.finished("expired", "none") == 1


def test_bad_lines_are_counted_and_never_stop_the_rest(exporter: Exporter) -> None:
    result = exporter.ingest.accept([b"{oops", b"", b"[]", *completed(), bare("Replanned", 9)], "http")
    assert (result.accepted, result.rejected, result.ignored) == (5, 2, 1)
    assert [n for n, _ in result.errors] == [1, 3]
    assert exporter.value("letta_exporter_parse_errors_total", kind="invalid_event") == 2
    assert exporter.value("letta_exporter_events_total", runtime="unknown", transport="http", result="rejected") == 2


def test_the_runtimes_keep_their_own_families(exporter: Exporter, clock: list[float]) -> None:
    sdk = {
        "ts": "2026-06-26T09:00:01Z",
        "thread_id": "th",
        "run_id": RUN,  # the same id as a behest run: still two runs
        "seq": 0,
        "event": {"type": "error", "message": "Rate limited after 5 retries", "recoverable": True},
    }
    exporter.ingest.accept([*completed(), json.dumps(sdk).encode()], "http")
    clock[0] += 20
    exporter.poll()
    assert exporter.finished("completed", "stop") == 1
    assert exporter.value("agent_sdk_runs_finished_total", status="failed", stop_reason="rate_limited") == 1
    assert exporter.value("letta_runs_finished_total", status="completed", stop_reason="none") == 0
