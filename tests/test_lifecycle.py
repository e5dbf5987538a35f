"""The source-neutral lifecycle on its own: what it decides for runs a source reports, and what it
hands over to be committed. No source, no sink, no clock."""

from __future__ import annotations

from datetime import UTC, datetime

from exporter.lifecycle import RunLifecycle
from exporter.model import FinishedRun, Run
from exporter.types import RunStatus

T0 = 1_800_000_000.0


def run(run_id: str, status: RunStatus, created: float = T0) -> Run:
    return Run(id=run_id, status=status, created_at=datetime.fromtimestamp(created, UTC))


def test_a_run_is_created_once_and_finished_once_however_often_it_is_reported() -> None:
    lifecycle = RunLifecycle(watermark=T0)
    lifecycle.created([run("a", "running")])
    assert lifecycle.unfinished([run("a", "completed"), run("a", "completed")]) == [run("a", "completed")]
    lifecycle.finished(FinishedRun(run=run("a", "completed"), status="completed"))
    assert lifecycle.unfinished([run("a", "completed")]) == []  # a second path of the same poll
    decisions = lifecycle.take()
    assert (decisions.created, [f.run.id for f in decisions.finished], decisions.watermark) == (1, ["a"], T0)
    assert [(r.id, r.phase, r.counted_status) for r in decisions.upserts] == [("a", "done", "completed")]
    again = lifecycle.take()
    assert (again.created, again.finished, again.upserts) == (0, [], [])


def test_runs_that_existed_before_counting_are_known_but_not_counted() -> None:
    lifecycle = RunLifecycle()
    lifecycle.remember(run("old-done", "completed"))
    lifecycle.remember(run("old-active", "created"))
    assert lifecycle.unfinished([run("old-done", "completed")]) == []
    decisions = lifecycle.take()
    assert (decisions.created, decisions.finished) == (0, [])
    assert {r.id: r.phase for r in decisions.upserts} == {"old-done": "done", "old-active": "active"}


def test_an_expired_run_that_ends_later_is_a_status_change_not_a_second_count() -> None:
    lifecycle = RunLifecycle()
    lifecycle.created([run("z", "created")])
    assert [r.id for r in lifecycle.overdue(created_before=T0 + 1)] == ["z"]
    lifecycle.expired(FinishedRun(run=run("z", "created"), status="expired"))
    assert lifecycle.overdue(created_before=T0 + 1) == []
    lifecycle.status_changed("z", "completed")
    decisions = lifecycle.take()
    assert [f.status for f in decisions.finished] == ["expired"]
    assert decisions.status_changes == [("expired", "completed")]
    record = lifecycle.runs["z"]
    assert (record.phase, record.counted_status) == ("done", "completed")


def test_pruning_forgets_finished_runs_but_keeps_active_ones_and_due_rechecks() -> None:
    lifecycle = RunLifecycle()
    lifecycle.created([run(i, "running", T0 - 100) for i in ("done", "recheck", "active")])
    for run_id in ("done", "recheck"):
        lifecycle.finished(FinishedRun(run=run(run_id, "cancelled", T0 - 100), status="cancelled"))
    lifecycle.recheck("recheck", at=T0 + 15, interval=15)
    lifecycle.take()
    lifecycle.prune(created_before=T0)
    assert sorted(lifecycle.runs) == ["active", "recheck"]
    assert [r.id for r in lifecycle.rechecks_due(T0 + 15)] == ["recheck"]
    decisions = lifecycle.take()
    assert (decisions.deletes, decisions.upserts) == (["done"], [])


def test_summary_counts_pending_runs_by_status_and_the_stuck_ones() -> None:
    lifecycle = RunLifecycle()
    lifecycle.created([run("young", "running", T0 - 10), run("old", "created", T0 - 1000), run("gone", "running")])
    lifecycle.observe(run("gone", "failed"))  # known to have ended, details not read yet: not pending
    summary = lifecycle.summary(now=T0, stuck_after=900.0)
    assert summary.by_status == {"running": 1, "created": 1}
    assert summary.stuck == {"created": 1}
    assert (summary.oldest, summary.tracked) == (T0 - 1000, 3)
