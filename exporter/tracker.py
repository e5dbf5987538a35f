"""The poll loop's brain: which runs are new, which are active, which finished — each counted once.

Letta lists runs only by creation time, and they change state afterwards. Each poll therefore:
1. pages **new** runs newest-first down to the watermark (minus a short visibility window, since
   rows can become visible slightly out of order), counting the ids it does not know; the same
   pages show the tracked runs of that window as they are now, so most runs are seen finishing
   there, with the duration only listings carry;
2. lists the **active** runs (only while it tracks runs older than that window) and GETs each
   one that left that set, to learn how it ended;
3. re-checks recently cancelled runs a few times (from the listing while they are in it), because
   Letta can overwrite `cancelled` with `completed` (counted in
   `letta_run_terminal_status_changes_total`, never recounted);
4. counts runs active for longer than `expire_after` once as `expired`;
5. commits everything it decided in one state-store transaction.
Requests per poll thus depend on the rate of new and finishing runs, never on history: about one
list request per poll plus the steps of each finished run (and its step metrics, if enabled).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from exporter.letta import LettaClient, LettaError
from exporter.metrics import ExporterMetrics
from exporter.model import (
    TERMINAL_STATUSES,
    FinishedRun,
    Run,
    RunMetrics,
    Step,
    StepMetrics,
    parse_timestamp,
)
from exporter.otlp import SpanDelivery
from exporter.state import RunRecord, StateStore

log = logging.getLogger(__name__)

VISIBILITY_WINDOW = 30.0  # seconds of already-listed history re-read each poll
PRUNE_AFTER = 2 * VISIBILITY_WINDOW  # finished runs older than the watermark by this are forgotten
RECHECK_STATUSES = frozenset({"cancelled"})  # the terminal status Letta is known to overwrite
AGENT_NAMES_TTL = 300.0  # seconds between agent listings, only when an unknown agent shows up
_REPORTED_KEYS = 10_000

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class TrackerSettings:
    page_size: int = 100
    stuck_after: float = 900.0
    expire_after: float = 86400.0
    backfill: float = 0.0
    max_catchup: float = 86400.0
    step_timings: bool = True
    concurrency: int = 4
    recheck_window: float = 300.0
    first_recheck: float = 15.0
    detail_attempts: int = 3


class Tracker:
    def __init__(
        self,
        client: LettaClient,
        store: StateStore,
        metrics: ExporterMetrics,
        settings: TrackerSettings = TrackerSettings(),
        clock: Callable[[], float] = time.time,
        spans: SpanDelivery | None = None,
    ) -> None:
        self._client = client
        self._spans = spans
        self._exports: list[FinishedRun] = []
        self._agent_names: dict[str, str] = {}
        self._agent_names_at = -math.inf
        self._store = store
        self._metrics = metrics
        self._settings = settings
        self._clock = clock
        self._semaphore = asyncio.Semaphore(settings.concurrency)
        snapshot = store.load()
        self._watermark = snapshot.watermark
        self._runs = snapshot.runs
        metrics.ledger.restore(snapshot.series)
        self._changed: set[str] = set()
        self._deleted: set[str] = set()
        self._reported: OrderedDict[tuple[str, str], None] = OrderedDict()
        self.last_error: str | None = None
        self._publish_gauges()

    @property
    def runs(self) -> Mapping[str, RunRecord]:
        return self._runs

    @property
    def bootstrapped(self) -> bool:
        """Whether the first listing has fixed what existed before counting began."""
        return self._watermark is not None

    async def poll(self) -> bool:
        """One poll; True when Letta was reached and understood. Never raises for Letta's faults."""
        started = time.perf_counter()
        try:
            seen: frozenset[str] = frozenset()
            if self._watermark is None:
                await self._bootstrap()
            else:
                seen = await self._discover()
            await self._follow_active(seen)
            await self._recheck()
            await self._expire()
        except LettaError as exc:
            self._metrics.up.set(0)
            if exc.kind in ("malformed_json", "not_a_list", "not_an_object"):
                self._metrics.problem(exc.kind, str(exc))
            if str(exc) != self.last_error:
                log.error("poll failed", extra={"error": str(exc), "endpoint": exc.endpoint})
            self.last_error = str(exc)
            return False
        finally:
            self._prune()
            self._commit()
            self._publish_gauges()
            self._metrics.poll_duration.set(time.perf_counter() - started)
        self._metrics.up.set(1)
        self._metrics.last_success.set(self._clock())
        if self.last_error is not None:
            log.info("poll succeeded again")
        self.last_error = None
        log.debug("poll done", extra={"tracked": len(self._runs), "seconds": time.perf_counter() - started})
        return True

    # -- the five steps ---------------------------------------------------------------------------

    async def _bootstrap(self) -> None:
        """First start: remember what exists without counting it, except inside --backfill."""
        backfill_floor = self._server_now() - self._settings.backfill if self._settings.backfill > 0 else None
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
                run = self._parse(Run, raw, "invalid_run")
                if run is None:
                    continue
                if backfill_floor is not None and created >= backfill_floor:
                    new.append(run)
                else:
                    self._remember(run)
        counted = {run.id for run in new}
        async with self._crawl(active=True) as runs:
            async for raw in runs:
                if str(raw.get("id")) in self._runs or str(raw.get("id")) in counted:
                    continue
                run = self._parse(Run, raw, "invalid_run")
                if run is None:
                    continue
                created = run.created_at.timestamp()
                # created after the listing above, or inside --backfill: new, like any later run
                if (newest is not None and created > newest) or (
                    backfill_floor is not None and created >= backfill_floor
                ):
                    new.append(run)
                else:
                    self._remember(run)
        await self._take_new(new)
        self._watermark = newest if newest is not None else 0.0
        log.info(
            "started tracking",
            extra={
                "active_runs": sum(r.phase == "active" for r in self._runs.values()),
                "backfilled": len(new),
            },
        )

    async def _discover(self) -> frozenset[str]:
        """New runs since the watermark. The same listing shows the tracked runs created in the
        window with their current status (and, unlike GET, `total_duration_ns`), so those that
        finished are taken from it — no GET and no `/metrics` per run, no active listing while
        every tracked run is that young — and so are re-checks of the runs it shows."""
        assert self._watermark is not None
        floor = self._watermark - VISIBILITY_WINDOW
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
                run = self._parse(Run, raw, "invalid_run")
                if run is None:
                    continue
                if record is None:
                    new.append(run)
                elif record.phase == "active":
                    seen[run.id] = run
                else:
                    self._rechecked(record, run)
        await self._take_new(new)
        await self._finish(self._compare(seen))
        if newest is not None:
            self._watermark = max(self._watermark, newest)
        return frozenset(seen)  # the tracked active runs it showed

    async def _follow_active(self, seen: frozenset[str]) -> None:
        """Tracked runs `_discover` did not just see (older than its window, or vanished): list the
        active ones, GET those that left that set to learn how they ended."""
        followed = [r for r in self._runs.values() if r.phase in ("active", "expired") and r.id not in seen]
        if not followed:
            return
        listed: dict[str, Run] = {}
        async with self._crawl(active=True) as runs:
            async for raw in runs:
                run = self._parse(Run, raw, "invalid_run")
                if run is not None:
                    listed[run.id] = run
        # active runs we do not know: visible late. Older than what pruning forgets, it is one we
        # counted and forgot that Letta still shows active (a lagging status): not new.
        prune_floor = (self._watermark or 0.0) - PRUNE_AFTER
        untracked = [r for r in listed.values() if r.id not in self._runs and r.created_at.timestamp() >= prune_floor]
        finished = self._compare(listed)
        await self._take_new(untracked)
        ready = {run.id for run in finished}
        gone = [r for r in followed if r.id not in ready and (r.id not in listed or r.status in TERMINAL_STATUSES)]
        fetched = await asyncio.gather(*(self._fetch_run(r.id) for r in gone))
        for record, run in zip(gone, fetched, strict=True):
            if run is None:
                continue
            if record.phase == "expired":
                if run.terminal:
                    self._status_changed(record, "expired", run.status)
                    record.phase = "done"  # kept until pruned: a listing may still show it
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
            elif record.status != run.status:
                record.status = run.status
                self._changed.add(run.id)
        return finished

    async def _recheck(self) -> None:
        now = self._clock()
        due = [r for r in self._runs.values() if r.recheck_at is not None and r.recheck_at <= now]
        fetched = await asyncio.gather(*(self._fetch_run(r.id) for r in due))
        for record, run in zip(due, fetched, strict=True):
            if run is not None:
                self._rechecked(record, run)

    def _rechecked(self, record: RunRecord, run: Run) -> None:
        """A re-check's answer (a GET, or free from a listing): count a change of the terminal
        status; when due, schedule the next re-check at twice the interval."""
        changed = run.terminal and run.status != record.counted_status
        if changed:
            self._status_changed(record, record.counted_status or "none", run.status)
        now = self._clock()
        if not changed and record.recheck_at is not None and record.recheck_at > now:
            return
        interval = (record.recheck_interval or self._settings.first_recheck) * 2
        keep = interval <= self._settings.recheck_window and record.counted_status in RECHECK_STATUSES
        record.recheck_at, record.recheck_interval = (now + interval, interval) if keep else (None, None)
        self._changed.add(record.id)

    async def _expire(self) -> None:
        """Count runs active for too long once as expired; their steps so far still join Letta's trace."""
        now = self._server_now()
        oldest_allowed = now - self._settings.expire_after
        due = [
            r for r in self._runs.values()
            if r.phase == "active" and r.status not in TERMINAL_STATUSES and r.created_at < oldest_allowed
        ]  # fmt: skip
        runs = [
            Run.model_validate(
                {"id": r.id, "status": r.status, "created_at": datetime.fromtimestamp(r.created_at, UTC)}
            )
            for r in due
        ]
        details = await asyncio.gather(*(self._details(run, last_try=True) for run in runs), return_exceptions=True)
        for record, run, result in zip(due, runs, details, strict=True):
            finished = result if isinstance(result, FinishedRun) else FinishedRun(run=run, status="expired")
            self._count(finished.model_copy(update={"status": "expired"}))
            record.phase, record.counted_status = "expired", "expired"
            self._changed.add(record.id)
            log.warning("run expired", extra={"run_id": record.id, "age_seconds": now - record.created_at})

    # -- counting ---------------------------------------------------------------------------------

    async def _take_new(self, runs: list[Run]) -> None:
        """Runs seen for the first time: count them as created, then finish or track them."""
        for run in runs:
            self._metrics.ledger.inc("letta_runs_created", ())
            self._remember(run, phase="active")
        await self._finish([run for run in runs if run.terminal])

    async def _finish(self, runs: list[Run]) -> None:
        """Count each run once, even if two paths of one poll found it finished."""
        runs = list({run.id: run for run in runs if self._runs[run.id].phase == "active"}.values())
        if self._spans is not None and any(r.agent_id not in self._agent_names for r in runs if r.agent_id):
            await self._refresh_agent_names()
        results = await asyncio.gather(*(self._details(run) for run in runs), return_exceptions=True)
        for run, result in zip(runs, results, strict=True):
            record = self._runs[run.id]
            if isinstance(result, FinishedRun):
                self._count(result)
                record.phase, record.status, record.counted_status = "done", run.status, run.status
                if run.status in RECHECK_STATUSES:
                    record.recheck_at = self._clock() + self._settings.first_recheck
                    record.recheck_interval = self._settings.first_recheck
                log.debug("run finished", extra={"run_id": run.id, "status": run.status})
            elif isinstance(result, LettaError):
                record.status = run.status  # terminal: retried next poll via _follow_active
                record.attempts += 1
                log.warning(
                    "run details unavailable, will retry",
                    extra={"run_id": run.id, "error": str(result), "attempt": record.attempts},
                )
            else:
                raise result
            self._changed.add(run.id)

    async def _refresh_agent_names(self) -> None:
        """Span names want agent names; list agents at most every AGENT_NAMES_TTL, never failing a poll."""
        if self._clock() - self._agent_names_at < AGENT_NAMES_TTL:
            return
        self._agent_names_at = self._clock()
        try:
            self._agent_names = await self._client.agent_names()
        except LettaError as exc:
            log.debug("agent names unavailable; spans use agent ids", extra={"error": str(exc)})

    def _count(self, finished: FinishedRun) -> None:
        """The one place a run is counted; its spans are committed with the count."""
        self._metrics.ledger.record(finished)
        if self._spans is not None:
            self._exports.append(finished)

    async def _details(self, run: Run, last_try: bool = False) -> FinishedRun:
        """Steps and timings of a finished run; after `detail_attempts` failures, count what we have."""
        last_try = last_try or self._runs[run.id].attempts + 1 >= self._settings.detail_attempts
        async with self._semaphore:
            raw_steps = await self._optional(self._client.run_steps(run.id), last_try, [])
            steps = tuple(s for s in (self._parse(Step, raw, "invalid_step") for raw in raw_steps) if s)
            run_metrics = None
            if run.total_duration_ns is None:
                raw = await self._optional(self._client.run_metrics(run.id), last_try, None)
                run_metrics = self._parse(RunMetrics, raw, "invalid_metrics") if raw is not None else None
            timings: dict[str, StepMetrics] = {}
            if self._settings.step_timings:
                for step in steps:
                    if step.status == "pending":
                        continue  # never finished (cancelled stream): Letta writes no metrics for it
                    raw = await self._optional(self._client.step_metrics(step.id), last_try, None)
                    parsed = self._parse(StepMetrics, raw, "invalid_metrics") if raw is not None else None
                    if parsed is not None:
                        timings[step.id] = parsed
        return FinishedRun(
            run=run,
            status=run.status,
            steps=steps,
            step_metrics=timings,
            run_metrics=run_metrics,
            agent_name=self._agent_names.get(run.agent_id or ""),
        )

    async def _optional(self, request: Any, last_try: bool, default: Any) -> Any:
        """404 means "not there" (deleted run, step without metrics); other failures retry later."""
        try:
            return await request
        except LettaError as exc:
            if exc.status == 404 or last_try:
                return default
            raise

    def _status_changed(self, record: RunRecord, before: str, after: str) -> None:
        self._metrics.ledger.inc("letta_run_terminal_status_changes", (before, after))
        log.info("terminal status changed", extra={"run_id": record.id, "from": before, "to": after})
        record.counted_status = after
        self._changed.add(record.id)

    # -- bookkeeping ------------------------------------------------------------------------------

    def _remember(self, run: Run, phase: str | None = None) -> None:
        """Know a run without counting it (`done` if already finished, else tracked as `active`)."""
        phase = phase or ("done" if run.terminal else "active")
        self._runs[run.id] = RunRecord(run.id, run.created_at.timestamp(), run.status, phase)
        self._deleted.discard(run.id)
        self._changed.add(run.id)

    def _forget(self, run_id: str) -> None:
        self._runs.pop(run_id, None)
        self._changed.discard(run_id)
        self._deleted.add(run_id)

    def _prune(self) -> None:
        """Finished runs are only needed while they can still show up in the overlap or a re-check."""
        if self._watermark is None:
            return
        floor = self._watermark - PRUNE_AFTER
        for record in list(self._runs.values()):
            if record.phase == "done" and record.recheck_at is None and record.created_at < floor:
                self._forget(record.id)

    def _commit(self) -> None:
        self._store.commit(
            watermark=self._watermark,
            upserts=[self._runs[i] for i in self._changed if i in self._runs],
            deletes=list(self._deleted),
            series=self._metrics.ledger.take_dirty(),
            exports=[(f.run.id, f.model_dump_json()) for f in self._exports],
        )
        self._changed.clear()
        self._deleted.clear()
        if self._spans is not None and self._exports:
            self._spans.submit(self._exports)  # only once committed: a crash can then lose none
        self._exports = []

    def _publish_gauges(self) -> None:
        now = self._server_now()
        by_status: dict[str, int] = {}
        stuck: dict[str, int] = {}
        oldest: float | None = None
        for record in self._runs.values():
            if record.phase != "active" or record.status in TERMINAL_STATUSES:
                continue
            by_status[record.status] = by_status.get(record.status, 0) + 1
            if now - record.created_at > self._settings.stuck_after:
                stuck[record.status] = stuck.get(record.status, 0) + 1
            oldest = record.created_at if oldest is None else min(oldest, record.created_at)
        offset = self._client.clock_offset
        self._metrics.clock_offset.set(offset)
        self._metrics.set_active(by_status, stuck, None if oldest is None else oldest - offset, len(self._runs))

    async def _fetch_run(self, run_id: str) -> Run | None:
        """GET one run; None when it is gone (deleted: forgotten) or unreadable (retried next poll).

        One run's failure must not hold up the others, so errors stop here; the request metrics
        and the run's next attempt carry them."""
        try:
            raw = await self._client.run(run_id)
        except LettaError as exc:
            if exc.status == 404:
                self._report("run_not_found", run_id, "run disappeared (deleted?) before it was counted")
                self._forget(run_id)
            else:
                log.debug("run not readable this poll", extra={"run_id": run_id, "error": str(exc)})
            return None
        run = self._parse(Run, raw, "invalid_run")
        return run if run is not None and run.id == run_id else None

    @contextlib.asynccontextmanager
    async def _crawl(self, **filters: Any) -> AsyncIterator[AsyncGenerator[dict[str, Any], None]]:
        """The client's newest-first iterator, closed properly when the caller stops early."""
        async with contextlib.aclosing(self._client.runs_newest_first(self._settings.page_size, **filters)) as it:
            yield it

    def _server_now(self) -> float:
        """Now on Letta's clock, which its timestamps (ages, stuck, expiry, backfill) are measured by."""
        return self._clock() + self._client.clock_offset

    def _paging_time(self, raw: Any) -> float | None:
        """A listed run's creation time for paging; None (reported) when unusable. A run stamped
        ahead of Letta's own clock (a writer with a skewed clock) is still counted, but cannot move
        the watermark ahead of time, which would hide the runs created after it."""
        created = _created(raw)
        if created is None:
            self._parse(Run, raw, "invalid_run")
            return None
        now = self._server_now()
        if created > now + VISIBILITY_WINDOW:
            self._report("future_timestamp", str(raw.get("id")), f"created {created - now:.0f} s in the future")
        return min(created, now)

    def _parse(self, model: type[M], raw: Any, kind: str) -> M | None:
        problems: list[str] = []
        key = str(raw.get("id")) if isinstance(raw, dict) else repr(raw)[:80]
        try:
            parsed = model.model_validate(raw, context={"problems": problems})
        except ValidationError as exc:
            first = exc.errors()[0]
            self._report(kind, key, f"{'.'.join(map(str, first['loc'])) or 'record'}: {first['msg']}")
            return None
        for problem in problems:
            self._report(problem, key, f"{model.__name__} {key}")
        return parsed

    def _report(self, kind: str, key: str, context: str) -> None:
        """Count a problem once per record, however often the record is read again."""
        if (kind, key) in self._reported:
            return
        self._reported[(kind, key)] = None
        if len(self._reported) > _REPORTED_KEYS:
            self._reported.popitem(last=False)
        self._metrics.problem(kind, f"{key}: {context}")


def _created(raw: Any) -> float | None:
    if not isinstance(raw, dict):
        return None
    try:
        created = parse_timestamp(raw.get("created_at"))
    except ValueError:
        return None
    return created.timestamp() if created else None
