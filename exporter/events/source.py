"""A runtime's stored events → its lifecycle: runs created, finished once settled, silent ones expired.

The event ways in only store events; this source is what a `PollLoop` polls, so runs of event
runtimes are decided, counted and committed exactly like Letta's (docs/event-sources.md §3).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence

from exporter.events import agent_sdk, behest
from exporter.events.timeline import Timed, at
from exporter.lifecycle import RunLifecycle
from exporter.metrics import ExporterMetrics
from exporter.model import FinishedRun, Run
from exporter.state import EventRun, StateStore
from exporter.types import Clock, EventRuntime

log = logging.getLogger(__name__)
Fold = Callable[[str, Sequence[Timed], bool], FinishedRun]
FOLDS: dict[EventRuntime, Fold] = {"behest": behest.fold, "agent_sdk": agent_sdk.fold}
CHUNK = 500  # runs counted between commits while a backlog is swept


class EventSource:
    def __init__(
        self,
        runtime: EventRuntime,
        store: StateStore,
        lifecycle: RunLifecycle,
        metrics: ExporterMetrics,
        *,
        settle: float = 15.0,
        idle_expire: float = 900.0,
        clock: Clock = time.time,
    ) -> None:
        self._runtime = runtime
        self._store = store
        self._lifecycle = lifecycle
        self._metrics = metrics
        self._settle = settle
        self._idle_expire = idle_expire
        self._retention = max(3600.0, 4 * idle_expire)  # how long a counted run is known, for dedupe
        self._clock = clock
        self._fold = FOLDS[runtime]

    def now(self) -> float:
        return self._clock()

    async def poll(self, checkpoint: Callable[[], None]) -> str | None:
        """Never fails: the events are already in the state file."""
        now, decided = self._clock(), 0
        for row in self._store.event_runs(self._runtime):
            record = self._lifecycle.get(row.run_id)
            if record is None:
                self._lifecycle.created(
                    [Run(id=row.run_id, status="running", created_at=at(int(row.first_arrival * 1e9)))]
                )
            elif record.phase != "active":
                self._late(row)
                continue
            quiet = now - row.last_arrival
            if row.terminal and quiet >= self._settle:
                self._lifecycle.finished(self._folded(row, expired=False))
            elif quiet >= self._idle_expire:
                self._lifecycle.expired(self._folded(row, expired=True))
            else:
                continue
            decided += 1
            if decided % CHUNK == 0:
                checkpoint()
        self._lifecycle.prune(now - self._retention)
        return None

    def _events(self, run_id: str) -> list[Timed]:
        return [Timed(ts, kind, json.loads(data)) for ts, _seq, kind, data in self._store.run_events(run_id)]

    def _folded(self, row: EventRun, expired: bool) -> FinishedRun:
        return self._fold(row.run_id.partition(":")[2], self._events(row.run_id), expired)

    def _late(self, row: EventRun) -> None:
        """Events of a counted run: dropped; a terminal one ends an expired run after all (a
        status change, never a recount)."""
        events = self._events(row.run_id)
        self._metrics.late_events.labels(self._runtime).inc(len(events))
        record = self._lifecycle.get(row.run_id)
        if record is not None and record.phase == "expired" and row.terminal and events:
            after = self._fold(row.run_id.partition(":")[2], events, False).status
            if after != "expired":
                self._lifecycle.status_changed(row.run_id, after)
        log.debug("late events dropped", extra={"run_id": row.run_id, "events": len(events)})
        self._lifecycle.discard_late(row.run_id)
