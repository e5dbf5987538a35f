"""What both runtimes' mappers share: one run's events in order, and the ids and times they derive."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class Timed:
    """One stored event of a run, as a mapper reads it (the run's are sorted by time)."""

    ts_ns: int
    type: str
    data: dict[str, Any]


def trace_id(run_id: str) -> str:
    """The run id's own 128 bits when it is a UUID (docs/event-sources.md §4), else a hash of it:
    the same run always lands in the same trace."""
    try:
        return uuid.UUID(run_id).hex
    except ValueError:
        return hashlib.sha256(f"run:{run_id}".encode()).hexdigest()[:32]


def at(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, UTC)
