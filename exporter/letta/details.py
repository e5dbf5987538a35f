"""A finished run's details: its steps, their timings, its tool calls and, where the list had
none, its duration.

One run's details take one request for its steps, one per finished step for step timings (when
on), one for its messages (tool metrics on) and one for run metrics when the listing carried no
duration. The independent ones go out together — steps with messages and run metrics, then every
step's timings at once — so a run costs two round trips however many steps it has; the client's
adaptive limit bounds what is in flight. A 404
means "not there" (a deleted run, a step Letta wrote no metrics for); any other failure
propagates so the poller retries the run next poll — unless this is its last try, when the run
is counted with what could be read.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, TypeVar, cast

from exporter.letta import records
from exporter.letta.client import LettaClient, LettaError
from exporter.model import FinishedRun, Run, StepMetrics, ToolCall
from exporter.types import Clock, TerminalStatus, ToolMessagesMissing

log = logging.getLogger(__name__)

AGENT_NAMES_EVERY = 30.0  # seconds: the least time between agent listings (an unknown agent showed up)
AGENT_NAMES_TTL = 300.0  # seconds: names that label metrics are listed again this often, to see renames
T = TypeVar("T")


class RunDetails:
    def __init__(
        self,
        client: LettaClient,
        read: records.Reading,
        step_timings: bool,
        clock: Clock,
        *,
        tools: bool = False,
        on_agent_names: Callable[[Mapping[str, str]], None] | None = None,
    ) -> None:
        self._client = client
        self._read = read
        self._step_timings = step_timings
        self._tools = tools
        self._clock = clock
        self._on_agent_names = on_agent_names
        self._agent_names: dict[str, str] = {}
        self._agent_names_at = -math.inf

    async def know_agents(self, runs: Iterable[Run]) -> None:
        """Agent names for spans and `letta_agent_info`: listed when an unknown agent shows up (at
        most every AGENT_NAMES_EVERY) and, when they label metrics, every AGENT_NAMES_TTL to see
        renames; never failing a poll."""
        since = self._clock() - self._agent_names_at
        unknown = any(r.agent_id not in self._agent_names for r in runs if r.agent_id)
        stale = self._on_agent_names is not None and since >= AGENT_NAMES_TTL
        if not stale and not (unknown and since >= AGENT_NAMES_EVERY):
            return
        self._agent_names_at = self._clock()
        try:
            self._agent_names = await self._client.agent_names()
        except LettaError as exc:
            log.debug("agent names unavailable; agents go by their ids", extra={"error": str(exc)})
            return
        if self._on_agent_names is not None:
            self._on_agent_names(self._agent_names)

    async def fetch(self, run: Run, last_try: bool) -> FinishedRun:
        """The run with its details, counted as `run.status` (a terminal status)."""
        steps_request = asyncio.ensure_future(_optional(self._client.run_steps(run.id), last_try, []))
        metrics_request = asyncio.ensure_future(self._run_metrics(run, last_try))
        tools_request = asyncio.ensure_future(self._tool_calls(run, last_try))
        await _together(steps_request, metrics_request, tools_request)
        raw_steps, raw_metrics, (calls, missing) = (
            steps_request.result(),
            metrics_request.result(),
            tools_request.result(),
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
        if run.agent_id is None:  # an expired run known only by id: its steps name the agent
            run = run.model_copy(update={"agent_id": next((s.agent_id for s in steps if s.agent_id), None)})
        return FinishedRun(
            run=run,
            status=cast(TerminalStatus, run.status) if run.terminal else "expired",
            steps=steps,
            step_metrics=timings,
            run_metrics=run_metrics,
            agent_name=self._agent_names.get(run.agent_id or ""),
            tool_calls=calls,
            tool_messages_missing=missing,
        )

    async def _run_metrics(self, run: Run, last_try: bool) -> dict[str, Any] | None:
        if run.total_duration_ns is not None:  # the listing's duration beats run metrics: not asked for
            return None
        return await _optional(self._client.run_metrics(run.id), last_try, None)

    async def _tool_calls(
        self, run: Run, last_try: bool
    ) -> tuple[tuple[ToolCall, ...] | None, ToolMessagesMissing | None]:
        """The run's tool calls, or why they cannot be counted (never guessed)."""
        if not self._tools:
            return None, None
        if run.tool_messages_hidden:
            return None, "filtered"  # not asked for: the answer would leave them out
        messages = await _optional(self._client.run_messages(run.id, run.message_types is not None), last_try, None)
        if messages is None:
            return None, "unavailable"
        return self._read.tool_calls(run.id, messages), None


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
