"""Event streams of behest and agent-sdk runs, as NDJSON lines, with the ground truth an exporter should count.

For the demo (`EventStream.due`: post lines live as time passes), the ingest and Redis tests and the
benchmarks. Every run is planned whole from the seed (`behest_runs`, `agent_sdk_runs`), written
exactly as its runtime's wire shows it, and counted here from its plan by the rules of
docs/event-sources.md §3-§5, never by reading the lines back: a test comparing an exporter with
`EventTruth` checks the exporter's reading of the wire, not ours. Transport noise (delays,
reordering, duplicates, bad and unknown lines) draws from generators of its own: no knob of it
changes a single run line.
"""

from __future__ import annotations

import bisect
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

from exporter.simulator.agent_sdk_runs import AgentRun, plan_agent, write_agent
from exporter.simulator.behest_runs import BehestRun, plan_behest, write_behest
from exporter.simulator.event_wire import NS, Writer, chrono_ts, encode, host_ts, uuid4
from exporter.types import EventRuntime

Runtime = EventRuntime
LineFormat = Literal["bare", "envelope", "v0.4", "v0.9"]  # behest: bare | envelope; agent_sdk: v0.4 | v0.9
FORMATS: dict[EventRuntime, tuple[LineFormat, ...]] = {"behest": ("bare", "envelope"), "agent_sdk": ("v0.4", "v0.9")}
# seconds from when a line can be sent to its arrival: the queue publisher is quick, a store poller slower
DELAYS = {"bare": (0.001, 0.025), "envelope": (0.005, 0.2), "v0.4": (0.002, 0.05), "v0.9": (0.002, 0.05)}
MAX_DELAY_S = 0.2
# a duplicate arrives this long after the original at most: well inside --event-settle (15 s), so an
# exporter sees it as a duplicate, never as a late event of a counted run
DUPLICATE_WITHIN_S = 5.0
RESUME = 0.75  # fraction of agent-sdk runs awaiting confirmation that are resumed (by the next run)


@dataclass(frozen=True)
class EventScenario:
    """What to generate. Fractions are per run (`silent`) or per line (`duplicates`)."""

    runtime: Runtime
    seed: int = 1
    runs: int = 100
    start: float = 1_780_000_000.0  # epoch seconds of the first run's first event
    runs_per_second: float = 5.0  # run starts spread over time (exponential gaps)
    formats: tuple[LineFormat, ...] = ()  # () = ("bare",) / ("v0.4",); several: each run picks one
    silent: float = 0.15  # fraction of runs ending silently (provider error, timeout, crash): expired/none
    duplicates: float = 0.0  # fraction of lines sent twice (identical bytes), at a later arrival
    reorder_s: float = 0.0  # arrival jitter: a run's lines may arrive out of order within this many seconds
    malformed: int = 0  # extra bad lines (bad JSON, non-objects, missing run_id, unknown format)
    unknown_types: int = 0  # extra well-formed lines of a variant / type the exporter does not know

    def __post_init__(self) -> None:
        bad = [f for f in self.formats if f not in FORMATS.get(self.runtime, ())]
        if self.runtime not in FORMATS or bad:
            raise ValueError(f"runtime {self.runtime!r} has no line format {bad or self.runtime}")
        if (
            self.runs < 0
            or self.runs_per_second <= 0
            or self.reorder_s < 0
            or min(self.malformed, self.unknown_types) < 0
        ):
            raise ValueError("runs, malformed and unknown_types must be >= 0, runs_per_second > 0, reorder_s >= 0")
        if not (0 <= self.silent <= 1 and 0 <= self.duplicates <= 1):
            raise ValueError("silent and duplicates are fractions in [0, 1]")

    def line_formats(self) -> tuple[LineFormat, ...]:
        return self.formats or FORMATS[self.runtime][:1]


@dataclass(frozen=True, slots=True)
class EventLine:
    at: float  # arrival time (epoch s): when a host would send it
    data: bytes  # one NDJSON line, no trailing newline


@dataclass
class EventTruth:
    """What an exporter should count from the stream (docs/event-sources.md §4, §5)."""

    created: int = 0  # runs (== scenario.runs)
    runs: Counter[tuple[str, str]] = field(default_factory=Counter)  # (status, stop_reason)
    steps: Counter[tuple[str, str, str, str]] = field(default_factory=Counter)  # (status, stop_reason, model, provider)
    tokens: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # (type, model, provider), non-zero only
    tool_calls: Counter[tuple[str, str]] = field(default_factory=Counter)  # (tool, status)
    tool_durations: Counter[str] = field(default_factory=Counter)  # agent-sdk: calls per tool with duration_ms
    usage_missing: Counter[tuple[str, str]] = field(default_factory=Counter)  # behest steps without UsageRecorded
    duplicate_lines: int = 0
    malformed_lines: int = 0
    unknown_lines: int = 0
    valid_lines: int = 0  # distinct lines the exporter accepts
    run_ids: list[str] = field(default_factory=list)


@dataclass
class EventStream:
    lines: list[EventLine]  # sorted by arrival
    truth: EventTruth

    def due(self, since: float, until: float) -> list[bytes]:
        """The lines arriving in (since, until]: what a live demo posts at `until`."""
        lo = bisect.bisect_right(self.lines, since, key=lambda line: line.at)
        hi = bisect.bisect_right(self.lines, until, key=lambda line: line.at)
        return [line.data for line in self.lines[lo:hi]]

    def body(self) -> bytes:
        """All lines as one `POST /v1/events` body."""
        return b"".join(line.data + b"\n" for line in self.lines)


def generate(scenario: EventScenario) -> EventStream:
    """The scenario's runs, planned, written and counted: the same seed gives the same bytes."""
    sc, formats = scenario, scenario.line_formats()
    rng = random.Random(f"{sc.seed}:events:{sc.runtime}")
    seq0 = random.Random(f"{sc.seed}:host").choice((0, 1))  # the host's v0.4 seq counts from 0 or from 1
    truth, writers = EventTruth(created=sc.runs), list[Writer]()
    t, paused, resume_at = round(sc.start * NS), None, 0
    for _ in range(sc.runs):
        fmt, silent = rng.choice(formats), rng.random() < sc.silent
        w: Writer
        if sc.runtime == "behest":
            brun = plan_behest(rng, silent)
            w = write_behest(brun, fmt, rng, t)
            count_behest(truth, brun)
        else:
            resume = paused if paused is not None and rng.random() < RESUME else None
            arun, paused = plan_agent(rng, fmt, silent, resume)
            w = write_agent(arun, seq0, rng, resume_at if resume else t)
            count_agent(truth, arun)
            resume_at = w.last + int(rng.uniform(2.0, 60.0) * NS)  # the user answers the confirmation
        truth.run_ids.append(w.run_id)
        writers.append(w)
        t += int(rng.expovariate(sc.runs_per_second) * NS)
    lines = _arrivals(sc, writers, truth)
    lines.extend(_junk(sc, writers, truth, lines))
    lines.sort(key=lambda line: line.at)
    return EventStream(lines, truth)


def _arrivals(sc: EventScenario, writers: list[Writer], truth: EventTruth) -> list[EventLine]:
    """Each line arrives a little after it can be sent, in order within its run, then jittered by up to
    `reorder_s`; some are sent again later (identical bytes)."""
    arrive, dup = random.Random(f"{sc.seed}:arrival"), random.Random(f"{sc.seed}:duplicates")
    lines, jitter, p = [], arrive.random, dup.random
    for w in writers:
        lo, hi = DELAYS[w.fmt]
        base, span = 0.0, hi - lo
        for ns, data in w.lines:
            base = max(base, ns / NS + lo + span * jitter())
            at = base + jitter() * sc.reorder_s
            lines.append(EventLine(at, data))
            if p() < sc.duplicates:  # drawn whatever `duplicates` says: the same lines are picked
                lines.append(EventLine(at + dup.uniform(0.05, DUPLICATE_WITHIN_S), data))
                truth.duplicate_lines += 1
    truth.valid_lines = len(lines) - truth.duplicate_lines
    return lines


def _junk(sc: EventScenario, writers: list[Writer], truth: EventTruth, lines: list[EventLine]) -> list[EventLine]:
    """Unknown variants (of real runs, after their last event) and malformed lines, spread over the stream."""
    rng = random.Random(f"{sc.seed}:junk")
    out = []
    for _ in range(sc.unknown_types if writers else 0):
        w = rng.choice(writers)
        ns, data = w.unknown()
        out.append(EventLine(ns / NS + rng.uniform(*DELAYS[w.fmt]), data))
    truth.unknown_lines = len(out)
    lo = min((line.at for line in lines), default=sc.start)
    hi = max((line.at for line in lines), default=sc.start + 1)
    for i in range(sc.malformed):
        out.append(EventLine(rng.uniform(lo, hi), _malformed(rng, sc, i % 4, writers)))
    truth.malformed_lines = sc.malformed
    return out


def _malformed(rng: random.Random, sc: EventScenario, kind: int, writers: list[Writer]) -> bytes:
    """0: cut-off JSON; 1: not an object; 2: no run_id; 3: an object of no known format (a log line)."""
    ts = chrono_ts(int(sc.start * NS) + rng.randrange(NS))
    if kind == 0:
        data = rng.choice(rng.choice(writers).lines)[1] if writers else b'{"RunStarted":{"run_id":"x"}}'
        return data[: rng.randint(1, len(data) - 1)]
    if kind == 1:
        return rng.choice((b"[]", b'"RunStarted"', b"42", b"null", b'[{"type":"start","turn":1}]'))
    if kind == 3:
        return encode({"level": "INFO", "target": "host::events", "message": "forwarded 12 events", "time": ts})
    thread, fmt = uuid4(rng), rng.choice(sc.line_formats())
    start = {"type": "start", "thread_id": thread, "turn": 1}
    if fmt in ("bare", "envelope"):
        return encode({"TextDelta": {"delta": "Let me", "timestamp": ts}})
    if fmt == "v0.4":
        return encode({"ts": host_ts(int(sc.start * NS)), "thread_id": thread, "seq": 0, "event": start})
    envelope = {"event_id": uuid4(rng), "sequence": 0, "timestamp": ts, **start}
    return encode({"thread_id": thread, "turn": 1, "model": "gpt-4o", "provider": "openai", "envelope": envelope})


# --- truth: docs/event-sources.md §4 (behest), §5 (agent-sdk) ----------------------------------------------


def _stop_of_error(message: str, prefixes: tuple[tuple[str, str], ...]) -> str:
    return next((reason for prefix, reason in prefixes if message.startswith(prefix)), "error")


BEHEST_FAILED = (
    ("iteration limit exceeded", "max_iterations"),
    ("token budget exceeded", "token_budget"),
    ("doom loop detected", "doom_loop"),
)
SDK_ERRORS = (
    ("Maximum turns", "max_turns"),
    ("Rate limited", "rate_limited"),
    ("Server error", "server_error"),
    ("Streaming error", "stream_error"),
)
SDK_FINAL = (("LLM error", "llm_error"), ("Invalid request", "invalid_request"), *SDK_ERRORS)
FINISH = ("stop", "tool_calls", "length", "content_filter", "error")


def count_behest(truth: EventTruth, run: BehestRun) -> None:
    """§4: run by its terminal event (none: expired); a step per model call, its usage, its calls."""
    if run.end == "completed":
        stop = run.finish if isinstance(run.finish, str) and run.finish in FINISH else "other"
        status = "completed"
    elif run.end == "failed":
        status, stop = "failed", _stop_of_error(run.error or "", BEHEST_FAILED)
    else:
        status, stop = "expired", "none"
    truth.runs[status, stop] += 1
    who = (run.model, run.provider)
    for step in run.steps:
        last = step is run.steps[-1]
        step_status = "success" if step.committed else "failed" if status == "failed" else "pending"
        step_stop = "tool_calls" if step.calls else stop if last and status == "completed" else "none"
        truth.steps[step_status, step_stop, *who] += 1
        if step.usage is None:
            truth.usage_missing[who] += 1
        else:
            u = {k: v or 0 for k, v in step.usage.items()}
            read, write = u.get("cache_read_input_tokens", 0), u.get("cache_creation_input_tokens", 0)
            _tokens(
                truth,
                who,
                u["input_tokens"] + read + write,
                u["output_tokens"],
                read + u.get("cached_input_tokens", 0),
                write,
            )
        for i, call in enumerate(step.calls):
            truth.tool_calls[call.name, "unknown" if i < step.executed else "not_executed"] += 1


def count_agent(truth: EventTruth, run: AgentRun) -> None:
    """§5: run by its terminal event (or the host's final_state); a step per turn, the paused one excepted."""
    status, stop = {
        "done": ("completed", "none"),
        "confirm": ("completed", "requires_approval"),
        "refusal": ("completed", "refusal"),
        "cancelled": ("cancelled", "cancelled"),
        "error": ("failed", _stop_of_error(run.message or "", SDK_ERRORS)),
    }.get(run.end, ("expired", "none"))
    if run.end == "silent" and run.final_state:
        status, stop = "failed", _stop_of_error(run.message or "", SDK_FINAL)
    truth.runs[status, stop] += 1
    who = (run.model, run.provider)
    for turn in run.turns:
        last = turn is run.turns[-1]
        if not (last and run.end == "confirm"):  # the paused turn ends (and is counted) in the resume
            closed = not last or turn.usage is not None or run.end == "done"
            turn_status = "success" if closed else {"failed": "failed", "cancelled": "cancelled"}.get(status, "pending")
            truth.steps[turn_status, "tool_use" if turn.tools else "none", *who] += 1
        for tool in turn.tools:
            truth.tool_calls[tool.name, _tool_status(tool.result, tool.confirm)] += 1
            if tool.result is not None and tool.result["duration_ms"] is not None:
                truth.tool_durations[tool.name] += 1
    usages = [turn.usage for turn in run.turns if turn.usage is not None]
    # 0.4.x: last turn = total_usage - the earlier turns, so the run's tokens are the total; but a resume
    # from turn 2 or later carries the paused run's earlier turns in its total: its last turn is unknown
    if run.fmt == "v0.4" and run.total is not None and run.turns and run.turns[0].number == 1:
        usages = [run.total]
    for u in usages:
        _tokens(
            truth,
            who,
            u["input_tokens"],
            u["output_tokens"],
            u.get("cached_input_tokens", 0),
            u.get("cache_creation_input_tokens", 0),
        )


def _tool_status(result: dict[str, object] | None, confirm: str | None) -> str:
    if result is None:
        return "unknown" if confirm is None else "awaiting_confirmation"
    output = str(result["output"])
    return (
        "success"
        if result["success"]
        else "blocked"
        if output.startswith("Blocked:")
        else "rejected"
        if output.startswith("Rejected:")
        else "error"
    )


def _tokens(truth: EventTruth, who: tuple[str, str], inp: int, out: int, cached: int, write: int) -> None:
    for kind, n in (("input", inp), ("output", out), ("cached_input", cached), ("cache_write", write)):
        if n:
            truth.tokens[kind, *who] += n
