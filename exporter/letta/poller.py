"""The Letta source: each poll, crawl Letta and tell the run lifecycle what it shows.

Letta lists runs only by creation time, and they change state afterwards (docs/letta-api.md §2.4).
Each poll therefore:
1. pages **new** runs newest-first down to the watermark (minus a short visibility window, since
   rows can become visible slightly out of order), reporting the ids the lifecycle does not know;
   the same pages show the tracked runs of that window as they are now, so most runs are seen
   finishing there, with the duration only listings carry;
2. lists the **active** runs (only while older runs are tracked) and GETs each one that left that
   set, to learn how it ended;
3. re-checks recently cancelled runs a few times (from the listing while they are in it), because
   Letta can overwrite `cancelled` with `completed` (docs/letta-api.md §1.7);
4. reports runs active for longer than `expire_after` as expired.
Requests per poll thus depend on the rate of new and finishing runs, never on history: about one
list request per poll plus the steps of each finished run (and its step metrics, if enabled).
This is the only module that knows Letta's paging, its clock and its lagging statuses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from exporter.letta import records
from exporter.letta.client import LettaClient, LettaError
from exporter.letta.details import RunDetails
from exporter.lifecycle import RunLifecycle, RunRecord
from exporter.metrics import ExporterMetrics
from exporter.model import FinishedRun, Run
from exporter.problems import ProblemLog
from exporter.types import Clock, ProblemKind, TerminalStatus

log = logging.getLogger(__name__)

VISIBILITY_WINDOW = 30.0  # seconds of already-listed history re-read each poll
PRUNE_AFTER = 2 * VISIBILITY_WINDOW  # finished runs older than the watermark by this are forgotten
RECHECK_STATUSES = frozenset({"cancelled"})  # the terminal status Letta is known to overwrite
_LIST_PROBLEMS: frozenset[str] = frozenset({"malformed_json", "not_a_list", "not_an_object"})


@dataclass(frozen=True)
class LettaSettings:
    page_size: int = 100
    expire_after: float = 86400.0
    backfill: float = 0.0
    max_catchup: float = 86400.0
    step_timings: bool = True
    commit_every: int = 1000  # new runs per chunk: a backlog is fetched and committed chunk by chunk
    recheck_window: float = 300.0
    first_recheck: float = 15.0
    detail_attempts: int = 3
    agent_names: bool = False  # span names want them (metrics do when they carry agent labels)
    tool_metrics: bool = False  # read each finished run's messages for its tool calls


class LettaPoller:
    def __init__(
        self,
        client: LettaClient,
        lifecycle: RunLifecycle,
        metrics: ExporterMetrics,
        settings: LettaSettings = LettaSettings(),
        clock: Clock = time.time,
    ) -> None:
        self._client = client
        self._runs = lifecycle
        self._metrics = metrics
        self._problems = ProblemLog(metrics)
        self._read = records.Reading(self._problems)
        agents = metrics.agents
        self._details = RunDetails(
            client,
            self._read,
            settings.step_timings,
            clock,
            tools=settings.tool_metrics,
            on_agent_names=agents.learn if agents is not None else None,
        )
        self._agent_names = settings.agent_names or agents is not None
        self._settings = settings
        self._clock = clock
        self._checkpoint: Callable[[], None] = lambda: None
        self._taken = 0  # new runs taken this poll

    def now(self) -> float:
        """Now on Letta's clock, which its timestamps (ages, stuck, expiry, backfill) are measured by."""
        return self._clock() + self._client.clock_offset

    async def poll(self, checkpoint: Callable[[], None]) -> str | None:
        """One poll; None when Letta was reached and understood, else what failed. Never raises
        for Letta's faults; what it found before a failure is kept. `checkpoint` commits what
        the lifecycle decided so far (between chunks of a backlog)."""
        self._checkpoint, self._taken = checkpoint, 0
        try:
            seen: frozenset[str] = frozenset()
            if self._runs.watermark is None:
                await self._bootstrap()
            else:
                seen = await self._discover()
            await self._follow_active(seen)
            await self._recheck()
            await self._expire()
        except LettaError as exc:
            self._metrics.up.set(0)
            if exc.kind in _LIST_PROBLEMS:
                self._metrics.problem(cast(ProblemKind, exc.kind), str(exc))
            return str(exc)
        finally:
            if self._runs.watermark is not None:
                self._runs.prune(self._runs.watermark - PRUNE_AFTER)
            self._metrics.clock_offset.set(self._client.clock_offset)
        self._metrics.up.set(1)
        return None

    # -- the four steps ---------------------------------------------------------------------------

    async def _bootstrap(self) -> None:
        """First start: remember what exists without counting it, except inside --backfill. A
        backfill is taken and committed chunk by chunk; a bootstrap cut short (a kill) is redone
        next time without the runs it already took."""
        backfill_floor = self.now() - self._settings.backfill if self._settings.backfill > 0 else None
        newest: float | None = None
        new: list[Run] = []
        async with self._crawl() as runs:
            async for raw in runs:
                created = self._paging_time(raw)
                if created is None:
                    continue
                newest = created if newest is None else newest
                if created < newest - VISIBILITY_WINDOW and (backfill_floor is None or created < backfill_floor):
                    break
                if str(raw.get("id")) in self._runs.runs:
                    continue
                run = self._read(records.RUN, raw)
                if run is None:
                    continue
                if backfill_floor is not None and created >= backfill_floor:
                    await self._collect(new, run)
                else:
                    self._runs.remember(run)
        pending = {run.id for run in new}  # the last chunk, not taken yet
        async with self._crawl(active=True) as runs:
            async for raw in runs:
                if str(raw.get("id")) in self._runs.runs or str(raw.get("id")) in pending:
                    continue
                run = self._read(records.RUN, raw)
                if run is None:
                    continue
                created = run.created_at.timestamp()
                # created after the listing above, or inside --backfill: new, like any later run
                if (newest is not None and created > newest) or (
                    backfill_floor is not None and created >= backfill_floor
                ):
                    new.append(run)
                else:
                    self._runs.remember(run)
        await self._take_new(new)
        self._runs.watermark = newest if newest is not None else 0.0
        log.info(
            "started tracking",
            extra={
                "active_runs": sum(r.phase == "active" for r in self._runs.runs.values()),
                "backfilled": self._taken,
            },
        )

    async def _collect(self, new: list[Run], run: Run) -> None:
        """A new run found while crawling. A backlog (a backfill, a catch-up after downtime) is
        taken and committed every `commit_every` runs, so memory does not grow with it and a kill
        loses at most one chunk; the watermark moves only once the whole crawl is done."""
        new.append(run)
        if len(new) >= self._settings.commit_every:
            await self._take_new(new)
            new.clear()
            self._checkpoint()

    async def _discover(self) -> frozenset[str]:
        """New runs since the watermark. The same listing shows the tracked runs created in the
        window with their current status (and, unlike GET, `total_duration_ns`), so those that
        finished are taken from it — no GET and no `/metrics` per run, no active listing while
        every tracked run is that young — and so are re-checks of the runs it shows."""
        watermark = self._runs.watermark
        assert watermark is not None
        floor = watermark - VISIBILITY_WINDOW
        newest: float | None = None
        new: list[Run] = []
        seen: dict[str, Run] = {}
        async with self._crawl() as runs:
            async for raw in runs:
                created = self._paging_time(raw)
                if created is None:
                    continue
                newest = created if newest is None else newest
                if created < floor or created < newest - self._settings.max_catchup:
                    break
                record = self._runs.get(str(raw.get("id")))
                if record is not None and record.phase != "active" and record.recheck_at is None:
                    continue
                run = self._read(records.RUN, raw)
                if run is None:
                    continue
                if record is None:
                    await self._collect(new, run)
                elif record.phase == "active":
                    seen[run.id] = run
                else:
                    self._rechecked(record, run)
        await self._take_new(new)
        await self._finish(self._compare(seen))
        if newest is not None:
            self._runs.watermark = max(watermark, newest)
        return frozenset(seen)  # the tracked active runs it showed

    async def _follow_active(self, seen: frozenset[str]) -> None:
        """Tracked runs `_discover` did not just see (older than its window, or vanished): list the
        active ones, GET those that left that set to learn how they ended."""
        followed = [r for r in self._runs.runs.values() if r.phase in ("active", "expired") and r.id not in seen]
        if not followed:
            return
        listed: dict[str, Run] = {}
        async with self._crawl(active=True) as runs:
            async for raw in runs:
                run = self._read(records.RUN, raw)
                if run is not None:
                    listed[run.id] = run
        # active runs we do not know: visible late. Older than what pruning forgets, it is one we
        # counted and forgot that Letta still shows active (a lagging status): not new.
        prune_floor = (self._runs.watermark or 0.0) - PRUNE_AFTER
        untracked = [
            r for r in listed.values() if r.id not in self._runs.runs and r.created_at.timestamp() >= prune_floor
        ]
        finished = self._compare(listed)
        await self._take_new(untracked)
        ready = {run.id for run in finished}
        gone = [r for r in followed if r.id not in ready and (r.id not in listed or not r.pending)]
        fetched = await asyncio.gather(*(self._fetch_run(r.id) for r in gone))
        for record, run in zip(gone, fetched, strict=True):
            if run is None:
                continue
            if record.phase == "expired":
                if run.terminal:
                    self._runs.status_changed(record.id, _outcome(run))
            elif run.terminal:
                finished.append(run)
        await self._finish(finished)

    def _compare(self, listed: Mapping[str, Run]) -> list[Run]:
        """Take tracked runs' current status from a listing; returns those it shows finished
        (Letta's lagging status included: terminal by its stop reason)."""
        finished: list[Run] = []
        for run in listed.values():
            record = self._runs.get(run.id)
            if record is None or record.phase != "active":
                continue
            if run.terminal:
                finished.append(run)
            else:
                self._runs.observe(run)
        return finished

    async def _recheck(self) -> None:
        due = self._runs.rechecks_due(self._clock())
        fetched = await asyncio.gather(*(self._fetch_run(r.id) for r in due))
        for record, run in zip(due, fetched, strict=True):
            if run is not None:
                self._rechecked(record, run)

    def _rechecked(self, record: RunRecord, run: Run) -> None:
        """A re-check's answer (a GET, or free from a listing): count a change of the terminal
        status; when due, schedule the next re-check at twice the interval."""
        changed = run.terminal and run.status != record.counted_status
        if changed:
            self._runs.status_changed(record.id, _outcome(run))
        now = self._clock()
        if not changed and record.recheck_at is not None and record.recheck_at > now:
            return
        interval = (record.recheck_interval or self._settings.first_recheck) * 2
        keep = interval <= self._settings.recheck_window and record.counted_status in RECHECK_STATUSES
        self._runs.recheck(record.id, *((now + interval, interval) if keep else (None, None)))

    async def _expire(self) -> None:
        """Report runs active for too long as expired; their steps so far still join Letta's trace."""
        now = self.now()
        due = self._runs.overdue(now - self._settings.expire_after)
        runs = [Run(id=r.id, status=r.status, created_at=datetime.fromtimestamp(r.created_at, UTC)) for r in due]
        details = await asyncio.gather(
            *(self._details.fetch(run, last_try=True) for run in runs), return_exceptions=True
        )
        for record, run, result in zip(due, runs, details, strict=True):
            finished = result if isinstance(result, FinishedRun) else FinishedRun(run=run, status="expired")
            self._runs.expired(finished.model_copy(update={"status": "expired"}))
            log.warning("run expired", extra={"run_id": record.id, "age_seconds": now - record.created_at})

    # -- finishing --------------------------------------------------------------------------------

    async def _take_new(self, runs: list[Run]) -> None:
        """Runs seen for the first time: created, then finished or tracked."""
        self._taken += len(runs)
        self._runs.created(runs)
        await self._finish([run for run in runs if run.terminal])

    async def _finish(self, runs: list[Run]) -> None:
        runs = self._runs.unfinished(runs)
        if self._agent_names:
            await self._details.know_agents(runs)
        attempts = self._settings.detail_attempts
        results = await asyncio.gather(
            *(self._details.fetch(run, self._runs.runs[run.id].attempts + 1 >= attempts) for run in runs),
            return_exceptions=True,
        )
        for run, result in zip(runs, results, strict=True):
            if isinstance(result, FinishedRun):
                self._runs.finished(result)
                if run.status in RECHECK_STATUSES:
                    first = self._settings.first_recheck
                    self._runs.recheck(run.id, self._clock() + first, first)
                log.debug("run finished", extra={"run_id": run.id, "status": run.status})
            elif isinstance(result, LettaError):
                self._runs.retry_later(run)  # terminal: retried next poll via _follow_active
                log.warning(
                    "run details unavailable, will retry",
                    extra={"run_id": run.id, "error": str(result), "attempt": self._runs.runs[run.id].attempts},
                )
            else:
                raise result

    # -- reading ----------------------------------------------------------------------------------

    async def _fetch_run(self, run_id: str) -> Run | None:
        """GET one run; None when it is gone (deleted: forgotten) or unreadable (retried next poll).

        One run's failure must not hold up the others, so errors stop here; the request metrics
        and the run's next attempt carry them."""
        try:
            raw = await self._client.run(run_id)
        except LettaError as exc:
            if exc.status == 404:
                self._problems.report("run_not_found", run_id, "run disappeared (deleted?) before it was counted")
                self._runs.forget(run_id)
            else:
                log.debug("run not readable this poll", extra={"run_id": run_id, "error": str(exc)})
            return None
        run = self._read(records.RUN, raw)
        return run if run is not None and run.id == run_id else None

    @contextlib.asynccontextmanager
    async def _crawl(self, **filters: Any) -> AsyncIterator[AsyncGenerator[dict[str, Any], None]]:
        """The client's newest-first iterator, closed properly when the caller stops early."""
        async with contextlib.aclosing(self._client.runs_newest_first(self._settings.page_size, **filters)) as it:
            yield it

    def _paging_time(self, raw: Any) -> float | None:
        """A listed run's creation time for paging; None (reported) when unusable. A run stamped
        ahead of Letta's own clock (a writer with a skewed clock) is still counted, but cannot move
        the watermark ahead of time, which would hide the runs created after it."""
        created = records.created_at(raw)
        if created is None:
            self._read(records.RUN, raw)
            return None
        now = self.now()
        if created > now + VISIBILITY_WINDOW:
            self._problems.report(
                "future_timestamp", str(raw.get("id")), f"created {created - now:.0f} s in the future"
            )
        return min(created, now)


def _outcome(run: Run) -> TerminalStatus:
    """A terminal run's status, typed as such (callers have checked `run.terminal`)."""
    assert run.terminal, run.status
    return cast(TerminalStatus, run.status)
