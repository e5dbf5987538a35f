"""Event lines in, committed to the state file, counted by outcome: the one path every way in takes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


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
