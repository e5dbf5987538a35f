"""The behest / agent-sdk event stream generator against its wire formats and its ground truth.

Shapes as the runtimes' serde derives write them (field order, chrono / `time` timestamps, envelopes,
host wrappers), lifecycles, and a reader written here from docs/event-sources.md §4-§5 alone that folds
the lines and must count what `EventTruth` (computed from the plans, never from the lines) says.
Transport noise (duplicates, reordering, bad and unknown lines) must leave the truth unchanged.
"""

from __future__ import annotations

import calendar
import dataclasses
import functools
import itertools
import json
import re
import time
from collections import Counter, defaultdict
from typing import Any

import pytest

from exporter.simulator.events import (
    DUPLICATE_WITHIN_S,
    MAX_DELAY_S,
    EventScenario,
    EventStream,
    EventTruth,
    generate,
)

NS = 1_000_000_000
SECONDS = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d"
CHRONO = re.compile(rf"^{SECONDS}(\.(\d{{3}}|\d{{6}}|\d{{9}}))?Z$")  # SecondsFormat::AutoSi
TIME = re.compile(rf"^{SECONDS}(\.\d{{0,8}}[1-9])?Z$")  # time's Rfc3339: trailing zeros trimmed
HOST = re.compile(rf"^{SECONDS}\.\d{{3}}Z$")
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
UUID7 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
BEHEST_ORDER = {
    "RunStarted": ["session_id", "provider", "model"],
    "ContextBuilt": ["message_count"],
    "ModelStarted": ["provider", "model", "iteration"],
    "TextDelta": ["delta"],
    "ToolCallStarted": ["call_id", "tool_name"],
    "ToolCallDelta": ["call_id", "delta"],
    "ToolCallCompleted": ["call"],
    "UsageRecorded": ["usage"],
    "CacheMetrics": ["cache_creation_input_tokens", "cache_read_input_tokens", "cached_input_tokens"],
    "AssistantMessageCommitted": ["message_id"],
    "ToolMessageCommitted": ["message_id"],
    "DoomLoopDetected": ["description"],
    "RunCompleted": ["finish_reason", "iterations"],
    "RunFailed": ["error"],
}
SDK_ORDER = {
    "start": ["thread_id", "turn"],
    "thinking": ["message_id", "text"],
    "thinking_delta": ["message_id", "delta"],
    "text_delta": ["message_id", "delta"],
    "text": ["message_id", "text"],
    "tool_call_start": ["id", "name", "display_name", "input", "tier"],
    "tool_call_end": ["id", "name", "display_name", "result"],
    "tool_requires_confirmation": ["id", "name", "input", "description"],
    "turn_complete": ["turn", "usage"],
    "done": ["thread_id", "total_turns", "total_usage", "duration"],
    "error": ["message", "recoverable"],
    "refusal": ["message_id", "text"],
    "cancelled": ["turn", "usage"],
    "auto_retry_start": ["attempt", "max_attempts", "delay_ms", "error_message"],
    "auto_retry_end": ["attempt", "success", "final_error"],
}
USAGE_04 = ["input_tokens", "output_tokens"]
USAGE_09 = [*USAGE_04, "cached_input_tokens", "cache_creation_input_tokens"]
BEHEST_TOKENS = ["input_tokens", "output_tokens", "total_tokens"]
CACHE = ["cache_creation_input_tokens", "cache_read_input_tokens", "cached_input_tokens"]
BEHEST = EventScenario("behest", seed=7, runs=1000, formats=("bare", "envelope"))
SDK = EventScenario("agent_sdk", seed=7, runs=1000, formats=("v0.4", "v0.9"))


@functools.cache
def gen(sc: EventScenario) -> EventStream:
    return generate(sc)


def ns_of(ts: str) -> int:
    base, _, frac = ts.rstrip("Z").partition(".")
    return calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S")) * NS + int(frac.ljust(9, "0") or 0)


def run_id_of(line: dict[str, Any]) -> str:
    if "event" in line and "ts" not in line:  # behest envelope
        return str(line["run_id"])
    if len(line) == 1:  # bare behest event
        return str(next(iter(line.values()))["run_id"])
    return str(line["run_id"])


def sent(line: dict[str, Any]) -> int:
    """When the line could first be sent: the time it carries (the envelope's append time for behest)."""
    if len(line) == 1:
        return ns_of(next(iter(line.values()))["timestamp"])
    if "emitted_at" in line:
        return ns_of(line["emitted_at"])
    return ns_of(line["ts"] if "ts" in line else line["envelope"]["timestamp"])


def by_run(stream: EventStream) -> dict[str, list[dict[str, Any]]]:
    """Each run's distinct lines in event order (time, then sequence), as an exporter sorts them."""
    runs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for data in dict.fromkeys(line.data for line in stream.lines):
        obj = json.loads(data)
        runs[run_id_of(obj)].append(obj)

    def key(o: dict[str, Any]) -> tuple[int, int]:
        if len(o) == 1:
            return ns_of(next(iter(o.values()))["timestamp"]), 0
        if "emitted_at" in o:
            return ns_of(o["event"][next(iter(o["event"]))]["timestamp"]), o["seq"]
        if "envelope" in o:
            return ns_of(o["envelope"]["timestamp"]), o["envelope"]["sequence"]
        return ns_of(o["ts"]), o.get("seq", 1 << 62)

    return {r: sorted(lines, key=key) for r, lines in runs.items()}


# --- a reader of the lines, from docs/event-sources.md §4 and §5 ---------------------------------------------


def prefix(message: str, table: dict[str, str]) -> str:
    return next((v for k, v in table.items() if message.startswith(k)), "error")


def fold_behest(stream: EventStream) -> EventTruth:
    t = EventTruth()
    failed = {
        "iteration limit exceeded": "max_iterations",
        "token budget exceeded": "token_budget",
        "doom loop detected": "doom_loop",
    }
    for lines in by_run(stream).values():
        events = [(name, body) for o in lines for name, body in (o["event"] if "emitted_at" in o else o).items()]
        status, stop = "expired", "none"
        steps: dict[int, dict[str, Any]] = {}
        step: dict[str, Any] | None = None
        model = provider = ""
        for name, body in events:
            if name == "RunCompleted":
                fr = body["finish_reason"]
                status, stop = "completed", fr if isinstance(fr, str) else "other"
                break
            if name == "RunFailed":
                status, stop = "failed", prefix(body["error"], failed)
                break
            if name == "ModelStarted":
                step = steps[body["iteration"]] = {"calls": {}, "usage": None, "done": False, "executed": 0}
                model, provider = body["model"], body["provider"]
            elif step is None:
                continue
            elif name in ("ToolCallStarted", "ToolCallCompleted"):
                cid, tool = (
                    (body["call_id"], body["tool_name"])
                    if name == "ToolCallStarted"
                    else (body["call"]["id"], body["call"]["name"])
                )
                step["calls"].setdefault(cid, tool)
            elif name == "UsageRecorded" and step["usage"] is None:
                step["usage"] = body["usage"]
            elif name == "AssistantMessageCommitted":
                step["done"] = True
            elif name == "ToolMessageCommitted":
                step["executed"] += 1
        t.runs[status, stop] += 1
        for i, s in steps.items():
            st = "success" if s["done"] else "failed" if status == "failed" else "pending"
            sr = "tool_calls" if s["calls"] else stop if status == "completed" and i == max(steps) else "none"
            t.steps[st, sr, model, provider] += 1
            for j, tool in enumerate(s["calls"].values()):
                t.tool_calls[tool, "unknown" if j < s["executed"] else "not_executed"] += 1
            u = s["usage"]
            if u is None:
                t.usage_missing[model, provider] += 1
                continue
            read, write = u.get("cache_read_input_tokens") or 0, u.get("cache_creation_input_tokens") or 0
            kinds = {"input": u["input_tokens"] + read + write, "output": u["output_tokens"]}
            kinds |= {"cached_input": read + (u.get("cached_input_tokens") or 0), "cache_write": write}
            for kind, n in kinds.items():
                if n:
                    t.tokens[kind, model, provider] += n
    return t


def fold_agent(stream: EventStream) -> EventTruth:
    t = EventTruth()
    errors = {
        "Maximum turns": "max_turns",
        "Rate limited": "rate_limited",
        "Server error": "server_error",
        "Streaming error": "stream_error",
    }
    for lines in by_run(stream).values():
        model, provider = next((o["model"], o["provider"]) for o in lines if "model" in o)
        turns: dict[int | None, dict[str, Any]] = {}
        tools: dict[str, list[Any]] = {}  # id: [name, status, has duration]
        status, stop, current, final, total = "", "", None, None, None
        for o in lines:
            if "final_state" in o:
                final = final or o["final_state"]
                continue
            e = o["event"] if "event" in o else o["envelope"]
            kind = e["type"]
            if status:
                break
            if kind == "start":
                current = e["turn"]
                turns[current] = {"tools": False, "usage": None, "open": True, "counted": True}
            elif kind == "turn_complete":
                turn = turns.pop(None, None) or turns.get(e["turn"]) or {"tools": False, "usage": None, "counted": True}
                turns[e["turn"]] = turn | {"open": False, "usage": turn["usage"] or e["usage"]}
            elif kind in ("tool_call_start", "tool_call_end", "tool_requires_confirmation"):
                turn = turns.setdefault(current, {"tools": False, "usage": None, "open": True, "counted": True})
                turn["tools"] = True
                entry = tools.setdefault(e["id"], [e["name"], "unknown", False])
                if kind == "tool_requires_confirmation":
                    entry[1] = "awaiting_confirmation"
                    status, stop = "completed", "requires_approval"
                    turn["counted"] = False
                elif kind == "tool_call_end":
                    r = e["result"]
                    out = r["output"]
                    entry[1] = (
                        "success"
                        if r["success"]
                        else "blocked"
                        if out.startswith("Blocked:")
                        else "rejected"
                        if out.startswith("Rejected:")
                        else "error"
                    )
                    entry[2] = r["duration_ms"] is not None
            elif kind == "done":
                status, stop, total = "completed", "none", e["total_usage"]
                for turn in turns.values():
                    turn["open"] = False
            elif kind == "refusal":
                status, stop = "completed", "refusal"
            elif kind == "error":
                status, stop = "failed", prefix(e["message"], errors)
            elif kind == "cancelled":
                status, stop = "cancelled", "cancelled"
        if not status and final:
            status, stop = (
                "failed",
                prefix(final["message"], {"LLM error": "llm_error", "Invalid request": "invalid_request", **errors}),
            )
        status, stop = status or "expired", stop or "none"
        t.runs[status, stop] += 1
        for turn in turns.values():
            if turn["counted"]:
                st = (
                    {"failed": "failed", "cancelled": "cancelled"}.get(status, "pending") if turn["open"] else "success"
                )
                t.steps[st, "tool_use" if turn["tools"] else "none", model, provider] += 1
        for name, st, timed in tools.values():
            t.tool_calls[name, st] += 1
            t.tool_durations[name] += timed
        usages = [turn["usage"] for turn in turns.values() if turn["usage"]]
        # 0.4.x: last turn = total - earlier turns; not in a resume from turn 2 on (its total holds the paused run's)
        if total is not None and "cached_input_tokens" not in total and min(k for k in turns if k is not None) == 1:
            usages = [total]
        for u in usages:
            kinds = {"input": u["input_tokens"], "output": u["output_tokens"]}
            kinds |= {
                "cached_input": u.get("cached_input_tokens", 0),
                "cache_write": u.get("cache_creation_input_tokens", 0),
            }
            for kind, n in kinds.items():
                if n:
                    t.tokens[kind, model, provider] += n
    return t


COUNTERS = ("runs", "steps", "tokens", "tool_calls", "tool_durations", "usage_missing")


def counted(t: EventTruth) -> dict[str, Counter[Any]]:
    return {name: +getattr(t, name) for name in COUNTERS}


# --- tests --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sc", [BEHEST, SDK], ids=["behest", "agent_sdk"])
def test_truth_is_what_a_reader_of_the_lines_counts(sc: EventScenario) -> None:
    stream = gen(sc)
    folded = fold_behest(stream) if sc.runtime == "behest" else fold_agent(stream)
    assert counted(folded) == counted(stream.truth)
    truth = stream.truth
    assert sum(truth.runs.values()) == truth.created == sc.runs == len(truth.run_ids) == len(set(truth.run_ids))
    assert set(by_run(stream)) == set(truth.run_ids)
    assert truth.valid_lines == len(stream.lines) and truth.duplicate_lines == truth.malformed_lines == 0
    assert sc.silent / 2 < truth.runs["expired", "none"] / sc.runs < sc.silent * 1.3  # some get a final_state


def test_behest_covers_every_way_a_run_ends() -> None:
    truth = gen(BEHEST).truth
    ends = {("completed", r) for r in ("stop", "tool_calls", "length", "other")} | {("expired", "none")}
    assert ends | {("failed", r) for r in ("max_iterations", "token_budget", "doom_loop")} <= set(truth.runs)
    assert {s[:2] for s in truth.steps} >= {
        ("success", "tool_calls"),
        ("success", "stop"),
        ("pending", "none"),
        ("pending", "tool_calls"),
    }
    assert {s for _, s in truth.tool_calls} == {"unknown", "not_executed"}
    # no usage: OpenAI streaming, and every model call that never finished (pending: tokens unknown)
    anthropic = ("claude-sonnet-4-20250514", "anthropic")
    assert truth.usage_missing[anthropic] == sum(
        n for s, n in truth.steps.items() if s[0] == "pending" and s[2:] == anthropic
    )
    assert truth.usage_missing["gpt-4o-mini", "openai"] > 5 * truth.usage_missing[anthropic]
    assert {k for k, _, _ in truth.tokens} == {"input", "output", "cached_input", "cache_write"}
    assert not truth.tool_durations


def test_agent_sdk_covers_every_way_a_run_ends() -> None:
    truth = gen(SDK).truth
    failed = {
        ("failed", r)
        for r in ("max_turns", "rate_limited", "server_error", "llm_error", "invalid_request", "stream_error")
    }
    ends = {("completed", r) for r in ("none", "requires_approval", "refusal")} | {
        ("cancelled", "cancelled"),
        ("expired", "none"),
    }
    assert ends | failed <= set(truth.runs)
    assert {s[0] for s in truth.steps} == {"success", "failed", "cancelled", "pending"}
    assert {s for _, s in truth.tool_calls} == {
        "success",
        "error",
        "blocked",
        "rejected",
        "awaiting_confirmation",
        "unknown",
    }
    assert {m for _, m, _ in truth.tokens} == {"claude-3-5-haiku-20241022", "gpt-4o", "gemini-2.0-flash"}
    assert 0 < sum(truth.tool_durations.values()) < sum(truth.tool_calls.values())


def test_same_seed_same_bytes() -> None:
    sc = EventScenario(
        "agent_sdk",
        seed=3,
        runs=60,
        formats=("v0.4", "v0.9"),
        duplicates=0.1,
        reorder_s=1.0,
        malformed=8,
        unknown_types=4,
    )
    a, b = generate(sc), generate(sc)
    assert a.lines == b.lines and a.truth == b.truth
    assert (
        generate(EventScenario("agent_sdk", seed=4, runs=60)).body()
        != generate(EventScenario("agent_sdk", seed=3, runs=60)).body()
    )
    behest = EventScenario("behest", seed=3, runs=60, formats=("bare", "envelope"), duplicates=0.1)
    assert generate(behest).body() == generate(behest).body()


def test_behest_lines_as_serde_writes_them() -> None:
    digits: Counter[int] = Counter()
    for lines in by_run(gen(BEHEST)).values():
        seqs = [o["seq"] for o in lines if "emitted_at" in o]
        assert seqs in ([], list(range(1, len(lines) + 1)))  # one format per run; seq from 1
        for o in lines:
            if "emitted_at" in o:
                assert list(o) == ["event_id", "seq", "run_id", "session_id", "event", "emitted_at"]
                assert UUID7.match(o["event_id"]) and UUID4.match(o["session_id"]) and CHRONO.match(o["emitted_at"])
                assert int(o["event_id"].replace("-", "")[:12], 16) == ns_of(o["emitted_at"]) // 1_000_000
            [(name, body)] = (o["event"] if "emitted_at" in o else o).items()
            assert list(body) == ["run_id", *BEHEST_ORDER[name], "timestamp"], name
            assert UUID4.match(body["run_id"]) and CHRONO.match(body["timestamp"])
            frac = body["timestamp"][20:-1]
            assert not frac.endswith("000")  # AutoSi: the fewest digits showing every non-zero one
            digits[len(frac)] += 1
            if name == "UsageRecorded":
                usage = body["usage"]
                assert list(usage) in (BEHEST_TOKENS, BEHEST_TOKENS + CACHE)
                assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
            if name == "ToolCallCompleted":
                assert list(body["call"]) == ["id", "name", "arguments"]
    assert digits[9] > digits[6] + digits[3] and digits[6] > 0 and digits[3] > 0  # ns, µs and ms host clocks


def test_behest_lifecycle() -> None:
    for lines in by_run(gen(BEHEST)).values():
        events = [next(iter((o["event"] if "emitted_at" in o else o).items())) for o in lines]
        names = [n for n, _ in events]
        assert names[0] == "RunStarted"
        assert sum(n in ("RunCompleted", "RunFailed") for n in names) <= 1
        assert names[-1] in ("RunCompleted", "RunFailed") or not {"RunCompleted", "RunFailed"} & set(names)
        iterations = [b["iteration"] for n, b in events if n == "ModelStarted"]
        assert iterations == list(range(1, len(iterations) + 1))
        assert all(names[i - 1] == "ContextBuilt" for i, n in enumerate(names) if n == "ModelStarted")
        provider = events[0][1]["provider"]
        if provider == "openai" and "ToolCallStarted" in names:  # streaming: no usage, no completed calls
            assert "UsageRecorded" not in names and "ToolCallCompleted" not in names
        if "DoomLoopDetected" in names:
            doom, failed = events[-2][1], events[-1][1]
            assert (
                names[-2:] == ["DoomLoopDetected", "RunFailed"]
                and failed["error"] == f"doom loop detected: {doom['description']}"
            )
            assert names[-3] == "AssistantMessageCommitted"  # the repeated call is never executed
        if names[-1] == "RunCompleted":
            assert events[-1][1]["iterations"] == len(iterations)
        for i, (n, b) in enumerate(events):
            if n == "CacheMetrics":  # after UsageRecorded, from its cache fields
                usage = next(u["usage"] for m, u in reversed(events[:i]) if m == "UsageRecorded")
                assert [b[k] for k in CACHE] == [usage[k] or 0 for k in CACHE]


def test_agent_sdk_lines_as_the_host_wraps_them() -> None:
    seq0 = set()
    for lines in by_run(gen(SDK)).values():
        events = [o for o in lines if "final_state" not in o]
        for o in lines:
            if "final_state" in o:
                assert list(o) == ["ts", "thread_id", "run_id", "final_state"] and HOST.match(o["ts"])
                assert list(o["final_state"]) == ["kind", "message", "recoverable"]
        v09 = "envelope" in events[0]
        if v09:
            assert [o["envelope"]["sequence"] for o in events] == list(range(len(events)))
        else:
            seq0.add(events[0]["seq"])
            assert [o["seq"] - events[0]["seq"] for o in events] == list(range(len(events)))
        for o in events:
            if v09:
                assert list(o) == ["thread_id", "turn", "run_id", "model", "provider", "envelope"]
                e = o["envelope"]
                assert list(e)[:4] == ["event_id", "sequence", "timestamp", "type"] and UUID4.match(e["event_id"])
                assert TIME.match(e["timestamp"])
                body = {k: v for k, v in e.items() if k not in ("event_id", "sequence", "timestamp")}
            else:
                assert list(o) == ["ts", "thread_id", "run_id", "seq", "model", "provider", "event"] and HOST.match(
                    o["ts"]
                )
                body = o["event"]
            assert UUID4.match(o["run_id"]) and UUID4.match(o["thread_id"])
            order = SDK_ORDER[body["type"]]
            if body["type"] == "tool_requires_confirmation" and v09:
                order = ["id", "name", "display_name", "input", "description"]
            if body["type"] == "done" and "duration_ms" in body:
                order = [*order[:-1], "duration_ms"]
            assert list(body) == ["type", *order], body
            if "usage" in body or "total_usage" in body:
                assert list(body.get("usage") or body["total_usage"]) == (USAGE_09 if v09 else USAGE_04)
            if body["type"] == "tool_call_start":
                assert list(body["input"]) == sorted(body["input"])  # no preserve_order in agent-sdk
            if body["type"] == "tool_call_end":
                assert list(body["result"]) == ["success", "output", "data", "duration_ms"]
    assert len(seq0) == 1 and seq0 <= {0, 1}  # one host: one convention


def test_agent_sdk_lifecycle() -> None:
    runs = by_run(gen(SDK))
    waiting = {}  # thread: confirmed call id, of runs that ended awaiting confirmation
    resumed = 0
    for lines in runs.values():
        events = [o.get("event") or o["envelope"] for o in lines if "final_state" not in o]
        kinds = [e["type"] for e in events]
        if kinds[-1] == "tool_requires_confirmation":
            waiting[lines[0]["thread_id"]] = events[-1]["id"]
        if kinds[0] != "start":  # a resume: the confirmed call's end, then the paused turn's turn_complete
            assert kinds[:2] == ["tool_call_end", "turn_complete"]
            assert waiting.pop(lines[0]["thread_id"]) == events[0]["id"]
            resumed += 1
        if "event" in lines[0]:  # 0.4.x: turn_complete only for turns that called tools
            turn: list[str] = []
            for kind in kinds:
                if kind == "start":
                    turn = []
                turn.append(kind)
                if kind == "turn_complete":
                    assert {"tool_call_start", "tool_call_end"} & set(turn)
    assert resumed > 10


def test_duplicates_are_identical_copies_arriving_later() -> None:
    sc = EventScenario("behest", seed=5, runs=200, formats=("bare", "envelope"), duplicates=0.2, reorder_s=0.5)
    stream, clean = (
        generate(sc),
        generate(EventScenario("behest", seed=5, runs=200, formats=("bare", "envelope"), reorder_s=0.5)),
    )
    first: dict[bytes, float] = {}
    copies = 0
    for line in stream.lines:
        if line.data in first:
            copies += 1
            assert first[line.data] < line.at <= first[line.data] + DUPLICATE_WITHIN_S
        first.setdefault(line.data, line.at)
    assert copies == stream.truth.duplicate_lines > 0.15 * len(first)
    assert set(first) == {line.data for line in clean.lines}
    assert counted(stream.truth) == counted(clean.truth) and stream.truth.valid_lines == len(first)


def test_reordering_moves_arrivals_only() -> None:
    still = generate(EventScenario("agent_sdk", seed=9, runs=150, formats=("v0.4", "v0.9")))
    shaken = generate(EventScenario("agent_sdk", seed=9, runs=150, formats=("v0.4", "v0.9"), reorder_s=3.0))
    assert sorted(line.data for line in still.lines) == sorted(line.data for line in shaken.lines)
    assert still.truth == shaken.truth
    for stream, reorder in ((still, 0.0), (shaken, 3.0)):
        out_of_order, last = 0, dict[str, int]()
        for line in stream.lines:
            obj = json.loads(line.data)
            s = sent(obj) / NS
            assert s <= line.at <= s + 0.001 + MAX_DELAY_S + reorder
            seq = obj.get("seq", obj.get("envelope", {}).get("sequence"))
            if seq is not None:
                out_of_order += seq < last.get(obj["run_id"], -1)
                last[obj["run_id"]] = max(seq, last.get(obj["run_id"], -1))
        assert (out_of_order > 0) == (reorder > 0)


@pytest.mark.parametrize(
    "clean",
    [
        EventScenario("behest", seed=2, runs=80, formats=("bare", "envelope")),
        EventScenario("agent_sdk", seed=2, runs=80, formats=("v0.4", "v0.9")),
    ],
    ids=["behest", "agent_sdk"],
)
def test_bad_and_unknown_lines_change_no_count(clean: EventScenario) -> None:
    before, noisy = generate(clean), generate(dataclasses.replace(clean, malformed=40, unknown_types=12))
    assert counted(noisy.truth) == counted(before.truth)
    valid = {line.data for line in before.lines}
    extra = [line for line in noisy.lines if line.data not in valid]
    assert len(extra) == noisy.truth.malformed_lines + noisy.truth.unknown_lines == 52
    kinds: Counter[str] = Counter()
    for line in extra:
        try:
            obj = json.loads(line.data)
        except ValueError:
            kinds["bad json"] += 1
            continue
        if not isinstance(obj, dict):
            kinds["not an object"] += 1
        elif "level" in obj:
            kinds["unknown format"] += 1
        elif "run_id" not in (next(iter(obj.values())) if len(obj) == 1 else obj):
            kinds["missing run_id"] += 1
        else:  # a newer runtime's type, in a real run, arriving after it was written
            assert run_id_of(obj) in before.truth.run_ids and sent(obj) / NS <= line.at
            inner = obj.get("event") or obj.get("envelope") or obj
            assert "GuardrailTriggered" in inner or inner.get("type") == "guardrail_triggered"
            kinds["unknown"] += 1
    assert kinds == {"bad json": 10, "not an object": 10, "unknown format": 10, "missing run_id": 10, "unknown": 12}


def test_due_and_body() -> None:
    stream = generate(EventScenario("behest", seed=4, runs=30, duplicates=0.1))
    assert [line.at for line in stream.lines] == sorted(line.at for line in stream.lines)
    start, end = stream.lines[0].at, stream.lines[-1].at
    windows = [start - 1 + i * 0.5 for i in range(int((end - start) / 0.5) + 4)]
    posted = [data for a, b in itertools.pairwise(windows) for data in stream.due(a, b)]
    assert posted == [line.data for line in stream.lines]
    assert stream.body().split(b"\n") == [*posted, b""]
    first = json.loads(stream.lines[0].data)
    assert first["RunStarted"]["timestamp"] == "2026-05-28T20:26:40Z"  # EventScenario.start, 1 780 000 000


def test_scenario_checks_its_formats() -> None:
    with pytest.raises(ValueError, match="line format"):
        EventScenario("behest", formats=("v0.4",))
    with pytest.raises(ValueError, match="line format"):
        EventScenario("agent_sdk", formats=("bare",))
    assert EventScenario("agent_sdk").line_formats() == ("v0.4",)
