"""Problems with what a source answers, counted once per record however often it is read again.

A source re-reads the same records poll after poll (the listing's overlap window, re-checks);
an unknown stop reason on one run must count as one problem, not one per poll. The observer
(`ExporterMetrics.problem`) counts each report in `letta_exporter_parse_errors_total{kind}` and
logs the first of each kind.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Protocol

from exporter.types import ProblemKind

REMEMBERED = 10_000  # (kind, record) pairs remembered; the oldest are forgotten first


class ProblemObserver(Protocol):
    def problem(self, kind: ProblemKind, context: str) -> None: ...


class ProblemLog:
    def __init__(self, observer: ProblemObserver) -> None:
        self._observer = observer
        self._reported: OrderedDict[tuple[ProblemKind, str], None] = OrderedDict()

    def report(self, kind: ProblemKind, key: str, context: str) -> None:
        """Count `kind` for the record `key` unless it was already counted."""
        if (kind, key) in self._reported:
            return
        self._reported[(kind, key)] = None
        if len(self._reported) > REMEMBERED:
            self._reported.popitem(last=False)
        self._observer.problem(kind, f"{key}: {context}")
