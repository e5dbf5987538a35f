"""Event lines → events → finished runs: the wire formats, both runtimes' mappings, docs/event-sources.md."""

from __future__ import annotations

import json
from typing import Any

import pytest

from exporter.events import agent_sdk, behest, wire
from exporter.events.timeline import Timed, trace_id
from exporter.model import FinishedRun

RUN = "6972359a-1b2c-4d5e-8f90-0123456789ab"
T0 = "2026-06-26T09:00:"


def line(raw: dict[str, Any]) -> bytes:
    return json.dumps(raw).encode()


def bare(variant: str, second: float, **fields: Any) -> dict[str, Any]:
    return {variant: {"run_id": RUN, **fields, "timestamp": f"{T0}{second:012.9f}Z"}}


def sdk(kind: str, second: float, seq: int, **fields: Any) -> dict[str, Any]:
    return {
        "ts": f"{T0}{second:06.3f}Z",
        "thread_id": "th-1",
        "run_id": RUN,
        "seq": seq,
        "model": "claude-3-5-haiku-20241022",
        "provider": "anthropic",
        "event": {"type": kind, **fields},
    }


def parsed(raw: dict[str, Any]) -> wire.Event:
    event = wire.parse(line(raw))
    assert isinstance(event, wire.Event)
    return event


def timeline(raws: list[dict[str, Any]]) -> list[Timed]:
    events = sorted((parsed(r) for r in raws), key=lambda e: (e.ts_ns, e.seq or 0))
    return [Timed(e.ts_ns, e.type, e.data) for e in events]


def fold_behest(raws: list[dict[str, Any]], expired: bool = False) -> FinishedRun:
    return behest.fold(RUN, timeline(raws), expired)


def fold_sdk(raws: list[dict[str, Any]], expired: bool = False) -> FinishedRun:
    return agent_sdk.fold(RUN, timeline(raws), expired)


# -- wire ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-06-26T09:00:00.858110195Z", 1782464400_858110195),
        ("2026-06-26T09:00:00.858Z", 1782464400_858000000),
        ("2026-06-26T09:00:00Z", 1782464400_000000000),
        ("2026-06-26T11:00:00.5+02:00", 1782464400_500000000),
    ],
)
def test_times_keep_every_nanosecond(text: str, expected: int) -> None:
    assert wire.nanos(text) == expected


@pytest.mark.parametrize("text", ["2026-06-26 09:00", "2026-13-26T09:00:00Z", "2026-06-26T09:00:00.1234567890Z", ""])
def test_bad_times_are_refused(text: str) -> None:
    with pytest.raises(wire.BadLine):
        wire.nanos(text)


def test_each_line_format_is_recognised_with_its_identity() -> None:
    event = bare("RunStarted", 0.5, session_id="s", provider="openai", model="gpt-4o-mini")
    plain = parsed(event)
    assert (plain.runtime, plain.run_id, plain.type) == ("behest", RUN, "RunStarted")
    assert plain.key == f"b:{RUN}:RunStarted:{T0}00.500000000Z"
    envelope = parsed({"event_id": "0190-e", "seq": 3, "run_id": RUN, "session_id": None, "event": event})
    assert (envelope.key, envelope.seq, envelope.ts_ns) == ("e:0190-e", 3, plain.ts_ns)
    old = parsed(sdk("start", 1.0, 0, thread_id="th-1", turn=1))
    assert (old.runtime, old.key, old.data["model"], old.data["turn"]) == (
        "agent_sdk",
        f"s:{RUN}:0",
        old.data["model"],
        1,
    )
    new = parsed(
        {
            "thread_id": "th-1",
            "turn": 1,
            "run_id": RUN,
            "envelope": {"event_id": "a639", "sequence": 0, "timestamp": f"{T0}01.5Z", "type": "start", "turn": 1},
        }
    )
    assert (new.key, new.seq, new.type) == ("e:a639", 0, "start")
    final = parsed({"ts": f"{T0}09Z", "run_id": RUN, "final_state": {"kind": "error", "message": "LLM error: x"}})
    assert (final.type, final.terminal, final.data["kind"]) == ("final_state", True, "error")


def test_an_unsequenced_wrapper_line_is_identified_by_its_bytes() -> None:
    raw = sdk("text", 1.0, 0)
    del raw["seq"]
    first, again = parsed(raw), parsed(raw)
    assert first.key == again.key and first.key.startswith("h:")
    assert parsed({**raw, "ts": f"{T0}02.000Z"}).key != first.key


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"a": 1, "b": 2}', "unknown line format"),
        (line({"ts": f"{T0}01Z", "thread_id": "t", "event": {"type": "start", "turn": 1}}), "missing run_id"),
        (line(bare("ModelStarted", 1, provider="x", model="m", iteration="one")), "iteration"),
        (line(bare("UsageRecorded", 1, usage={"input_tokens": -3})), "non-negative"),
        (line({"RunStarted": {"run_id": RUN, "timestamp": "yesterday"}}), "RFC 3339"),
        (line(bare("RunCompleted", 1, finish_reason=7, iterations=1)), "finish_reason"),
        (line(sdk("tool_call_end", 1, 4, id="c", name="bash", result={"output": "x"})), "result.success"),
    ],
)
def test_bad_lines_are_rejected_with_a_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(wire.BadLine, match=reason):
        wire.parse(raw)


def test_lines_of_unknown_types_are_ignored_not_rejected() -> None:
    assert wire.parse(line(bare("PlanUpdated", 1))) == wire.Unknown("behest", "PlanUpdated")
    assert wire.parse(line(sdk("plan_updated", 1, 3))) == wire.Unknown("agent_sdk", "plan_updated")


def test_only_what_the_mappers_read_is_kept() -> None:
    delta = parsed(bare("TextDelta", 1, delta="a very long answer " * 100))
    assert delta.data == {}
    end = parsed(
        sdk("tool_call_end", 1, 4, id="c", name="bash", result={"success": False, "output": "Blocked: " + "x" * 999})
    )
    assert end.data["result"] == {"success": False, "output": "Blocked: xxxxxxx", "duration_ms": None}


def test_trace_ids_are_the_run_ids_bits() -> None:
    assert trace_id(RUN) == RUN.replace("-", "")
    assert len(trace_id("host-minted-7")) == 32 and trace_id("host-minted-7") == trace_id("host-minted-7")


# -- behest ----------------------------------------------------------------------------------------

ANTHROPIC = {"provider": "anthropic", "model": "claude-sonnet-4-20250514"}


def behest_run_with_tools() -> list[dict[str, Any]]:
    return [
        bare("RunStarted", 0.0, session_id="sess", **ANTHROPIC),
        bare("ContextBuilt", 0.1, message_count=3),
        bare("ModelStarted", 0.2, iteration=1, **ANTHROPIC),
        bare("ToolCallStarted", 0.5, call_id="c1", tool_name="web_search"),
        bare("ToolCallDelta", 0.6, call_id="c1", delta="{}"),
        bare("ToolCallCompleted", 0.7, call={"id": "c1", "name": "web_search", "arguments": {}}),
        bare("ToolCallStarted", 0.8, call_id="c2", tool_name="read_file"),
        bare("ToolCallCompleted", 0.9, call={"id": "c2", "name": "read_file", "arguments": None}),
        bare(
            "UsageRecorded",
            1.0,
            usage={
                "input_tokens": 100,
                "output_tokens": 20,
                "total_tokens": 120,
                "cache_creation_input_tokens": 30,
                "cache_read_input_tokens": 50,
                "cached_input_tokens": None,
            },
        ),
        bare("AssistantMessageCommitted", 1.2, message_id="m1"),
        bare("ToolMessageCommitted", 2.0, message_id="t1"),
        bare("ToolMessageCommitted", 2.5, message_id="t2"),
        bare("ModelStarted", 3.0, iteration=2, **ANTHROPIC),
        bare("TextDelta", 3.4, delta="Done"),
        bare("TextDelta", 3.5, delta="."),
        bare("UsageRecorded", 3.9, usage={"input_tokens": 300, "output_tokens": 40, "total_tokens": 340}),
        bare("AssistantMessageCommitted", 4.0, message_id="m2"),
        bare("RunCompleted", 4.5, finish_reason="stop", iterations=2),
    ]


def test_a_behest_run_with_tools() -> None:
    finished = fold_behest(behest_run_with_tools())
    run = finished.run
    assert (finished.status, run.status, run.stop_reason, run.runtime) == ("completed", "completed", "stop", "behest")
    assert run.id == f"behest:{RUN}" and run.conversation_id == "sess"
    assert run.total_duration_ns == 4_500_000_000
    assert run.ttft_ns == 500_000_000  # the streamed first call's first tool-call chunk
    first, second = finished.steps
    assert (first.status, first.stop_reason, second.stop_reason) == ("success", "tool_calls", "stop")
    # cached tokens inside input, as Letta counts them
    assert (first.input_tokens, first.cached_input_tokens, first.cache_write_tokens) == (180, 50, 30)
    assert (second.input_tokens, second.output_tokens) == (300, 40)
    assert {s.trace_id for s in finished.steps} == {RUN.replace("-", "")}
    assert [(c.name, c.status, c.step_id) for c in finished.tool_calls or ()] == [
        ("web_search", "unknown", first.id),
        ("read_file", "unknown", first.id),
    ]
    timing = finished.step_metrics[first.id]
    assert (timing.llm_request_ns, timing.tool_execution_ns, timing.step_ns) == (
        1_000_000_000,
        1_300_000_000,
        2_300_000_000,
    )


def test_behest_order_is_event_time_not_arrival() -> None:
    events = behest_run_with_tools()
    shuffled = events[::-1]
    assert fold_behest(shuffled) == fold_behest(events)


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        ("iteration limit exceeded: 10", "max_iterations"),
        ("token budget exceeded: 5000 > 4000", "token_budget"),
        ("doom loop detected: web_search x3", "doom_loop"),
        ("store unavailable", "error"),
    ],
)
def test_behest_failures_are_classified_by_their_text(error: str, reason: str) -> None:
    finished = fold_behest(
        [
            bare("RunStarted", 0, **ANTHROPIC),
            bare("ModelStarted", 0.1, iteration=1, **ANTHROPIC),
            bare("ToolCallCompleted", 0.5, call={"id": "c1", "name": "bash", "arguments": {}}),
            bare("AssistantMessageCommitted", 0.6, message_id="m"),
            bare("DoomLoopDetected", 0.7, description="x"),
            bare("RunFailed", 0.8, error=error),
        ]
    )
    assert (finished.status, finished.run.stop_reason, finished.run.raw_stop_reason) == ("failed", reason, error)
    assert [c.status for c in finished.tool_calls or ()] == ["not_executed"]  # no ToolMessageCommitted followed


def test_unknown_finish_reasons_fold_to_other_with_the_raw_value_kept() -> None:
    events = behest_run_with_tools()
    events[-1] = bare("RunCompleted", 4.5, finish_reason={"unknown": "refusal"}, iterations=2)
    run = fold_behest(events).run
    assert (run.stop_reason, run.raw_stop_reason) == ("other", "unknown:refusal")


def test_openai_streaming_steps_have_unknown_usage_not_zero() -> None:
    openai = {"provider": "openai", "model": "gpt-4o-mini"}
    finished = fold_behest(
        [
            bare("RunStarted", 0, **openai),
            bare("ModelStarted", 0.1, iteration=1, **openai),
            bare("TextDelta", 0.3, delta="a"),
            bare("TextDelta", 0.4, delta="b"),
            bare("AssistantMessageCommitted", 0.6, message_id="m"),
            bare("RunCompleted", 0.7, finish_reason="stop", iterations=1),
        ]
    )
    (step,) = finished.steps
    assert step.usage_reported is False and step.input_tokens == 0


def test_cache_metrics_fill_in_for_usage_without_cache_fields() -> None:
    events = behest_run_with_tools()
    events.insert(
        16,
        bare("CacheMetrics", 3.95, cache_creation_input_tokens=0, cache_read_input_tokens=200, cached_input_tokens=0),
    )
    second = fold_behest(events).steps[1]
    assert (second.input_tokens, second.cached_input_tokens) == (500, 200)


def test_a_silent_behest_run_expires_with_what_it_showed() -> None:
    events = behest_run_with_tools()[:14]  # ends in the second call's deltas: a provider error
    finished = fold_behest(events, expired=True)
    assert (finished.status, finished.run.status, finished.run.stop_reason) == ("expired", "running", None)
    assert [s.status for s in finished.steps] == ["success", "pending"]
    assert finished.run.total_duration_ns is None


def test_a_non_streaming_first_call_has_no_ttft() -> None:
    events = [e for e in behest_run_with_tools() if next(iter(e)) not in ("ToolCallStarted", "ToolCallDelta")]
    assert fold_behest(events).run.ttft_ns is None


# -- agent-sdk -------------------------------------------------------------------------------------


def sdk_run_04() -> list[dict[str, Any]]:
    """0.4.4: turn 1 calls tools (turn_complete), turn 2 answers (its usage only in done)."""
    return [
        sdk("start", 0.0, 0, thread_id="th-1", turn=1),
        sdk("text_delta", 0.4, 1, message_id="m", delta="Let me"),
        sdk("tool_call_start", 1.0, 2, id="c1", name="bash", display_name="Bash", input={}, tier="Observe"),
        sdk(
            "tool_call_end",
            1.5,
            3,
            id="c1",
            name="bash",
            display_name="Bash",
            result={"success": True, "output": "ok", "data": None, "duration_ms": 420},
        ),
        sdk("tool_call_start", 1.6, 4, id="c2", name="send_email", display_name="Mail", input={}, tier="Confirm"),
        sdk(
            "tool_call_end",
            1.7,
            5,
            id="c2",
            name="send_email",
            display_name="Mail",
            result={"success": False, "output": "Blocked: policy", "data": None, "duration_ms": None},
        ),
        sdk("turn_complete", 1.8, 6, turn=1, usage={"input_tokens": 1000, "output_tokens": 100}),
        sdk("start", 1.9, 7, thread_id="th-1", turn=2),
        sdk("text", 2.5, 8, message_id="m2", text="done"),
        sdk(
            "done",
            2.6,
            9,
            thread_id="th-1",
            total_turns=2,
            total_usage={"input_tokens": 2500, "output_tokens": 160},
            duration={"secs": 2, "nanos": 700000000},
        ),
    ]


def test_an_agent_sdk_04_run() -> None:
    finished = fold_sdk(sdk_run_04())
    run = finished.run
    assert (finished.status, run.stop_reason, run.conversation_id) == ("completed", None, "th-1")
    assert run.total_duration_ns == 2_700_000_000  # done.duration, the call's own clock
    assert run.ttft_ns == 400_000_000
    first, last = finished.steps
    assert (first.stop_reason, first.input_tokens, last.stop_reason) == ("tool_use", 1000, None)
    assert (last.input_tokens, last.output_tokens) == (1500, 60)  # done.total_usage minus turn 1
    assert (first.model, first.provider) == ("claude-3-5-haiku-20241022", "anthropic")
    calls = [(c.name, c.status, c.duration_ns) for c in finished.tool_calls or ()]
    assert calls == [("bash", "success", 420_000_000), ("send_email", "blocked", None)]
    timing = finished.step_metrics[first.id]
    assert (timing.llm_request_ns, timing.tool_execution_ns, timing.step_ns) == (
        1_000_000_000,
        700_000_000,
        1_800_000_000,
    )


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("Maximum turns (10) reached", "max_turns"),
        ("Rate limited after 5 retries", "rate_limited"),
        ("Server error after 5 retries: 503", "server_error"),
        ("Failed to append message", "error"),
    ],
)
def test_agent_sdk_errors_fail_the_run(message: str, reason: str) -> None:
    finished = fold_sdk([*sdk_run_04()[:8], sdk("error", 2.0, 8, message=message, recoverable=True)])
    assert (finished.status, finished.run.stop_reason) == ("failed", reason)
    assert [s.status for s in finished.steps] == ["success", "failed"]


def test_a_confirmation_ends_the_run_and_the_resume_finishes_the_paused_turn() -> None:
    paused = fold_sdk(
        [
            sdk("start", 0.0, 0, thread_id="th-1", turn=1),
            sdk("tool_call_start", 0.5, 1, id="c9", name="send_email", display_name="Mail", input={}, tier="Confirm"),
            sdk("tool_requires_confirmation", 0.6, 2, id="c9", name="send_email", input={}, description="send?"),
        ]
    )
    assert (paused.status, paused.run.stop_reason, paused.steps) == ("completed", "requires_approval", ())
    resumed = fold_sdk(
        [
            sdk(
                "tool_call_end",
                5.0,
                0,
                id="c9",
                name="send_email",
                display_name="Mail",
                result={"success": True, "output": "sent", "data": None, "duration_ms": 90},
            ),
            sdk("turn_complete", 5.1, 1, turn=1, usage={"input_tokens": 700, "output_tokens": 30}),
            sdk("start", 5.2, 2, thread_id="th-1", turn=2),
            sdk(
                "done",
                6.0,
                3,
                thread_id="th-1",
                total_turns=2,
                total_usage={"input_tokens": 1500, "output_tokens": 80},
                duration={"secs": 1, "nanos": 0},
            ),
        ]
    )
    carried, answer = resumed.steps
    assert (carried.input_tokens, carried.stop_reason, answer.input_tokens) == (700, "tool_use", 800)
    assert [(c.name, c.status) for c in resumed.tool_calls or ()] == [("send_email", "success")]


def test_a_paused_call_without_an_end_awaits_confirmation() -> None:
    run = [
        sdk("start", 0.0, 0, thread_id="th-1", turn=1),
        sdk("tool_call_start", 0.5, 1, id="c9", name="bash", display_name="B", input={}, tier="Confirm"),
        sdk("turn_complete", 0.55, 2, turn=1, usage={"input_tokens": 1, "output_tokens": 1}),
    ]
    run.append(sdk("tool_requires_confirmation", 0.6, 3, id="c9", name="bash", input={}, description="?"))
    assert [c.status for c in fold_sdk(run).tool_calls or ()] == ["awaiting_confirmation"]


def test_a_repeated_turn_complete_never_adds_usage_twice() -> None:
    events = sdk_run_04()
    events.insert(7, sdk("turn_complete", 1.85, 60, turn=1, usage={"input_tokens": 5000, "output_tokens": 900}))
    assert fold_sdk(events).steps[0].input_tokens == 1000


def test_agent_sdk_tool_outcomes() -> None:
    def end(call: str, success: bool, output: str, at: float) -> dict[str, Any]:
        return sdk(
            "tool_call_end",
            at,
            int(at * 10),
            id=call,
            name="bash",
            display_name="B",
            result={"success": success, "output": output, "data": None, "duration_ms": 5},
        )

    events = [
        sdk("start", 0.0, 0, thread_id="th-1", turn=1),
        end("a", False, "Rejected: by user", 0.1),
        end("b", False, "Unknown tool: nope", 0.2),
        end("c", False, "exit status 1", 0.3),
        sdk("tool_call_start", 0.4, 4, id="d", name="bash", display_name="B", input={}, tier="Observe"),
        sdk("error", 0.5, 5, message="Failed to get history", recoverable=False),
    ]
    assert [c.status for c in fold_sdk(events).tool_calls or ()] == ["rejected", "error", "error", "unknown"]


def test_a_host_final_state_ends_a_silent_run() -> None:
    events = [
        *sdk_run_04()[:8],
        {
            "ts": f"{T0}09Z",
            "thread_id": "th-1",
            "run_id": RUN,
            "final_state": {"kind": "error", "message": "LLM error: connection reset", "recoverable": False},
        },
    ]
    finished = fold_sdk(events)
    assert (finished.status, finished.run.stop_reason) == ("failed", "llm_error")


def test_v09_runs_refusals_cancels_and_budgets() -> None:
    def v09(kind: str, second: float, seq: int, **fields: Any) -> dict[str, Any]:
        envelope = {
            "event_id": f"ev-{seq}",
            "sequence": seq,
            "timestamp": f"{T0}{second:06.3f}Z",
            "type": kind,
            **fields,
        }
        return {
            "thread_id": "th",
            "turn": 1,
            "run_id": RUN,
            "model": "gpt-4o",
            "provider": "openai",
            "envelope": envelope,
        }

    start = v09("start", 0, 0, thread_id="th", turn=1)
    usage = {"input_tokens": 900, "output_tokens": 50, "cached_input_tokens": 600, "cache_creation_input_tokens": 0}
    complete = v09("turn_complete", 1, 1, turn=1, usage=usage)
    refused = fold_sdk([start, complete, v09("refusal", 1.1, 2, message_id="m", text=None)])
    assert (refused.status, refused.run.stop_reason, refused.steps[0].cached_input_tokens) == (
        "completed",
        "refusal",
        600,
    )
    cancelled = fold_sdk([start, v09("cancelled", 0.5, 1, turn=1, usage=usage)])
    assert (cancelled.status, cancelled.steps[0].status) == ("cancelled", "cancelled")
    budget = v09(
        "budget_exceeded", 1.2, 2, thread_id="th", total_turns=1, total_usage=usage, duration_ms=1200, limit="cost_usd"
    )
    over = fold_sdk([start, complete, budget])
    assert (over.status, over.run.stop_reason, over.run.total_duration_ns) == (
        "failed",
        "budget_cost_usd",
        1_200_000_000,
    )
