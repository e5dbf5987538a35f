"""One poll: a source tells the lifecycle what it saw; its decisions are counted, committed, exported.

The order is what makes counting exactly-once: the ledger counts the poll's decisions, the state
store commits run marks, counter values and pending span exports in one transaction, and only
then are the finished runs handed to span delivery — a crash at any point loses nothing and
counts nothing twice. A poll that fails or is cancelled half-way commits what it decided; one
that reads a backlog commits chunk by chunk.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

from exporter.lifecycle import RunLifecycle
from exporter.metrics import ExporterMetrics, RuntimeMetrics
from exporter.otlp import SpanDelivery
from exporter.state import StateStore
from exporter.types import Clock

log = logging.getLogger(__name__)


class Source(Protocol):
    """Where runs come from (the Letta poller, an event source): reports what it sees to its lifecycle."""

    async def poll(self, checkpoint: Callable[[], None]) -> str | None:
        """Read the source once; None when it was reached and understood, else what failed.
        `checkpoint()` commits what was decided so far: a source reading a backlog calls it
        between bounded chunks."""
        ...

    def now(self) -> float:
        """The source's clock, which the ages of its runs are measured by."""
        ...


class PollLoop:
    def __init__(
        self,
        source: Source,
        lifecycle: RunLifecycle,
        store: StateStore,
        metrics: ExporterMetrics,
        *,
        stuck_after: float = 900.0,
        spans: SpanDelivery | None = None,
        clock: Clock = time.time,
        on_checkpoint: Callable[[], None] = lambda: None,
        runtime: RuntimeMetrics | None = None,
    ) -> None:
        """`runtime`: whose families the source's runs are counted in (Letta's by default)."""
        self.source = source
        self.lifecycle = lifecycle
        self._store = store
        self._metrics = metrics
        self._runtime = runtime or metrics.letta
        self._stuck_after = stuck_after
        self._spans = spans
        self._clock = clock
        self._on_checkpoint = on_checkpoint  # e.g. publish /metrics: a long backlog shows its progress
        self.last_error: str | None = None
        self._publish_gauges()

    async def poll(self) -> bool:
        """One poll; True when the source was reached and understood. Never raises for its faults."""
        started = time.perf_counter()
        try:
            error = await self.source.poll(self._checkpoint)
        finally:
            self._commit()
            self._publish_gauges()
            if self._runtime is self._metrics.letta:  # the poll-health gauges are about Letta
                self._metrics.poll_duration.set(time.perf_counter() - started)
        if error is not None:
            if error != self.last_error:
                log.error("poll failed", extra={"error": error})
            self.last_error = error
            return False
        if self._runtime is self._metrics.letta:
            self._metrics.last_success.set(self._clock())
        if self.last_error is not None:
            log.info("poll succeeded again")
        self.last_error = None
        log.debug("poll done", extra={"tracked": len(self.lifecycle.runs), "seconds": time.perf_counter() - started})
        return True

    def _checkpoint(self) -> None:
        self._commit()
        self._publish_gauges()
        self._on_checkpoint()

    def _commit(self) -> None:
        decisions = self.lifecycle.take()
        ledger = self._runtime.ledger
        ledger.count(decisions)
        self._store.commit(decisions, ledger.take_dirty(), exports=self._spans is not None)
        if self._spans is not None and decisions.finished:
            self._spans.submit(decisions.finished)  # only once committed: a crash can then lose none

    def _publish_gauges(self) -> None:
        now = self.source.now()
        self._runtime.set_active(self.lifecycle.summary(now, self._stuck_after), now - self._clock())
