"""Runs of agent-sdk 0.4.4/>=0.9: planned whole (`AgentRun`: turns, tools, usage, how it ended,
confirmations and resumes), then written in the host wrapper's lines, silent ends included; `events`
counts the ground truth from the plan."""

from __future__ import annotations

import random
from typing import Any, NamedTuple

from exporter.simulator import event_wire as content
from exporter.simulator.event_wire import (
    NS,
    Clock,
    Writer,
    arguments,
    chunks,
    encode,
    host_ts,
    log_uniform,
    time_ts,
    token,
    uuid4,
)

SDK_MODELS = (("claude-3-5-haiku-20241022", "anthropic"), ("gpt-4o", "openai"), ("gemini-2.0-flash", "gemini"))


class AgentTool(NamedTuple):
    id: str
    name: str
    input: dict[str, Any]  # keys sorted: agent-sdk's serde_json has no preserve_order
    started: bool  # tool_call_start written (a resume's confirmed call had its start in the paused run)
    result: dict[str, Any] | None  # tool_call_end.result; None: no end
    confirm: str | None  # tool_requires_confirmation.description: the run paused on this call


class AgentTurn(NamedTuple):
    number: int
    started: bool  # start written; False: the paused turn a resume finishes
    text: tuple[str, ...]  # text_delta texts (streaming)
    full: str | None  # the text event
    tools: tuple[AgentTool, ...]
    usage: dict[str, int] | None  # turn_complete.usage; None: none written


class AgentRun(NamedTuple):
    run_id: str  # minted by the host per run() call
    thread_id: str
    model: str
    provider: str
    fmt: str  # v0.4 | v0.9
    streaming: bool
    turns: tuple[AgentTurn, ...]
    end: str  # done | error | confirm | refusal | cancelled | silent
    message: str | None  # error.message, or the host's final_state message
    total: dict[str, int] | None  # done.total_usage
    final_state: bool  # the host writes a final_state line after the run's last event


class Paused(NamedTuple):
    """What a resume (`run(AgentInput::Resume)`: a new run id) carries over from the run it resumes."""

    run: AgentRun
    usage: dict[str, int]  # the paused turn's: the resume's turn_complete writes it
    total: dict[str, int]  # the paused run's total_usage, the paused turn's included (0.4.4 initialize_state)
    tool: AgentTool


def _result(rng: random.Random, outcome: str) -> dict[str, Any]:
    """`ToolResult`: denied calls (`Blocked:`, `Rejected:`) never ran, so carry no duration."""
    ms = int(log_uniform(rng, 10, 2000))
    if outcome == "success":
        data = None if rng.random() < 0.7 else {"items": rng.randint(1, 20)}
        return {"success": True, "output": rng.choice(content.ANSWERS), "data": data, "duration_ms": ms}
    output = {
        "tool_error": f"Tool error: {rng.choice(('connection refused', 'timed out after 30s'))}",
        "failed": "Command exited with status 1",
        "blocked": f"Blocked: {rng.choice(('outside the allowed directories', 'not allowed by policy'))}",
        "rejected": f"Rejected: {rng.choice(('User rejected', 'not now'))}",
    }[outcome]
    return {"success": False, "output": output, "data": None, "duration_ms": None if output[0] in "BR" else ms}


class _Turns:
    """Builds a run's turns and its running total_usage (what `done` reports)."""

    def __init__(self, rng: random.Random, fmt: str, provider: str, streaming: bool, paused: Paused | None) -> None:
        self.rng, self.fmt, self.provider, self.streaming = rng, fmt, provider, streaming
        self.turns: list[AgentTurn] = []
        self.n = paused.run.turns[-1].number if paused else 0
        fields = ("input_tokens", "output_tokens") + (
            ("cached_input_tokens", "cache_creation_input_tokens") if fmt == "v0.9" else ()
        )
        self.total = dict(paused.total) if paused else dict.fromkeys(fields, 0)

    def usage(self) -> dict[str, int]:
        rng = self.rng
        inp, out = 1200 + 500 * self.n + rng.randint(0, 3000), rng.randint(15, 700)
        usage = {"input_tokens": inp, "output_tokens": out}
        if self.fmt == "v0.9":  # both cache fields are parts of input_tokens at >= 0.9
            cached = write = 0
            if self.provider == "anthropic":
                cached = rng.randint(0, inp * 3 // 4) if rng.random() < 0.5 else 0
                write = rng.randint(0, (inp - cached) // 3) if rng.random() < 0.4 else 0
            elif self.provider == "openai" and rng.random() < 0.5:
                cached = 128 * rng.randint(1, inp // 128)
            elif rng.random() < 0.2:
                cached = rng.randint(1, inp // 2)
            usage |= {"cached_input_tokens": cached, "cache_creation_input_tokens": write}
        for k, v in usage.items():
            self.total[k] += v
        return usage

    def tool(self, name: str | None = None) -> AgentTool:
        rng = self.rng
        name = name or rng.choice(list(content.TOOLS))
        if self.provider == "anthropic":
            cid = f"toolu_01{token(rng, 22)}"
        else:
            cid = f"call_{token(rng, 24)}" if self.provider == "openai" else uuid4(rng)
        outcome = rng.choices(("success", "tool_error", "failed", "blocked"), (0.84, 0.07, 0.04, 0.05))[0]
        return AgentTool(cid, name, dict(sorted(arguments(rng, name).items())), True, _result(rng, outcome), None)

    def pieces(self, text: str | None) -> tuple[str, ...]:
        return chunks(self.rng, text, self.rng.randint(2, 12)) if self.streaming and text else ()

    def closed(self, ntools: int, answer: bool = True) -> None:
        """A finished turn: turn_complete, except 0.4.x's turns without tools (the last: `done` has it)."""
        self.n += 1
        tools = tuple(self.tool() for _ in range(ntools))
        if tools:
            text = self.rng.choice(content.PREAMBLES) if self.rng.random() < 0.5 else None
        else:
            text = self.rng.choice(content.ANSWERS) if answer else None
        usage = self.usage()
        emitted = usage if tools or self.fmt == "v0.9" else None
        self.turns.append(AgentTurn(self.n, True, self.pieces(text), text, tools, emitted))

    def tool_turns(self, n: int) -> None:
        for _ in range(n):
            self.closed(self.rng.choices((1, 2, 3), (0.7, 0.22, 0.08))[0])

    def open(self, stream: bool, tool: bool = False) -> None:
        """A turn cut short: its start and maybe part of its text stream, or a call still running."""
        self.n += 1
        pieces = self.pieces(self.rng.choice(content.ANSWERS)) if stream else ()
        text, full, tools = pieces[: self.rng.randint(0, len(pieces))], None, tuple[AgentTool, ...]()
        if tool:
            full = self.rng.choice(content.PREAMBLES)
            text, tools = self.pieces(full), (self.tool()._replace(result=None),)
        self.turns.append(AgentTurn(self.n, True, text, full, tools, None))

    def paused(self) -> tuple[dict[str, int], AgentTool]:
        """The turn that asks for confirmation: calls before it ran, the Confirm-tier one waits."""
        self.n += 1
        tools = [self.tool() for _ in range(self.rng.choice((0, 0, 1)))]
        name = self.rng.choice(("bash", "send_email"))
        waiting = self.tool(name)._replace(result=None, confirm=f"{content.TOOLS[name][0]} needs your approval")
        text = self.rng.choice(content.PREAMBLES)
        usage = self.usage()  # added to total_usage before the tools ran; written only by the resume
        self.turns.append(AgentTurn(self.n, True, self.pieces(text), text, (*tools, waiting), None))
        return usage, waiting


OUTCOMES = ("done", "confirm", "max_turns", "rate", "server", "refusal", "cancelled")
SILENT_ERRORS = (  # how a host's final_state names what run() returned after a silent LLM failure
    "LLM error: connection reset",
    "Invalid request: max_tokens: 16384 > 8192, which is the maximum allowed",
    "Streaming error: unexpected end of stream",
)


def plan_agent(
    rng: random.Random, fmt: str, silent: bool, paused: Paused | None = None
) -> tuple[AgentRun, Paused | None]:
    """A run() call; with ``paused``, the resume of that run. Returns the run and, if it paused, what to resume."""
    if paused:
        p = paused.run
        thread_id, model, provider, fmt, streaming = p.thread_id, p.model, p.provider, p.fmt, p.streaming
        outcome = "silent" if silent else "done"
    else:
        thread_id, (model, provider) = uuid4(rng), rng.choices(SDK_MODELS, (0.45, 0.35, 0.2))[0]
        streaming = rng.random() < 0.7
        outcome = "silent" if silent else rng.choices(OUTCOMES, (0.8, 0.07, 0.03, 0.03, 0.02, 0.025, 0.025))[0]
        if fmt == "v0.4" and outcome in ("refusal", "cancelled"):  # neither exists at 0.4.x
            outcome = "done"
    t, message, pause = _Turns(rng, fmt, provider, streaming, paused), None, None
    if paused:  # the confirmed call's end and the paused turn's turn_complete, no start
        tool = paused.tool._replace(
            started=False, result=_result(rng, rng.choices(("success", "rejected"), (0.8, 0.2))[0])
        )
        t.turns.append(AgentTurn(t.n, False, (), None, (tool._replace(confirm=None),), paused.usage))
    k = rng.choices((0, 1, 2, 3), (0.35, 0.35, 0.2, 0.1))[0]
    t.tool_turns(10 if outcome == "max_turns" else min(k, 1) if paused else k if outcome == "done" else min(k, 2))
    if outcome in ("done", "refusal"):
        t.closed(0, answer=outcome == "done")
    elif outcome == "confirm":
        usage, waiting = t.paused()
        pause = usage, dict(t.total), waiting
    elif outcome == "max_turns":  # checked before start of turn 11
        message = "Maximum turns (10) reached"
    elif outcome in ("rate", "server"):
        t.open(stream=False)
        reason = rng.choice(("503 Service Unavailable", "overloaded_error: Overloaded"))
        message = "Rate limited after 5 retries" if outcome == "rate" else f"Server error after 5 retries: {reason}"
    else:  # cancelled, or an LLM error that run() returns without any event (silent)
        t.open(stream=True, tool=outcome == "cancelled" and rng.random() < 0.4)
    end = "error" if message else outcome
    final_state = end in ("error", "silent") and rng.random() < 0.35
    if end == "silent" and final_state:
        message = rng.choices(SILENT_ERRORS, (0.7, 0.15, 0.15))[0]
    total = dict(t.total) if end == "done" else None
    run = AgentRun(
        uuid4(rng), thread_id, model, provider, fmt, streaming, tuple(t.turns), end, message, total, final_state
    )
    return run, (Paused(run, *pause) if pause else None)


class AgentWriter(Writer):
    """agent-sdk events in the host's wrapper: v0.4 `{"ts", …, "event"}`, v0.9 `{…, "envelope"}` (§2.4)."""

    def __init__(self, run: AgentRun, seq0: int, rng: random.Random) -> None:
        super().__init__(run.fmt, run.run_id, rng)
        self.thread_id, self.model, self.provider = run.thread_id, run.model, run.provider
        self.seq, self.turn = (seq0 if run.fmt == "v0.4" else 0), 1

    def wrap(self, event: dict[str, Any], ns: int) -> dict[str, Any]:
        self.seq += 1
        if self.fmt == "v0.4":
            head = {"ts": host_ts(ns), "thread_id": self.thread_id, "run_id": self.run_id, "seq": self.seq - 1}
            return head | {"model": self.model, "provider": self.provider, "event": event}
        envelope = {"event_id": uuid4(self.rng), "sequence": self.seq - 1, "timestamp": time_ts(ns), **event}
        head = {"thread_id": self.thread_id, "turn": self.turn, "run_id": self.run_id, "model": self.model}
        return head | {"provider": self.provider, "envelope": envelope}

    def event(self, event: dict[str, Any], ns: int) -> None:
        self.put(ns, self.wrap(event, ns))

    def final_state(self, message: str, recoverable: bool, ns: int) -> None:
        state = {"kind": "error", "message": message, "recoverable": recoverable}
        self.put(ns, {"ts": host_ts(ns), "thread_id": self.thread_id, "run_id": self.run_id, "final_state": state})

    def unknown(self) -> tuple[int, bytes]:
        self.last += self.rng.randint(NS // 1000, NS // 20)
        return self.last, encode(self.wrap({"type": "guardrail_triggered", "rule": "pii_email"}, self.last))


def write_agent(run: AgentRun, seq0: int, rng: random.Random, t0: int) -> AgentWriter:
    """The run's events as the host drains them (docs/event-sources.md §5; agent_loop.rs at 0.4.4, turn.rs at 0.9)."""
    c, w, v09 = Clock(t0), AgentWriter(run, seq0, rng), run.fmt == "v0.9"
    first = run.turns[0].tools[0].result if not run.turns[0].started else None
    pre = (first or {}).get("duration_ms") or 0  # a resume runs the confirmed call before its first event
    mid, thinking = "", tuple[str, ...]()
    for turn in run.turns:
        w.turn, mid, tid = turn.number, uuid4(rng), uuid4(rng)
        if turn.started:
            w.event(
                {"type": "start", "thread_id": run.thread_id, "turn": turn.number}, c.after(rng.uniform(0.002, 0.03))
            )
            if v09 and rng.random() < 0.04:  # a rate limit a retry got over
                delay = 1000 + rng.randint(0, 500)
                w.event(_retry(1, delay, "Rate limited by LLM provider"), c.after(rng.uniform(0.2, 1.0)))
                retried = {"type": "auto_retry_end", "attempt": 1, "success": True, "final_error": None}
                w.event(retried, c.after(delay / 1000 + 0.5))
            latency = log_uniform(rng, 0.3, 5.0)
            if turn.full is not None and run.provider == "anthropic" and rng.random() < 0.25:
                thinking = chunks(rng, "The user wants a short answer; check the data first.", rng.randint(2, 6))
            if run.streaming:  # 0.4.4 writes a thinking event per thinking delta
                wait = max(0.2, latency - 0.02 * (len(thinking) + len(turn.text)))
                for d in thinking:
                    event = (
                        {"type": "thinking_delta", "message_id": tid, "delta": d}
                        if v09
                        else {"type": "thinking", "message_id": tid, "text": d}
                    )
                    w.event(event, c.after(wait))
                    wait = rng.uniform(0.008, 0.035)
                if thinking and v09:
                    w.event({"type": "thinking", "message_id": tid, "text": "".join(thinking)}, c.after(0.0003))
                for d in turn.text:
                    w.event({"type": "text_delta", "message_id": mid, "delta": d}, c.after(wait))
                    wait = rng.uniform(0.008, 0.035)
            if not run.streaming or not (thinking or turn.text):
                c.after(latency)
                if thinking:
                    w.event({"type": "thinking", "message_id": tid, "text": "".join(thinking)}, c.after(0.0003))
            if turn.full is not None:
                w.event({"type": "text", "message_id": mid, "text": turn.full}, c.after(0.0005))
            thinking = ()
        for k in turn.tools:
            display, tier = content.TOOLS[k.name]
            if k.started:
                start = {"type": "tool_call_start", "id": k.id, "name": k.name, "display_name": display}
                w.event(start | {"input": k.input, "tier": tier}, c.after(rng.uniform(0.001, 0.005)))
            if k.confirm is not None:
                ask = {"type": "tool_requires_confirmation", "id": k.id, "name": k.name} | (
                    {"display_name": display} if v09 else {}
                )
                w.event(ask | {"input": k.input, "description": k.confirm}, c.after(0.0005))
            elif k.result is not None:
                took = (k.result["duration_ms"] or 0) / 1000 if k.started else 0
                end = {"type": "tool_call_end", "id": k.id, "name": k.name, "display_name": display, "result": k.result}
                w.event(end, c.after(took + rng.uniform(0.0002, 0.002)))
        if turn.usage is not None:
            w.event(
                {"type": "turn_complete", "turn": turn.number, "usage": turn.usage}, c.after(rng.uniform(0.001, 0.01))
            )
    _write_end(run, w, c, rng, t0 - int((pre / 1000 + rng.uniform(0.001, 0.02)) * NS), mid)
    return w


def _retry(attempt: int, delay_ms: int, reason: str) -> dict[str, Any]:
    return {
        "type": "auto_retry_start",
        "attempt": attempt,
        "max_attempts": 5,
        "delay_ms": delay_ms,
        "error_message": reason,
    }


def _write_end(run: AgentRun, w: AgentWriter, c: Clock, rng: random.Random, called: int, mid: str) -> None:
    """The terminal event (none for a pause or a silent end), and the host's final_state line."""
    v09, last = run.fmt == "v0.9", run.turns[-1]
    if run.end == "done":
        at = c.after(rng.uniform(0.001, 0.005))
        d = at - called  # the run() call's own clock (>= 0.10: duration_ms)
        took = (
            {"duration_ms": d // 1_000_000}
            if v09 and rng.random() < 0.5
            else {"duration": {"secs": d // NS, "nanos": d % NS}}
        )
        w.event(
            {"type": "done", "thread_id": run.thread_id, "total_turns": last.number, "total_usage": run.total} | took,
            at,
        )
    elif run.end == "error" and run.message:
        if not run.message.startswith("Maximum"):  # 5 retries, 1 s * 2^(n-1) + jitter each; 0.4.x writes none
            reason = run.message.partition(": ")[2] or "Rate limited by LLM provider"
            for attempt in range(1, 6):
                delay = 1000 * 2 ** (attempt - 1) + rng.randint(0, 250)
                if v09:
                    w.event(_retry(attempt, delay, reason), c.after(rng.uniform(0.2, 1.5)))
                c.after(delay / 1000)
            if v09:
                gave_up = {"type": "auto_retry_end", "attempt": 5, "success": False, "final_error": run.message}
                w.event(gave_up, c.after(rng.uniform(0.2, 1.5)))
        w.event({"type": "error", "message": run.message, "recoverable": True}, c.after(rng.uniform(0.0005, 0.002)))
        if run.final_state:  # >= 1 ms later: its ms `ts` does not sort before the error
            w.final_state(run.message, True, c.after(rng.uniform(0.001, 0.004)))
    elif run.end == "refusal":
        w.event(
            {"type": "refusal", "message_id": mid, "text": content.REFUSAL if rng.random() < 0.8 else None},
            c.after(0.001),
        )
    elif run.end == "cancelled":
        so_far = {"input_tokens": 0, "output_tokens": 0, "cached_input_tokens": 0, "cache_creation_input_tokens": 0}
        for t in run.turns:  # the usage of the turns so far
            for key, v in (t.usage or {}).items():
                so_far[key] += v
        w.event({"type": "cancelled", "turn": last.number, "usage": so_far}, c.after(rng.uniform(0.05, 3.0)))
    elif run.end == "silent" and run.final_state and run.message:
        w.final_state(run.message, False, c.after(log_uniform(rng, 0.05, 30.0)))
