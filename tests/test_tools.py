"""Tool calls: read from a run's messages, counted per tool and status, timed, and put on spans."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import httpx2
import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import StatusCode

from exporter.letta import LettaClient, records
from exporter.letta.details import RunDetails
from exporter.letta.records import RUN, STEP, STEP_METRICS
from exporter.metrics import ExporterMetrics
from exporter.model import FinishedRun, StepMetrics, ToolCall
from exporter.problems import ProblemLog
from exporter.simulator.clock import no_sleep
from exporter.spans import build_spans
from exporter.types import ProblemKind
from tests.samples import sample

RUN_ID = "run-bcc66b21-d2c0-459d-b866-0a96b0f0f64d"
TOOL_STEP = "step-15b3e2dd-5f48-4312-a936-c031d27b6d27"


def call_message(step: str, *calls: tuple[str, str]) -> dict[str, Any]:
    """A tool_call_message as 0.16.8 writes parallel calls: `tool_call` is the first of `tool_calls`."""
    listed = [{"name": name, "arguments": "{}", "tool_call_id": call_id} for name, call_id in calls]
    return {
        "id": f"message-call-{calls[0][1]}",
        "message_type": "tool_call_message",
        "step_id": step,
        "tool_call": listed[0],
        "tool_calls": listed,
    }


def return_message(step: str, *returns: tuple[str, str]) -> dict[str, Any]:
    listed = [{"type": "tool", "status": status, "tool_call_id": call_id} for call_id, status in returns]
    first_id, first_status = returns[0]
    return {
        "id": f"message-return-{first_id}",
        "message_type": "tool_return_message",
        "step_id": step,
        "status": first_status,
        "tool_call_id": first_id,
        "tool_returns": listed,
    }


def read(messages: list[Any]) -> tuple[tuple[ToolCall, ...], list[ProblemKind]]:
    problems: list[ProblemKind] = []
    return records.tool_calls(messages, problems), problems


def test_the_recorded_run_has_one_successful_conversation_search() -> None:
    calls, problems = read(sample("run_messages"))
    assert calls == (
        ToolCall(name="conversation_search", call_id="call_644ce2599b6f41a68fd0", step_id=TOOL_STEP, status="success"),
    )
    assert problems == []


def test_parallel_calls_unreturned_calls_and_repeats() -> None:
    messages = [
        call_message("step-1", ("web_search", "c1"), ("run_code", "c2"), ("web_search", "c3")),
        return_message("step-1", ("c1", "success"), ("c2", "error")),  # c3 has no return
        call_message("step-1", ("web_search", "c1")),  # the same message read twice (paging overlap)
        return_message("step-2", ("c9", "success")),  # a return whose call is not in the answer: no call
    ]
    calls, problems = read(messages)
    assert [(c.name, c.call_id, c.status) for c in calls] == [
        ("web_search", "c1", "success"),
        ("run_code", "c2", "error"),
        ("web_search", "c3", "unknown"),
    ]
    assert problems == []


def test_returns_may_come_before_calls_and_the_deprecated_fields_suffice() -> None:
    legacy_return = {
        "id": "m2",
        "message_type": "tool_return_message",
        "step_id": "s",
        "status": "error",
        "tool_call_id": "c1",
    }
    legacy_call = {
        "id": "m1",
        "message_type": "tool_call_message",
        "step_id": "s",
        "tool_call": {"name": "fetch_webpage", "tool_call_id": "c1"},
    }
    calls, _ = read([legacy_return, legacy_call])
    assert [(c.name, c.status) for c in calls] == [("fetch_webpage", "error")]


def test_bad_messages_are_counted_and_skipped() -> None:
    messages = [
        "not an object",
        {"id": "m1", "message_type": "tool_call_message", "tool_calls": [{"arguments": "{}"}]},  # no name
        call_message("s", ("ok_tool", "c1")),
        return_message("s", ("c1", "timeout")),  # a status Letta does not define
    ]
    calls, problems = read(messages)
    assert [(c.name, c.status) for c in calls] == [("ok_tool", "unknown")]
    assert sorted(problems) == ["invalid_message", "invalid_message", "unknown_tool_status"]


@pytest.mark.parametrize(
    ("kept", "types", "hidden"),
    [
        (None, None, False),
        ([], None, False),  # Letta: an empty list filters nothing
        (["assistant_message"], ("assistant_message",), True),
        (["tool_call_message", "assistant_message"], ("tool_call_message", "assistant_message"), True),
        (["tool_call_message", "tool_return_message"], ("tool_call_message", "tool_return_message"), False),
    ],
)
def test_a_runs_message_filter_is_read_from_its_request_config(
    kept: list[str] | None, types: tuple[str, ...] | None, hidden: bool
) -> None:
    raw = copy.deepcopy(sample("run"))
    raw["request_config"]["include_return_message_types"] = kept
    run = RUN(raw)
    assert run.message_types == types
    assert run.tool_messages_hidden is hidden


def paged_messages(messages: list[dict[str, Any]], keep: set[str] | None, seen: list[dict[str, str]]) -> LettaClient:
    """A messages endpoint that filters after paging, as Letta does for a run with a message filter."""

    def handler(request: httpx2.Request) -> httpx2.Response:
        params = dict(request.url.params)
        seen.append(params)
        ids = [m["id"] for m in messages]
        start = ids.index(params["after"]) + 1 if "after" in params else 0
        page = messages[start : start + int(params["limit"])]
        return httpx2.Response(200, json=[m for m in page if keep is None or m["message_type"] in keep])

    return LettaClient("http://letta.test", ExporterMetrics(), transport=httpx2.MockTransport(handler), sleep=no_sleep)


def conversation(n: int) -> list[dict[str, Any]]:
    """n steps, each a reasoning message then a call and its return."""
    out: list[dict[str, Any]] = []
    for i in range(n):
        out.append({"id": f"message-{i:03d}-r", "message_type": "reasoning_message", "step_id": f"s{i}"})
        out.append(call_message(f"s{i}", ("archival_memory_search", f"c{i}")) | {"id": f"message-{i:03d}-c"})
        out.append(return_message(f"s{i}", (f"c{i}", "success")) | {"id": f"message-{i:03d}-t"})
    return out


def test_an_unfiltered_run_stops_at_its_first_short_page() -> None:
    seen: list[dict[str, str]] = []
    client = paged_messages(conversation(4), None, seen)
    got = asyncio.run(client.run_messages(RUN_ID, filtered=False, page_size=5))
    assert len(got) == 12
    assert [p.get("after") for p in seen] == [None, "message-001-c", "message-003-r"]  # 5, 5, 2: done


def test_a_filtered_run_reads_past_short_pages_until_an_empty_one() -> None:
    seen: list[dict[str, str]] = []
    keep = {"tool_call_message", "tool_return_message"}
    client = paged_messages(conversation(4), keep, seen)
    got = asyncio.run(client.run_messages(RUN_ID, filtered=True, page_size=5))
    calls, _ = read(got)
    assert [c.call_id for c in calls] == ["c0", "c1", "c2", "c3"]  # every page came back short
    assert len(seen) == 4  # ... the last one empty


class Recorded:
    """The recorded run's endpoints, its messages answering `status`; remembers what was asked."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.asked: list[str] = []
        self.answers = {
            f"/v1/runs/{RUN_ID}/steps": sample("run_steps"),
            f"/v1/runs/{RUN_ID}/metrics": sample("run_metrics"),
            f"/v1/runs/{RUN_ID}/messages": sample("run_messages"),
        }

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        path = request.url.path
        self.asked.append(path)
        if path.endswith("/messages") and self.status != 200:
            return httpx2.Response(self.status, json={"detail": "gone"})
        if path.startswith("/v1/steps/"):
            return httpx2.Response(200, json=sample("step_metrics"))
        return httpx2.Response(200, json=self.answers[path])

    def details(self, tools: bool = True) -> RunDetails:
        metrics = ExporterMetrics()
        client = LettaClient("http://letta.test", metrics, transport=httpx2.MockTransport(self), sleep=no_sleep)
        return RunDetails(client, records.Reading(ProblemLog(metrics)), True, lambda: 0.0, tools=tools)


def test_details_read_tool_calls_with_one_request_and_only_when_asked() -> None:
    run = RUN(sample("run"))
    on = Recorded()
    finished = asyncio.run(on.details().fetch(run, last_try=False))
    assert [(c.name, c.status) for c in finished.tool_calls or ()] == [("conversation_search", "success")]
    assert finished.tool_messages_missing is None
    assert on.asked.count(f"/v1/runs/{RUN_ID}/messages") == 1
    off = Recorded()
    finished = asyncio.run(off.details(tools=False).fetch(run, last_try=False))
    assert finished.tool_calls is None and finished.tool_messages_missing is None
    assert not any(p.endswith("/messages") for p in off.asked)


def test_filtered_and_unavailable_tool_messages_are_reported_not_guessed() -> None:
    raw = copy.deepcopy(sample("run"))
    raw["request_config"]["include_return_message_types"] = ["assistant_message"]
    handler = Recorded()
    finished = asyncio.run(handler.details().fetch(RUN(raw), last_try=False))
    assert (finished.tool_calls, finished.tool_messages_missing) == (None, "filtered")
    assert not any(p.endswith("/messages") for p in handler.asked)  # the answer would leave them out
    gone = asyncio.run(Recorded(404).details().fetch(RUN(sample("run")), last_try=False))
    assert (gone.tool_calls, gone.tool_messages_missing) == (None, "unavailable")


def finished_with(calls: tuple[ToolCall, ...], tool_ns: int | None = 30_000_000) -> FinishedRun:
    listed = next(r for r in sample("runs_list") if r["id"] == RUN_ID)
    steps = tuple(STEP(s) for s in sample("run_steps"))
    timing = STEP_METRICS(sample("step_metrics")).model_copy(update={"tool_execution_ns": tool_ns})
    return FinishedRun(
        run=RUN(listed),
        status="completed",
        steps=steps,
        step_metrics={TOOL_STEP: timing, steps[0].id: StepMetrics(step_ns=1)},
        tool_calls=calls,
    )


def test_calls_are_counted_by_tool_and_status_and_one_tool_steps_are_timed() -> None:
    m = ExporterMetrics(tools=True)
    m.ledger.record(finished_with((ToolCall(name="web_search", call_id="a", step_id=TOOL_STEP, status="error"),)))
    parallel = (
        ToolCall(name="web_search", call_id="b", step_id=TOOL_STEP, status="success"),
        ToolCall(name="run_code", call_id="c", step_id=TOOL_STEP, status="unknown"),
    )
    m.ledger.record(finished_with(parallel))
    get = m.registry.get_sample_value
    assert get("letta_tool_calls_total", {"tool": "web_search", "status": "error"}) == 1
    assert get("letta_tool_calls_total", {"tool": "web_search", "status": "success"}) == 1
    assert get("letta_tool_calls_total", {"tool": "run_code", "status": "unknown"}) == 1
    assert get("letta_tool_duration_seconds_count", {"tool": "web_search"}) == 1  # not the parallel step
    assert get("letta_tool_duration_seconds_sum", {"tool": "web_search"}) == 0.03
    assert get("letta_tool_duration_seconds_count", {"tool": "run_code"}) is None
    assert get("letta_runs_tool_messages_missing_total", {"reason": "filtered"}) == 0


def test_runs_with_missing_tool_messages_are_counted_once_each() -> None:
    m = ExporterMetrics(tools=True)
    run = finished_with(())
    m.ledger.record(run.model_copy(update={"tool_calls": None, "tool_messages_missing": "filtered"}))
    m.ledger.record(run.model_copy(update={"tool_calls": None, "tool_messages_missing": "unavailable"}))
    get = m.registry.get_sample_value
    assert get("letta_runs_tool_messages_missing_total", {"reason": "filtered"}) == 1
    assert get("letta_runs_tool_messages_missing_total", {"reason": "unavailable"}) == 1


def test_tool_names_past_the_series_cap_fold_into_other() -> None:
    m = ExporterMetrics(tools=True)
    m.ledger._max_series = 2
    calls = tuple(ToolCall(name=f"tool_{i}", call_id=str(i), step_id="elsewhere", status="success") for i in range(4))
    m.ledger.record(finished_with(calls))
    get = m.registry.get_sample_value
    assert get("letta_tool_calls_total", {"tool": "tool_0", "status": "success"}) == 1
    assert get("letta_tool_calls_total", {"tool": "other", "status": "success"}) == 2
    assert get("letta_exporter_series_dropped_total", {"metric": "letta_tool_calls"}) == 2


def test_execute_tool_spans_carry_the_tool_the_call_id_and_errors() -> None:
    parallel = (
        ToolCall(name="web_search", call_id="b", step_id=TOOL_STEP, status="success"),
        ToolCall(name="run_code", call_id="c", step_id=TOOL_STEP, status="error"),
    )
    tools = [s for s in build_spans(finished_with(parallel), Resource({})) if s.name.startswith("execute_tool")]
    assert [s.name for s in tools] == ["execute_tool web_search", "execute_tool run_code"]
    attributes = [dict(s.attributes or {}) for s in tools]
    assert [(a["gen_ai.tool.name"], a["gen_ai.tool.call.id"]) for a in attributes] == [
        ("web_search", "b"),
        ("run_code", "c"),
    ]
    assert [s.status.status_code for s in tools] == [StatusCode.UNSET, StatusCode.ERROR]
    assert len({s.context.span_id for s in tools}) == 2
    assert all(s.end_time - s.start_time == 30_000_000 for s in tools)  # type: ignore[operator]
    anonymous = [s for s in build_spans(finished_with(()), Resource({})) if s.name.startswith("execute_tool")]
    assert [s.name for s in anonymous] == ["execute_tool"]  # timed tool, messages not read
