"""The source-neutral run lifecycle: which runs are new, active, finished, changed, expired, forgotten.

A source tells the lifecycle what it saw; the lifecycle keeps one `RunRecord` per known run and
decides, so that each run is counted exactly once however often and by however many paths a
source reports it. It counts nothing itself: `take()` returns the poll's `Decisions` (runs
created, runs finished, terminal status changes, records to write and delete), which the poll
loop counts, commits in one transaction and hands to the sinks. No HTTP client, no sink here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from exporter.model import FinishedRun, Run
from exporter.types import TERMINAL_STATUSES, Phase, RunStatus, TerminalStatus


@dataclass(slots=True)
class RunRecord:
    """A known run, as the state file keeps it (see `Phase` for what `phase` means)."""

    id: str
    created_at: float
    status: RunStatus
    phase: Phase
    counted_status: TerminalStatus | None = None
    recheck_at: float | None = None  # when to read a counted run again (its status may still change)
    recheck_interval: float | None = None
    attempts: int = 0  # failed attempts to read a finished run's details

    @property
    def pending(self) -> bool:
        """Active as far as counting goes: not counted, and not known to have ended."""
        return self.phase == "active" and self.status not in TERMINAL_STATUSES


@dataclass
class Decisions:
    """What a poll decided: counted by the loop, committed with the records in one transaction."""

    created: int = 0
    finished: list[FinishedRun] = field(default_factory=list)
    status_changes: list[tuple[str, TerminalStatus]] = field(default_factory=list)  # (from, to)
    upserts: list[RunRecord] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)
    watermark: float | None = None


@dataclass(frozen=True)
class ActiveSummary:
    """The active runs' gauges: counts by status, stuck ones by status, the oldest creation time."""

    by_status: dict[RunStatus, int]
    stuck: dict[RunStatus, int]
    oldest: float | None
    tracked: int


class RunLifecycle:
    def __init__(self, runs: Mapping[str, RunRecord] | None = None, watermark: float | None = None) -> None:
        self._runs = dict(runs or {})
        self.watermark = watermark  # the source's resume point (newest creation time read), committed with the rest
        self._decisions = Decisions()
        self._changed: set[str] = set()
        self._deleted: set[str] = set()

    @property
    def runs(self) -> Mapping[str, RunRecord]:
        return self._runs

    def get(self, run_id: str) -> RunRecord | None:
        return self._runs.get(run_id)

    # -- what a source saw ------------------------------------------------------------------------

    def remember(self, run: Run) -> None:
        """Know a run without counting it: it existed before counting began."""
        self._put(RunRecord(run.id, run.created_at.timestamp(), run.status, "done" if run.terminal else "active"))

    def created(self, runs: Iterable[Run]) -> None:
        """Runs seen for the first time: counted as created and tracked until they finish."""
        for run in runs:
            self._decisions.created += 1
            self._put(RunRecord(run.id, run.created_at.timestamp(), run.status, "active"))

    def unfinished(self, runs: Iterable[Run]) -> list[Run]:
        """Of runs a source found finished, those not counted yet, each once (two paths of one
        poll may both find a run)."""
        return list({run.id: run for run in runs if self._runs[run.id].phase == "active"}.values())

    def observe(self, run: Run) -> None:
        """A tracked active run's current status, as a source shows it."""
        record = self._runs[run.id]
        if record.status != run.status:
            record.status = run.status
            self._changed.add(run.id)

    def finished(self, finished: FinishedRun) -> None:
        """Count a tracked run as finished with `finished.status`: the one place a run is counted."""
        record = self._runs[finished.run.id]
        self._decisions.finished.append(finished)
        record.phase, record.status, record.counted_status = "done", finished.run.status, finished.status
        self._changed.add(record.id)

    def retry_later(self, run: Run) -> None:
        """A finished run whose details could not be read: tried again next poll."""
        record = self._runs[run.id]
        record.status = run.status
        record.attempts += 1
        self._changed.add(run.id)

    def expired(self, finished: FinishedRun) -> None:
        """Count a run its source still shows active, and stop waiting for it."""
        record = self._runs[finished.run.id]
        self._decisions.finished.append(finished)
        record.phase, record.counted_status = "expired", "expired"
        self._changed.add(record.id)

    def status_changed(self, run_id: str, after: TerminalStatus) -> None:
        """A counted run's terminal status changed: counted as a change, never recounted. An
        expired run that ended after all is done with."""
        record = self._runs[run_id]
        self._decisions.status_changes.append((record.counted_status or "none", after))
        record.counted_status = after
        if record.phase == "expired":
            record.phase = "done"  # kept until pruned: a listing may still show it
        self._changed.add(run_id)

    def recheck(self, run_id: str, at: float | None, interval: float | None = None) -> None:
        """Schedule (or, with None, stop) reading a counted run again."""
        record = self._runs[run_id]
        record.recheck_at, record.recheck_interval = at, interval
        self._changed.add(run_id)

    def discard_late(self, run_id: str) -> None:
        """A counted run was reported again (late or resent events): nothing to count; what is
        left of it at its source is dropped with the next commit."""
        self._changed.add(run_id)

    def forget(self, run_id: str) -> None:
        self._runs.pop(run_id, None)
        self._changed.discard(run_id)
        self._deleted.add(run_id)

    # -- what is due ------------------------------------------------------------------------------

    def rechecks_due(self, now: float) -> list[RunRecord]:
        return [r for r in self._runs.values() if r.recheck_at is not None and r.recheck_at <= now]

    def overdue(self, created_before: float) -> list[RunRecord]:
        """Pending runs created before `created_before`: to be counted as expired."""
        return [r for r in self._runs.values() if r.pending and r.created_at < created_before]

    def prune(self, created_before: float) -> None:
        """Finished runs are only needed while a source can still show them again or a re-check is due."""
        for record in list(self._runs.values()):
            if record.phase == "done" and record.recheck_at is None and record.created_at < created_before:
                self.forget(record.id)

    def summary(self, now: float, stuck_after: float) -> ActiveSummary:
        by_status: dict[RunStatus, int] = {}
        stuck: dict[RunStatus, int] = {}
        oldest: float | None = None
        for record in self._runs.values():
            if not record.pending:
                continue
            by_status[record.status] = by_status.get(record.status, 0) + 1
            if now - record.created_at > stuck_after:
                stuck[record.status] = stuck.get(record.status, 0) + 1
            oldest = record.created_at if oldest is None else min(oldest, record.created_at)
        return ActiveSummary(by_status, stuck, oldest, len(self._runs))

    # -- what must be committed -------------------------------------------------------------------

    def take(self) -> Decisions:
        """The decisions since the last call, with the records they changed; starts afresh."""
        decisions = self._decisions
        decisions.upserts = [self._runs[i] for i in self._changed if i in self._runs]
        decisions.deletes = list(self._deleted)
        decisions.watermark = self.watermark
        self._decisions = Decisions()
        self._changed.clear()
        self._deleted.clear()
        return decisions

    def _put(self, record: RunRecord) -> None:
        self._runs[record.id] = record
        self._deleted.discard(record.id)
        self._changed.add(record.id)
