"""SQLite state: what makes counting exactly-once survive a restart or a `kill -9`.

Everything a poll decides — new runs seen, runs counted, the cumulative metric values that
counting produced, the listing watermark — is written in one transaction at the end of the poll.
A crash before the commit loses the whole poll, which the next process simply redoes; a crash
after it loses nothing. The store stays bounded: `runs` holds tracked (active) runs plus the
recently finished ones still needed for de-duplication and status re-checks. Runs of event
runtimes keep their events here until they are counted (`events`, `event_runs`): an event is
stored once under its identity, and a run's events go in the same transaction that counts it.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import NamedTuple

from exporter.lifecycle import Decisions, RunRecord

SCHEMA_VERSION = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    status TEXT NOT NULL,
    phase TEXT NOT NULL,
    counted_status TEXT,
    recheck_at REAL,
    recheck_interval REAL,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS exports (run_id TEXT PRIMARY KEY, payload TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    key TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    ts_ns INTEGER NOT NULL,
    seq INTEGER,
    type TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_run ON events (run_id);
CREATE TABLE IF NOT EXISTS event_runs (
    run_id TEXT PRIMARY KEY,
    first_ns INTEGER NOT NULL,
    first_arrival REAL NOT NULL,
    last_arrival REAL NOT NULL,
    terminal INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS series (
    metric TEXT NOT NULL,
    labels TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (metric, labels)
);
"""


class StateError(RuntimeError):
    """The state file cannot be used; the message says which file and what to do."""


@dataclass
class SavedState:
    """What the state file held when the process started."""

    watermark: float | None
    runs: dict[str, RunRecord]
    series: list[tuple[str, tuple[str, ...], object]]


class StoredEvent(NamedTuple):
    key: str  # "<runtime>:<identity>": a resend is ignored
    run_id: str  # the lifecycle's run id, "<runtime>:<run id>"
    ts_ns: int
    seq: int | None
    type: str
    data: str  # JSON
    terminal: bool


class EventRun(NamedTuple):
    """A run with stored events: its first event time, when its first and last events arrived
    (the exporter's clock), whether one of them ends it."""

    run_id: str
    first_ns: int
    first_arrival: float
    last_arrival: float
    terminal: bool


class StateStore:
    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()  # the poller and the span-delivery thread share the connection
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL" if path != ":memory:" else "PRAGMA journal_mode=MEMORY")
            self._db.execute("PRAGMA synchronous=NORMAL")
            check = self._db.execute("PRAGMA quick_check").fetchone()
            if check is None or check[0] != "ok":
                raise sqlite3.DatabaseError(f"integrity check failed: {check}")
            self._db.executescript(_SCHEMA)
            version = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        except sqlite3.DatabaseError as exc:
            raise StateError(
                f"state file {path} is unreadable or corrupt ({exc}); move it away or pass --reset-state "
                "to start fresh (runs finished while the exporter was down are then not counted)"
            ) from None
        if version is None:
            self._db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
        elif version[0] != SCHEMA_VERSION:
            raise StateError(f"state file {path} has schema version {version[0]}, expected {SCHEMA_VERSION}")

    def load(self) -> SavedState:
        with self._lock:
            return self._load()

    def _load(self) -> SavedState:
        row = self._db.execute("SELECT value FROM meta WHERE key='watermark'").fetchone()
        runs = {
            r[0]: RunRecord(*r)
            for r in self._db.execute(
                "SELECT id, created_at, status, phase, counted_status, recheck_at, recheck_interval, attempts FROM runs"
            )
        }
        series = [
            (metric, tuple(json.loads(labels)), json.loads(value))
            for metric, labels, value in self._db.execute("SELECT metric, labels, value FROM series")
        ]
        return SavedState(float(row[0]) if row else None, runs, series)

    def commit(
        self, decisions: Decisions, series: Iterable[tuple[str, tuple[str, ...], object]], exports: bool
    ) -> None:
        """Write one poll's outcome atomically: run marks, counter values and, with `exports`, the
        finished runs whose spans are still to be delivered."""
        pending = [(f.run.id, f.model_dump_json()) for f in decisions.finished] if exports else []
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                if decisions.watermark is not None:
                    db.execute("INSERT OR REPLACE INTO meta VALUES ('watermark', ?)", (repr(decisions.watermark),))
                db.executemany(
                    "INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [astuple(record) for record in decisions.upserts],
                )
                db.executemany("DELETE FROM runs WHERE id = ?", [(run_id,) for run_id in decisions.deletes])
                db.executemany(
                    "INSERT OR REPLACE INTO series VALUES (?, ?, ?)",
                    [(m, json.dumps(list(labels)), json.dumps(v)) for m, labels, v in series],
                )
                db.executemany("INSERT OR REPLACE INTO exports VALUES (?, ?)", pending)
                # a counted (or forgotten) event run's events are done with; Letta's ids have no ":"
                ended = [(r.id,) for r in decisions.upserts if r.phase != "active" and ":" in r.id]
                ended += [(run_id,) for run_id in decisions.deletes if ":" in run_id]
                db.executemany("DELETE FROM events WHERE run_id = ?", ended)
                db.executemany("DELETE FROM event_runs WHERE run_id = ?", ended)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def first_started(self) -> float:
        """When this state file was first used (epoch s): no series it holds is older, so it is
        the start time of the cumulative OTLP points of the ledger's families."""
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('first_started', ?)", (repr(time.time()),))
            (value,) = self._db.execute("SELECT value FROM meta WHERE key='first_started'").fetchone()
        return float(value)

    def append_events(self, events: Sequence[StoredEvent], arrival: float) -> list[bool]:
        """Store what is new of `events` in one transaction; says of each whether it was (else it
        was stored before: resent)."""
        stored: list[bool] = []
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                for event in events:
                    inserted = db.execute("INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?, ?, ?)", event[:6]).rowcount
                    stored.append(bool(inserted))
                    if not inserted:
                        continue
                    db.execute(
                        "INSERT INTO event_runs VALUES (?, ?, ?, ?, ?) ON CONFLICT (run_id) DO UPDATE SET "
                        "first_ns = min(first_ns, excluded.first_ns), last_arrival = excluded.last_arrival, "
                        "terminal = max(terminal, excluded.terminal)",
                        (event.run_id, event.ts_ns, arrival, arrival, int(event.terminal)),
                    )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return stored

    def event_runs(self, runtime: str) -> list[EventRun]:
        """The runs of `runtime` with stored events."""
        with self._lock:
            query = "SELECT * FROM event_runs WHERE run_id >= ? AND run_id < ?"
            rows = self._db.execute(query, (runtime + ":", runtime + ";")).fetchall()
        return [EventRun(run_id, first, arrived, last, bool(end)) for run_id, first, arrived, last, end in rows]

    def run_events(self, run_id: str) -> list[tuple[int, int | None, str, str]]:
        """A run's stored events as (ts_ns, seq, type, data), in event time, then sequence, then arrival."""
        with self._lock:
            query = "SELECT ts_ns, seq, type, data FROM events WHERE run_id = ? ORDER BY ts_ns, seq, rowid"
            return self._db.execute(query, (run_id,)).fetchall()

    def pending_exports(self, limit: int) -> list[str]:
        """The oldest `limit` runs counted but whose spans were not confirmed delivered."""
        with self._lock:
            query = "SELECT payload FROM exports ORDER BY rowid LIMIT ?"
            return [row[0] for row in self._db.execute(query, (limit,))]

    def trim_exports(self, keep: int, skip: int) -> list[str]:
        """Drop the oldest pending exports beyond `keep`, sparing the first `skip` (in delivery);
        returns the dropped payloads. What bounds the state file through a collector outage."""
        with self._lock:
            (count,) = self._db.execute("SELECT count(*) FROM exports").fetchone()
            if count <= keep:
                return []
            query = "SELECT rowid, payload FROM exports ORDER BY rowid LIMIT ? OFFSET ?"
            rows = self._db.execute(query, (count - keep, skip)).fetchall()
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("DELETE FROM exports WHERE rowid = ?", [(rowid,) for rowid, _ in rows])
            self._db.execute("COMMIT")
            return [payload for _, payload in rows]

    def forget_exports(self, run_ids: Iterable[str]) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("DELETE FROM exports WHERE run_id = ?", [(run_id,) for run_id in run_ids])
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()
