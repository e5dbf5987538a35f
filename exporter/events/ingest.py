"""Event lines in, committed to the state file, counted by outcome: the one path every way in takes."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Protocol

from exporter.events import wire
from exporter.metrics import ExporterMetrics
from exporter.state import StateStore, StoredEvent
from exporter.types import Clock

MAX_ERRORS = 20  # line errors an answer lists; all are counted


@dataclass
class IngestResult:
    """What became of a batch of lines (the `POST /v1/events` answer)."""

    accepted: int = 0
    duplicate: int = 0
    ignored: int = 0
    rejected: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)  # (line number from 1, reason), the first few


class Sink(Protocol):
    """Where a way in hands its lines: returns only once the accepted ones are committed."""

    def accept(self, lines: list[bytes], transport: str) -> IngestResult: ...


class Ingest:
    """Parses each line, stores the new events of a batch in one transaction, counts every line."""

    def __init__(self, store: StateStore, metrics: ExporterMetrics, clock: Clock = time.time) -> None:
        self._store = store
        self._metrics = metrics
        self._clock = clock

    def accept(self, lines: list[bytes], transport: str) -> IngestResult:
        result = IngestResult()
        events: list[wire.Event] = []
        count = self._metrics.events
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue  # NDJSON's final newline, blank separators
            try:
                parsed = wire.parse(line)
            except wire.BadLine as exc:
                result.rejected += 1
                if len(result.errors) < MAX_ERRORS:
                    result.errors.append((number, str(exc)))
                count.labels("unknown", transport, "rejected").inc()
                self._metrics.problem("invalid_event", f"{transport} line {number}: {exc}")
                continue
            if isinstance(parsed, wire.Unknown):
                result.ignored += 1
                count.labels(parsed.runtime, transport, "ignored").inc()
                self._metrics.problem("unknown_event_type", f"{parsed.runtime} {parsed.type} ({transport})")
                continue
            events.append(parsed)
        rows = [
            StoredEvent(
                f"{e.runtime}:{e.key}",
                f"{e.runtime}:{e.run_id}",
                e.ts_ns,
                e.seq,
                e.type,
                json.dumps(e.data),
                e.terminal,
            )
            for e in events
        ]
        for event, stored in zip(events, self._store.append_events(rows, self._clock()), strict=True):
            if stored:
                result.accepted += 1
            else:
                result.duplicate += 1
            count.labels(event.runtime, transport, "accepted" if stored else "duplicate").inc()
        return result
