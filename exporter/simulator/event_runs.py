"""Runs of behest 0.3.0/0.5.9 and agent-sdk 0.4.4/>=0.9: planned whole, then written as their wire shows them.

A plan (`BehestRun`, `AgentRun`) says what a run did: its steps, calls, usage and how it ended; `events`
counts the ground truth from it. A writer turns it into NDJSON lines byte for byte as the runtime (and,
for agent-sdk, its host wrapper) writes them: serde field order, chrono / `time` timestamps, silent
ends. The shapes were read in the runtimes' sources at their tags (docs/event-sources.md §2).
"""

from __future__ import annotations

import functools
import itertools
import json
import random
import string
import time
from typing import Any, NamedTuple

NS = 1_000_000_000
_ENC = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False)  # as serde_json writes
_ALNUM = string.ascii_letters + string.digits
CACHE_FIELDS = ("cache_creation_input_tokens", "cache_read_input_tokens", "cached_input_tokens")
BEHEST_MODELS = {"anthropic": "claude-sonnet-4-20250514", "openai": "gpt-4o-mini"}
SDK_MODELS = (("claude-3-5-haiku-20241022", "anthropic"), ("gpt-4o", "openai"), ("gemini-2.0-flash", "gemini"))
TOOLS = {  # name: (display_name, tier); agent-sdk hosts ask before the Confirm ones (sometimes)
    "web_search": ("Web Search", "Observe"),
    "read_file": ("Read File", "Observe"),
    "get_weather": ("Get Weather", "Observe"),
    "bash": ("Run Command", "Confirm"),
    "send_email": ("Send Email", "Confirm"),
}
TOPICS = ("rust async runtimes", "postgres vacuum tuning", "kubernetes pod eviction", "redis consumer groups")
ANSWERS = (
    "The deployment finished and all 12 health checks pass.",
    "I found three open incidents; the oldest is from Tuesday and concerns the billing worker.",
    "Tomorrow in Lisbon: sunny, 24 °C, light wind from the north-west.",
    "The config sets max_connections to 200, above the pool limit of 150 — that explains the errors.",
    "Done: the weekly report was sent to the finance team.",
)
PREAMBLES = ("Let me look that up.", "I'll check the logs first.", "I'll read the file to confirm.")
REFUSAL = "I can't help with that request."


@functools.lru_cache(maxsize=8192)
def _second(s: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s))


def chrono_ts(ns: int) -> str:
    """chrono's `DateTime<Utc>` serde form: `SecondsFormat::AutoSi`, the fewest of 0/3/6/9 digits showing all."""
    s, f = divmod(ns, NS)
    if f == 0:
        return f"{_second(s)}Z"
    if f % 1_000_000 == 0:
        return f"{_second(s)}.{f // 1_000_000:03d}Z"
    if f % 1_000 == 0:
        return f"{_second(s)}.{f // 1_000:06d}Z"
    return f"{_second(s)}.{f:09d}Z"


def time_ts(ns: int) -> str:
    """`time::serde::rfc3339` (agent-sdk >= 0.9 envelopes): 1-9 digits, trailing zeros trimmed."""
    s, f = divmod(ns, NS)
    return f"{_second(s)}Z" if f == 0 else f"{_second(s)}.{f:09d}".rstrip("0") + "Z"


def host_ts(ns: int) -> str:
    """The agent-sdk host wrapper's `ts`: its receive time in ms, like docs/event-sources.md §2's example."""
    s, f = divmod(ns, NS)
    return f"{_second(s)}.{f // 1_000_000:03d}Z"


# JSONEncoder.encode builds this C encoder anew for every object: built once, a line costs half as much
_C_ENCODER = getattr(json.encoder, "c_make_encoder", None)
_FAST = _C_ENCODER and _C_ENCODER(
    None, _ENC.default, json.encoder.encode_basestring, None, ":", ",", False, False, True
)


def encode(obj: dict[str, Any]) -> bytes:
    return "".join(_FAST(obj, 0)).encode() if _FAST else _ENC.encode(obj).encode()


def _uuid(n: int) -> str:
    h = f"{n:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def uuid4(rng: random.Random) -> str:
    """A UUID v4 from the seeded generator (`uuid.uuid4` would not be reproducible)."""
    return _uuid(rng.getrandbits(128) & ~(0xF000 << 64 | 0xC000 << 48) | 0x4000 << 64 | 0x8000 << 48)


def uuid7(rng: random.Random, ns: int) -> str:
    """behest's `RuntimeEventId` (`Uuid::now_v7`): unix ms, version 7, random bits."""
    return _uuid((ns // 1_000_000) << 80 | 7 << 76 | rng.getrandbits(12) << 64 | 2 << 62 | rng.getrandbits(62))


def _token(rng: random.Random, k: int) -> str:
    return "".join(rng.choices(_ALNUM, k=k))


def _log(rng: random.Random, lo: float, hi: float) -> float:
    return float(lo * (hi / lo) ** rng.random())


def chunks(rng: random.Random, text: str, n: int) -> tuple[str, ...]:
    """``text`` cut into ``n`` non-empty pieces at random places, as a stream delivers it."""
    n = max(1, min(n, len(text)))
    cuts = sorted(rng.sample(range(1, len(text)), n - 1)) if n > 1 else []
    return tuple(text[a:b] for a, b in itertools.pairwise([0, *cuts, len(text)]))


def arguments(rng: random.Random, name: str) -> dict[str, Any]:
    """A call's arguments; varied enough that no two calls repeat by chance (a repeat is a doom loop)."""
    if name == "web_search":
        return {"query": f"{rng.choice(TOPICS)} {rng.randint(2019, 2026)}", "max_results": rng.randint(3, 10)}
    if name == "read_file":
        return {"path": f"/srv/app/{rng.choice(('src', 'conf', 'data'))}/part-{rng.randint(1, 9999)}.txt", "limit": 200}
    if name == "bash":
        return {"command": f"tail -n {rng.randint(10, 999)} /var/log/app/{rng.choice(('api', 'worker'))}.log"}
    if name == "send_email":
        return {
            "to": f"{rng.choice(('ops', 'ana', 'li.wei'))}@example.com",
            "subject": f"Report #{rng.randint(1, 99999)}",
        }
    return {"city": rng.choice(("Lisbon", "Berlin", "Tokyo", "Austin")), "days": rng.randint(1, 7), "units": "metric"}


class Clock:
    """A run's event times (ns): strictly increasing (bare behest lines are identified by their timestamp),
    on the host clock's resolution (1: Linux ns; 1 000: a µs clock; 1 000 000: ms)."""

    def __init__(self, t: int, res: int = 1) -> None:
        self.res, self.started = res, False
        self.t = -(-t // res) * res

    def after(self, seconds: float) -> int:
        """The next event's time, ``seconds`` after the last one (the first event: the start time)."""
        if self.started:
            self.t = -(-(self.t + max(1, int(seconds * NS))) // self.res) * self.res
        self.started = True
        return self.t


class Writer:
    """One run's lines in its line format, each with the time (ns) it can first be sent."""

    def __init__(self, fmt: str, run_id: str, rng: random.Random) -> None:
        self.fmt, self.run_id, self.rng = fmt, run_id, rng
        self.lines: list[tuple[int, bytes]] = []
        self.seq = 0
        self.last = 0

    def put(self, ns: int, obj: dict[str, Any]) -> None:
        self.lines.append((ns, encode(obj)))
        self.last = ns  # a run's lines are written in time order

    def unknown(self) -> tuple[int, bytes]:
        """A line of a type a newer runtime writes, after the run's last one (not kept in `lines`)."""
        raise NotImplementedError


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


# --- behest -----------------------------------------------------------------------------------------------


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
        cid = f"toolu_01{_token(rng, 22)}" if anthropic else f"call_{_token(rng, 24)}"
        if not self.streaming:
            return BehestCall(cid, name, args, (), True)
        raw = json.dumps(args) if anthropic else _ENC.encode(args)  # Anthropic's partial JSON has spaces
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
        latency = _log(rng, 0.3, 5.0)
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
            c.after(max(_log(rng, 0.01, 2.0) for _ in range(st.executed)))
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


# --- agent-sdk ----------------------------------------------------------------------------------------------


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
    ms = int(_log(rng, 10, 2000))
    if outcome == "success":
        data = None if rng.random() < 0.7 else {"items": rng.randint(1, 20)}
        return {"success": True, "output": rng.choice(ANSWERS), "data": data, "duration_ms": ms}
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
        name = name or rng.choice(list(TOOLS))
        if self.provider == "anthropic":
            cid = f"toolu_01{_token(rng, 22)}"
        else:
            cid = f"call_{_token(rng, 24)}" if self.provider == "openai" else uuid4(rng)
        outcome = rng.choices(("success", "tool_error", "failed", "blocked"), (0.84, 0.07, 0.04, 0.05))[0]
        return AgentTool(cid, name, dict(sorted(arguments(rng, name).items())), True, _result(rng, outcome), None)

    def pieces(self, text: str | None) -> tuple[str, ...]:
        return chunks(self.rng, text, self.rng.randint(2, 12)) if self.streaming and text else ()

    def closed(self, ntools: int, answer: bool = True) -> None:
        """A finished turn: turn_complete, except 0.4.x's turns without tools (the last: `done` has it)."""
        self.n += 1
        tools = tuple(self.tool() for _ in range(ntools))
        if tools:
            text = self.rng.choice(PREAMBLES) if self.rng.random() < 0.5 else None
        else:
            text = self.rng.choice(ANSWERS) if answer else None
        usage = self.usage()
        emitted = usage if tools or self.fmt == "v0.9" else None
        self.turns.append(AgentTurn(self.n, True, self.pieces(text), text, tools, emitted))

    def tool_turns(self, n: int) -> None:
        for _ in range(n):
            self.closed(self.rng.choices((1, 2, 3), (0.7, 0.22, 0.08))[0])

    def open(self, stream: bool, tool: bool = False) -> None:
        """A turn cut short: its start and maybe part of its text stream, or a call still running."""
        self.n += 1
        pieces = self.pieces(self.rng.choice(ANSWERS)) if stream else ()
        text, full, tools = pieces[: self.rng.randint(0, len(pieces))], None, tuple[AgentTool, ...]()
        if tool:
            full = self.rng.choice(PREAMBLES)
            text, tools = self.pieces(full), (self.tool()._replace(result=None),)
        self.turns.append(AgentTurn(self.n, True, text, full, tools, None))

    def paused(self) -> tuple[dict[str, int], AgentTool]:
        """The turn that asks for confirmation: calls before it ran, the Confirm-tier one waits."""
        self.n += 1
        tools = [self.tool() for _ in range(self.rng.choice((0, 0, 1)))]
        name = self.rng.choice(("bash", "send_email"))
        waiting = self.tool(name)._replace(result=None, confirm=f"{TOOLS[name][0]} needs your approval")
        text = self.rng.choice(PREAMBLES)
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
            latency = _log(rng, 0.3, 5.0)
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
            display, tier = TOOLS[k.name]
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
        w.event({"type": "refusal", "message_id": mid, "text": REFUSAL if rng.random() < 0.8 else None}, c.after(0.001))
    elif run.end == "cancelled":
        so_far = {"input_tokens": 0, "output_tokens": 0, "cached_input_tokens": 0, "cache_creation_input_tokens": 0}
        for t in run.turns:  # the usage of the turns so far
            for key, v in (t.usage or {}).items():
                so_far[key] += v
        w.event({"type": "cancelled", "turn": last.number, "usage": so_far}, c.after(rng.uniform(0.05, 3.0)))
    elif run.end == "silent" and run.final_state and run.message:
        w.final_state(run.message, False, c.after(_log(rng, 0.05, 30.0)))
