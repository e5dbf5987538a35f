"""A finished run's details: its steps, their timings and, where the list had none, its duration.

One run's details take one request for its steps, one per finished step for step timings (when
on) and one for run metrics when the listing carried no duration. The independent ones go out
together — steps with run metrics, then every step's timings at once — so a run costs two round
trips however many steps it has; the client's adaptive limit bounds what is in flight. A 404
means "not there" (a deleted run, a step Letta wrote no metrics for); any other failure
propagates so the poller retries the run next poll — unless this is its last try, when the run
is counted with what could be read.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Iterable
from typing import Any, TypeVar, cast

from exporter.letta import records
from exporter.letta.client import LettaClient, LettaError
from exporter.model import FinishedRun, Run, StepMetrics
from exporter.types import Clock, TerminalStatus

log = logging.getLogger(__name__)

AGENT_NAMES_TTL = 300.0  # seconds between agent listings, only when an unknown agent shows up
T = TypeVar("T")


class RunDetails:
    def __init__(self, client: LettaClient, read: records.Reading, step_timings: bool, clock: Clock) -> None:
        self._client = client
        self._read = read
        self._step_timings = step_timings
        self._clock = clock
        self._agent_names: dict[str, str] = {}
        self._agent_names_at = -math.inf

    async def know_agents(self, runs: Iterable[Run]) -> None:
        """Span names want agent names: list agents when an unknown one shows up, at most every
        AGENT_NAMES_TTL, never failing a poll."""
        if all(r.agent_id in self._agent_names for r in runs if r.agent_id):
            return
        if self._clock() - self._agent_names_at < AGENT_NAMES_TTL:
            return
        self._agent_names_at = self._clock()
        try:
            self._agent_names = await self._client.agent_names()
        except LettaError as exc:
            log.debug("agent names unavailable; spans use agent ids", extra={"error": str(exc)})

    async def fetch(self, run: Run, last_try: bool) -> FinishedRun:
        """The run with its details, counted as `run.status` (a terminal status)."""
        raw_metrics: dict[str, Any] | None = None
        if run.total_duration_ns is not None:  # the listing's duration beats run metrics: not asked for
            raw_steps = await _optional(self._client.run_steps(run.id), last_try, [])
        else:
            raw_steps, raw_metrics = await asyncio.gather(
                _optional(self._client.run_steps(run.id), last_try, []),
                _optional(self._client.run_metrics(run.id), last_try, None),
            )
        steps = tuple(s for s in (self._read(records.STEP, raw) for raw in raw_steps) if s)
        run_metrics = self._read(records.RUN_METRICS, raw_metrics) if raw_metrics is not None else None
        timings: dict[str, StepMetrics] = {}
        if self._step_timings:
            # a pending step never finished (a cancelled stream): Letta writes no metrics for it
            timed = [step for step in steps if step.status != "pending"]
            answers = await _together(*(_optional(self._client.step_metrics(s.id), last_try, None) for s in timed))
            for step, raw in zip(timed, answers, strict=True):
                parsed = self._read(records.STEP_METRICS, raw) if raw is not None else None
                if parsed is not None:
                    timings[step.id] = parsed
        return FinishedRun(
            run=run,
            status=cast(TerminalStatus, run.status) if run.terminal else "expired",
            steps=steps,
            step_metrics=timings,
            run_metrics=run_metrics,
            agent_name=self._agent_names.get(run.agent_id or ""),
        )


async def _together(*requests: Awaitable[T]) -> list[T]:
    """All of `requests` at once; the first failure is raised once every one has ended (none is
    left running, none's failure goes unseen)."""
    results = await asyncio.gather(*requests, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return cast(list[T], results)


async def _optional(request: Awaitable[T], last_try: bool, default: T) -> T:
    """404 means "not there" (deleted run, step without metrics); other failures retry later."""
    try:
        return await request
    except LettaError as exc:
        if exc.status == 404 or last_try:
            return default
        raise
