"""Runs of behest 0.3.0/0.5.9: planned whole (`BehestRun`: steps, calls, usage, how it ended), then
written as its queue publisher or event store shows them, silent ends included; `events` counts the
ground truth from the plan."""

from __future__ import annotations

import json
import random
from typing import Any, NamedTuple

from exporter.simulator.event_wire import (
    ANSWERS,
    CACHE_FIELDS,
    ENC,
    NS,
    PREAMBLES,
    REFUSAL,
    TOOLS,
    Clock,
    Writer,
    arguments,
    chrono_ts,
    chunks,
    encode,
    log_uniform,
    token,
    uuid4,
    uuid7,
)

BEHEST_MODELS = {"anthropic": "claude-sonnet-4-20250514", "openai": "gpt-4o-mini"}


class BehestWriter(Writer):
    """behest `AgentEvent`s, externally tagged: bare (queue publisher) or in `RuntimeEventEnvelope`s (event store)."""

    def __init__(self, fmt: str, run_id: str, session_id: str, rng: random.Random) -> None:
        super().__init__(fmt, run_id, rng)
        self.session_id, self.seq, self.emitted = session_id, 1, 0

    def wrap(self, variant: str, fields: dict[str, Any], ns: int) -> tuple[int, dict[str, Any]]:
        event = {variant: {"run_id": self.run_id, **fields, "timestamp": chrono_ts(ns)}}
        if self.fmt == "bare":
            return ns, event
        # the bridge appends in order, a little after the event (`emitted_at`)
        self.emitted = max(self.emitted + 1_000, ns + 100_000 + int(self.rng.random() * 2_900_000))
        self.seq += 1
        envelope = {"event_id": uuid7(self.rng, self.emitted), "seq": self.seq - 1, "run_id": self.run_id}
        return self.emitted, envelope | {
            "session_id": self.session_id,
            "event": event,
            "emitted_at": chrono_ts(self.emitted),
        }

    def event(self, variant: str, fields: dict[str, Any], ns: int, copies: int = 1) -> None:
        for _ in range(copies if self.fmt == "envelope" else 1):
            self.put(*self.wrap(variant, fields, ns))

    def unknown(self) -> tuple[int, bytes]:
        self.last, obj = self.wrap(
            "GuardrailTriggered", {"rule": "pii_email"}, self.last + self.rng.randint(NS // 1000, NS // 20)
        )
        return self.last, encode(obj)


class BehestCall(NamedTuple):
    id: str
    name: str
    arguments: dict[str, Any]
    deltas: tuple[str, ...]  # ToolCallDelta texts (streaming only)
    completed: bool  # a ToolCallCompleted is written


class BehestStep(NamedTuple):
    iteration: int
    text: tuple[str, ...]  # TextDelta texts
    calls: tuple[BehestCall, ...]  # in the order they appear (ToolCallStarted or ToolCallCompleted)
    usage: dict[str, int | None] | None  # UsageRecorded.usage as written; None: none written
    committed: bool  # AssistantMessageCommitted written: the model call finished
    executed: int  # ToolMessageCommitted written: the first `executed` calls ran


class BehestRun(NamedTuple):
    run_id: str
    session_id: str
    provider: str
    model: str
    streaming: bool
    steps: tuple[BehestStep, ...]
    end: str  # completed | failed | silent
    finish: str | dict[str, str] | None  # RunCompleted.finish_reason as written
    error: str | None  # RunFailed.error
    doom: str | None  # DoomLoopDetected.description


class _BehestSteps:
    """Builds a run's steps: usage, text and tool calls the way its provider and mode report them."""

    def __init__(self, rng: random.Random, provider: str, streaming: bool) -> None:
        self.rng, self.provider, self.streaming = rng, provider, streaming
        self.usage = provider == "anthropic" or not streaming  # OpenAI streaming never reports usage
        self.v059 = rng.random() < 0.4  # 0.5.9 adds three nullable cache fields to TokenUsage
        self.steps: list[BehestStep] = []
        self.used = 0

    def call(self, name: str, args: dict[str, Any]) -> BehestCall:
        rng, anthropic = self.rng, self.provider == "anthropic"
        cid = f"toolu_01{token(rng, 22)}" if anthropic else f"call_{token(rng, 24)}"
        if not self.streaming:
            return BehestCall(cid, name, args, (), True)
        raw = json.dumps(args) if anthropic else ENC.encode(args)  # Anthropic's partial JSON has spaces
        deltas = ("", *chunks(rng, raw, rng.randint(2, 5))) if anthropic else chunks(rng, raw, rng.randint(2, 5))
        return BehestCall(cid, name, args, deltas, anthropic)  # the OpenAI adapter never completes a call

    def _nullable(self, hi: int) -> int | None:
        u = self.rng.random()
        return None if u < 0.15 else 0 if u < 0.5 else self.rng.randint(1, hi)

    def _usage(self) -> dict[str, int | None] | None:
        if not self.usage:
            return None
        rng = self.rng
        inp, out = 900 + 450 * len(self.steps) + rng.randint(0, 2500), rng.randint(12, 600)
        self.used += inp + out
        usage: dict[str, int | None] = {"input_tokens": inp, "output_tokens": out, "total_tokens": inp + out}
        if self.v059 and self.provider == "anthropic":  # input_tokens excludes Anthropic's cache reads
            usage |= dict(zip(CACHE_FIELDS, (self._nullable(1500), self._nullable(6000), None), strict=True))
        elif self.v059:  # OpenAI caches prompts of >= 1024 tokens in steps of 128, inside input_tokens
            cached = self._nullable(inp // 128) if inp >= 1024 else None
            usage |= dict(zip(CACHE_FIELDS, (None, None, None if cached is None else 128 * cached), strict=True))
        return usage

    def step(self, specs: list[tuple[str, dict[str, Any]]], executed: int | None = None, text: str = "") -> None:
        rng = self.rng
        if not text:
            text = rng.choice(PREAMBLES) if specs and rng.random() < 0.6 else "" if specs else rng.choice(ANSWERS)
        pieces = chunks(rng, text, rng.randint(2, 12)) if self.streaming and text else (text,) if text else ()
        calls = tuple(self.call(*spec) for spec in specs)
        executed = len(calls) if executed is None else executed
        self.steps.append(BehestStep(len(self.steps) + 1, pieces, calls, self._usage(), True, executed))

    def specs(self, n: int) -> list[tuple[str, dict[str, Any]]]:
        return [(name, arguments(self.rng, name)) for name in self.rng.choices(list(TOOLS), k=n)]

    def tools(self, steps: int) -> None:
        for _ in range(steps):
            self.step(self.specs(self.rng.choices((1, 2, 3), (0.7, 0.22, 0.08))[0]))

    def open(self, partial: bool) -> None:
        """A model call that never finished: nothing after ModelStarted, or a stream cut in its text or
        in its first tool call's arguments (the provider failed: no usage, no commit)."""
        self.step(self.specs(self.rng.choice((0, 1))))
        full = self.steps.pop()
        text: tuple[str, ...] = ()
        calls: tuple[BehestCall, ...] = ()
        if partial and self.streaming:
            text = full.text[: self.rng.randint(1, len(full.text))] if full.text else ()
            if len(text) == len(full.text) and full.calls:
                c = full.calls[0]
                calls = (c._replace(deltas=c.deltas[: self.rng.randint(0, len(c.deltas))], completed=False),)
        self.steps.append(BehestStep(full.iteration, text, calls, None, False, 0))


def plan_behest(rng: random.Random, silent: bool) -> BehestRun:
    provider = "anthropic" if rng.random() < 0.55 else "openai"
    b = _BehestSteps(rng, provider, rng.random() < 0.8)
    end, error, doom = "completed", None, None
    finish: str | dict[str, str] | None = None
    if silent:  # provider error or timeout (run_loop returns Err without RunFailed), crash
        end, how = "silent", rng.choices(("started", "model", "stream", "tools"), (0.15, 0.4, 0.3, 0.15))[0]
        if how != "started":  # "started": provider not found, RunStarted only
            b.tools(rng.choices((0, 1, 2), (0.6, 0.3, 0.1))[0])
            if how == "tools":  # the process died while the batch ran: no ToolMessageCommitted
                b.step(b.specs(rng.randint(1, 2)), executed=0)
            else:
                b.open(partial=how == "stream")
    else:
        outcome = rng.choices(("completed", "iterations", "budget", "doom"), (0.91, 0.03, 0.03, 0.03))[0]
        if outcome == "budget" and not b.usage:
            outcome = "completed"
        if outcome == "completed":
            b.tools(rng.choices((0, 1, 2, 3), (0.35, 0.35, 0.2, 0.1))[0])
            reason = rng.choices(("stop", "length", "tool_calls", "refusal"), (0.88, 0.05, 0.03, 0.04))[0]
            b.step([], text=REFUSAL if reason == "refusal" else "")
            finish = {"unknown": "refusal"} if reason == "refusal" else reason
        elif outcome == "iterations":  # checked at the top of iteration 11: no ModelStarted for it
            end, error = "failed", "iteration limit exceeded: 10"
            b.tools(10)
        elif outcome == "budget":
            limit = rng.choice((4000, 8000))
            while b.used <= limit:
                b.tools(1)
            end, error = "failed", f"token budget exceeded: {b.used} > {limit}"
        else:  # the repeated call is detected before execution, after the assistant commit
            b.tools(rng.randint(0, 1))
            a, c = b.specs(1)[0], b.specs(1)[0]
            if rng.random() < 0.6 or a[0] == c[0]:
                pattern, doom = [a, a, a], f"consecutive duplicate: {a[0]} called 3 times"
            else:
                pattern, doom = [a, c, a, c], f"cycle detected: [{a[0]}, {c[0]}] repeated 2 times"
            for i, spec in enumerate(pattern):
                b.step([spec], executed=0 if i == len(pattern) - 1 else 1)
            end, error = "failed", f"doom loop detected: {doom}"
    run_id, session_id = uuid4(rng), uuid4(rng)
    return BehestRun(
        run_id, session_id, provider, BEHEST_MODELS[provider], b.streaming, tuple(b.steps), end, finish, error, doom
    )


def _completed(call: BehestCall) -> dict[str, Any]:
    return {"call": {"id": call.id, "name": call.name, "arguments": call.arguments}}


def write_behest(run: BehestRun, fmt: str, rng: random.Random, t0: int) -> BehestWriter:
    """The run's events (docs/event-sources.md §4; lifecycle: behest run_loop.rs at 0.3.0)."""
    c = Clock(t0, rng.choices((1, 1_000, 1_000_000), (0.85, 0.1, 0.05))[0])
    w = BehestWriter(fmt, run.run_id, run.session_id, rng)
    who = {"provider": run.provider, "model": run.model}
    w.event("RunStarted", {"session_id": run.session_id, **who}, c.after(0))
    messages = rng.randint(1, 40)
    for st in run.steps:
        w.event("ContextBuilt", {"message_count": messages}, c.after(rng.uniform(0.002, 0.02)))
        w.event("ModelStarted", {**who, "iteration": st.iteration}, c.after(rng.uniform(0.0005, 0.003)))
        latency = log_uniform(rng, 0.3, 5.0)
        if run.streaming:
            wait = max(0.2, latency - 0.02 * (len(st.text) + sum(len(k.deltas) + 1 for k in st.calls)))
            for d in st.text:
                w.event("TextDelta", {"delta": d}, c.after(wait))
                wait = rng.uniform(0.008, 0.035)
            for k in st.calls:
                w.event("ToolCallStarted", {"call_id": k.id, "tool_name": k.name}, c.after(wait))
                for d in k.deltas:
                    w.event("ToolCallDelta", {"call_id": k.id, "delta": d}, c.after(rng.uniform(0.008, 0.035)))
                if k.completed:
                    w.event("ToolCallCompleted", _completed(k), c.after(0.0004))
                wait = rng.uniform(0.008, 0.035)
        else:  # one TextDelta with the whole text, a ToolCallCompleted per call, after the whole answer
            c.after(latency)
            if st.text:
                w.event("TextDelta", {"delta": st.text[0]}, c.after(0.0002))
            for k in st.calls:
                w.event("ToolCallCompleted", _completed(k), c.after(0.0001))
        if st.usage is not None:
            w.event("UsageRecorded", {"usage": st.usage}, c.after(rng.uniform(0.0002, 0.002)))
            cache = {k: st.usage.get(k) or 0 for k in CACHE_FIELDS}
            if any(cache.values()):  # appended to the event store directly too: an envelope stream has it twice
                w.event("CacheMetrics", cache, c.after(0.0002), copies=2)
        if not st.committed:
            break
        w.event("AssistantMessageCommitted", {"message_id": uuid4(rng)}, c.after(rng.uniform(0.001, 0.006)))
        if st.executed:  # one ToolMessageCommitted per executed call, in call order, after the whole batch
            c.after(max(log_uniform(rng, 0.01, 2.0) for _ in range(st.executed)))
            for _ in range(st.executed):
                w.event("ToolMessageCommitted", {"message_id": uuid4(rng)}, c.after(rng.uniform(0.0003, 0.002)))
        messages += 1 + st.executed
    if run.doom is not None:
        w.event("DoomLoopDetected", {"description": run.doom}, c.after(rng.uniform(0.0002, 0.001)))
    if run.end == "completed":
        done = {"finish_reason": run.finish, "iterations": len(run.steps)}
        w.event("RunCompleted", done, c.after(rng.uniform(0.0005, 0.003)))
    elif run.end == "failed":
        w.event("RunFailed", {"error": run.error}, c.after(rng.uniform(0.0005, 0.005)))
    return w
