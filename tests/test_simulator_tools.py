"""The simulated Letta's run messages (tool calls) and agent renames, against its ground truth.

`GET /v1/runs/{run_id}/messages` as 0.16.8 answers it: shapes of the recorded sample, paging in
both orders, the message filter applied after paging, parallel and unreturned calls; agent names
that change over time under stable ids. No sleeps: a fake clock drives the simulator.
"""

from __future__ import annotations

import collections
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.simulated import T0, Sim, factory, only

FIXTURES = Path(__file__).parent / "fixtures" / "letta-0.16.8"
DATE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$")
CALL_ID = re.compile(r"^call_[0-9a-f]{20}$")
MESSAGE_ID = re.compile(r"^message-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
NO_TOOL_KNOBS = {"parallel_tools": 0.0, "tool_errors": 0.0, "tool_unreturned": 0.0}
NO_FILTERS = {"filtered_messages": 0.0, "filtered_keep_tools": 0.0}
TOOL_FIELDS = ("tool_calls", "tool_messages_filtered", "tool_durations")
BUSY = {"seed": 7, "history": 120, "runs_per_second": 20, "max_runs": 150, "duration_scale": 0.05}


@pytest.fixture
def make() -> Iterator[Any]:
    with factory() as made:
        yield made


def calls_of(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tool calls as an exporter reads them from a run's messages: a return's status, else unknown."""
    status = {
        r["tool_call_id"]: r["status"]
        for m in messages
        if m["message_type"] == "tool_return_message"
        for r in m["tool_returns"]
    }
    return [
        {"tool": c["name"], "status": status.get(c["tool_call_id"], "unknown"), "call_id": c["tool_call_id"]}
        | {"step_id": m["step_id"]}
        for m in messages
        if m["message_type"] == "tool_call_message"
        for c in m["tool_calls"]
    ]


def walk(s: Sim, run_id: str, limit: int, order: str) -> list[str]:
    """Every message id, paging with the cursor that means "next" in that order (time-ordered cursors)."""
    cursor = "after" if order == "asc" else "before"
    ids: list[str] = []
    page = s.get(f"/v1/runs/{run_id}/messages", limit=limit, order=order)
    while page:
        assert len(page) <= limit
        ids += [m["id"] for m in page]
        page = s.get(f"/v1/runs/{run_id}/messages", limit=limit, order=order, **{cursor: ids[-1]})
    return ids


# --------------------------------------------------------------------------------------------- shapes


def test_messages_have_the_recorded_shapes(make: Any) -> None:
    s = make(**BUSY, **NO_FILTERS, parallel_tools=0.3, tool_errors=0.2, tool_unreturned=0.1)
    s.clock.now += 3
    sample = json.loads((FIXTURES / "run_messages.json").read_text())
    keys = {m["message_type"]: set(m) for m in sample}
    call_keys = set(sample[1]["tool_call"])
    return_keys = set(sample[2]["tool_returns"][0])
    seen: collections.Counter[str] = collections.Counter()
    all_ids: set[str] = set()
    for run in s.get("/v1/runs/", limit=1000):
        messages = s.messages(run["id"])
        step_ids = {st["id"] for st in s.get(f"/v1/runs/{run['id']}/steps") if st["status"] != "pending"}
        if messages:
            first = messages[0]
            assert first["message_type"] == "user_message" and isinstance(first["content"], str)
            assert first["step_id"] == s.get(f"/v1/runs/{run['id']}/steps", order="asc", limit=1)[0]["id"]
        dates = [m["date"] for m in messages]
        assert dates == sorted(dates)
        for m in messages:
            kind = m["message_type"]
            seen[kind] += 1
            assert set(m) == keys[kind], kind
            assert MESSAGE_ID.match(m["id"]) and m["id"] not in all_ids
            all_ids.add(m["id"])
            assert m["otid"] == m["id"].removeprefix("message-")[:-2] + "00"
            assert DATE.match(m["date"]) and m["run_id"] == run["id"] and m["step_id"] in step_ids
            assert (m["sender_id"], m["is_err"], m["seq_id"]) == (None, None, None)
            if kind == "tool_call_message":
                assert m["name"] is None and m["tool_call"] == m["tool_calls"][0] and 1 <= len(m["tool_calls"]) <= 3
                for call in m["tool_calls"]:
                    assert set(call) == call_keys and CALL_ID.match(call["tool_call_id"])
                    assert isinstance(json.loads(call["arguments"]), dict)
            elif kind == "tool_return_message":
                first_return = m["tool_returns"][0]
                for returned in m["tool_returns"]:
                    assert set(returned) == return_keys and returned["type"] == "tool"
                    assert returned["status"] in ("success", "error")
                assert {k: m[k] for k in return_keys - {"type"}} == {k: first_return[k] for k in return_keys - {"type"}}
            else:
                assert isinstance(m["content"], str) and m["name"] is None
    assert set(seen) == set(keys) and min(seen.values()) > 10


def test_run_json_carries_the_message_filter_in_request_config(make: Any) -> None:
    s = make(**BUSY, filtered_messages=0.3, filtered_keep_tools=0.3)
    s.clock.now += 3
    configs = collections.Counter(
        json.dumps(r["request_config"]["include_return_message_types"]) for r in s.get("/v1/runs/", limit=1000)
    )
    assert set(configs) == {
        "null",
        '["assistant_message"]',
        '["tool_call_message", "tool_return_message", "assistant_message"]',
    }
    for run in s.get("/v1/runs/", limit=5):
        assert run["request_config"] | {"include_return_message_types": None} == {
            "use_assistant_message": True,
            "assistant_message_tool_name": "send_message",
            "assistant_message_tool_kwarg": "message",
            "include_return_message_types": None,
        }
        assert s.get(f"/v1/runs/{run['id']}")["request_config"] == run["request_config"]


# ---------------------------------------------------------------------------------------------- paging


def test_paging_in_both_orders_returns_every_message_once(make: Any) -> None:
    s = make(**BUSY, **NO_FILTERS, parallel_tools=0.5)
    s.clock.now += 3
    runs = [e for e in s.terminal() if len(s.messages(e["id"])) >= 5][:15]
    assert len(runs) == 15
    for entry in runs:
        everything = [m["id"] for m in s.messages(entry["id"])]
        assert len(set(everything)) == len(everything)
        assert [m["id"] for m in s.messages(entry["id"], order="desc")] == everything[::-1]
        assert [m["id"] for m in s.get(f"/v1/runs/{entry['id']}/messages")] == everything  # default: asc, 100
        for limit in (1, 2, 3):
            assert walk(s, entry["id"], limit, "asc") == everything
            assert walk(s, entry["id"], limit, "desc") == everything[::-1]
        # 0.16.8 compares sequence ids: `after` is later, `before` earlier, in either order
        path = f"/v1/runs/{entry['id']}/messages"
        assert [m["id"] for m in s.get(path, after=everything[1])] == everything[2:]
        assert [m["id"] for m in s.get(path, order="desc", after=everything[1])] == everything[2:][::-1]
        assert [m["id"] for m in s.get(path, order="desc", before=everything[3])] == everything[:3][::-1]
        assert [m["id"] for m in s.get(path, order="desc", after=everything[1], limit=2)] == everything[-2:][::-1]
        assert [m["id"] for m in s.get(path, after=everything[0], before=everything[3])] == everything[1:3]


def test_message_route_validation_and_errors(make: Any) -> None:
    s = make(**BUSY)
    s.clock.now += 3
    run_id = next(e["id"] for e in s.terminal() if s.messages(e["id"]))
    path = f"/v1/runs/{run_id}/messages"
    for bad in ("0", "-1", "ten"):
        response = s.client.get(path, params={"limit": bad})
        assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["query", "limit"]
    for name, value in (("order", "up"), ("order_by", "id")):
        response = s.client.get(path, params={name: value})
        assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["query", name]
    unknown = "message-00000000-0000-4000-8000-000000000000"
    response = s.client.get(path, params={"after": unknown})
    assert (response.status_code, response.json()) == (
        404,
        {"detail": f"No message found with id '{unknown}' for agent 'None'."},
    )
    missing = "run-00000000-0000-4000-8000-000000000000"
    response = s.client.get(f"/v1/runs/{missing}/messages")
    assert (response.status_code, response.json()) == (404, {"detail": f"NOT_FOUND: Run with id {missing} not found"})
    assert s.client.get("/v1/runs/not-a-run/messages").status_code == 400
    assert s.client.get(path + "/").status_code == 307
    assert s.sim.requests["GET /v1/runs/{run_id}/messages"] >= 8


def test_the_filter_applies_after_paging_so_pages_come_back_short_or_empty(make: Any) -> None:
    shape = BUSY | NO_TOOL_KNOBS
    plain, hidden, kept = (
        make(**shape, **NO_FILTERS),
        make(**shape, filtered_messages=1.0),
        make(**shape, filtered_messages=0.0, filtered_keep_tools=1.0),
    )
    for s in (plain, hidden, kept):
        s.clock.now += 3
    filters = {
        "hidden": ["assistant_message"],
        "kept": ["tool_call_message", "tool_return_message", "assistant_message"],
    }
    short = empty_before_more = 0
    for entry in plain.terminal()[:60]:
        raw = plain.messages(entry["id"])
        if len(raw) < 3:
            continue
        path = f"/v1/runs/{entry['id']}/messages"
        for name, s in (("hidden", hidden), ("kept", kept)):
            types = filters[name]
            assert s.get(f"/v1/runs/{entry['id']}")["request_config"]["include_return_message_types"] == types
            assert s.messages(entry["id"]) == [m for m in raw if m["message_type"] in types]
            for limit in (1, 2):
                for start in range(len(raw) - 1):
                    cursor = {"after": raw[start]["id"]} if start else {}
                    page = s.get(path, limit=limit, **cursor)
                    window = (raw[start + 1 :] if start else raw)[:limit]
                    assert page == [m for m in window if m["message_type"] in types]
                    short += len(page) < limit
                    empty_before_more += not page and len(raw) > limit
        assert not hidden.get(path, limit=1)  # the user message is the first raw message
        assert not kept.get(path, limit=1)
        assert kept.get(path, limit=2) == [m for m in raw[:2] if m["message_type"] in filters["kept"]]
    assert short > 50 and empty_before_more > 20
    # truth: a filter that drops tool messages hides every call; one that keeps them hides none
    for entry in hidden.terminal():
        assert (entry["tool_calls"], entry["tool_messages_filtered"], entry["tool_durations"]) == ([], True, [])
    by_id = {e["id"]: e for e in plain.terminal()}
    for entry in kept.terminal():
        assert entry["tool_messages_filtered"] is False
        assert {k: entry[k] for k in TOOL_FIELDS} == {k: by_id[entry["id"]][k] for k in TOOL_FIELDS}


# ------------------------------------------------------------------------------------------ tool calls


def test_parallel_calls_share_one_call_and_one_return_message(make: Any) -> None:
    s = make(**BUSY, **NO_FILTERS, parallel_tools=1.0, tool_errors=0.3, tool_unreturned=0.2)
    s.clock.now += 3
    widths: collections.Counter[int] = collections.Counter()
    statuses: collections.Counter[str] = collections.Counter()
    for entry in s.terminal():
        messages = s.messages(entry["id"])
        by_step = collections.defaultdict(list)
        for m in messages:
            by_step[m["step_id"]].append(m)
        for step_messages in by_step.values():
            kinds = [m["message_type"] for m in step_messages if m["message_type"].startswith("tool_")]
            assert kinds in ([], ["tool_call_message"], ["tool_call_message", "tool_return_message"])
            if not kinds:
                continue
            call = next(m for m in step_messages if m["message_type"] == "tool_call_message")
            widths[len(call["tool_calls"])] += 1
            call_ids = [c["tool_call_id"] for c in call["tool_calls"]]
            returned = [m for m in step_messages if m["message_type"] == "tool_return_message"]
            returned_ids = [r["tool_call_id"] for m in returned for r in m["tool_returns"]]
            assert returned_ids == [c for c in call_ids if c in returned_ids]  # in call order, each once
            if returned:
                first = returned[0]["tool_returns"][0]
                assert returned[0]["name"] == next(
                    c["name"] for c in call["tool_calls"] if c["tool_call_id"] == first["tool_call_id"]
                )
        found = calls_of(messages)
        statuses.update(c["status"] for c in found)
        assert entry["tool_calls"] == found
        assert entry["tool_durations"] == []  # no step executed exactly one tool
    assert set(widths) == {2, 3}
    assert set(statuses) == {"success", "error", "unknown"}
    assert 0.1 < statuses["unknown"] / sum(statuses.values()) < 0.3


def test_unreturned_calls_have_no_return_and_are_unknown(make: Any) -> None:
    s = make(**BUSY, **NO_FILTERS, parallel_tools=0.0, tool_unreturned=1.0)
    s.clock.now += 3
    calls = 0
    for entry in s.terminal():
        messages = s.messages(entry["id"])
        assert not any(m["message_type"] == "tool_return_message" for m in messages)
        assert {c["status"] for c in entry["tool_calls"]} <= {"unknown"}
        assert entry["tool_calls"] == calls_of(messages)
        calls += len(entry["tool_calls"])
        assert len(entry["tool_durations"]) == len(entry["tool_calls"])  # one call a step: still timed
    assert calls > 100


def test_a_step_has_tool_calls_iff_it_has_a_tool_duration(make: Any) -> None:
    s = make(**BUSY, **NO_FILTERS)
    s.clock.now += 3
    single = 0
    for entry in s.terminal():
        calls = collections.defaultdict(list)
        for c in calls_of(s.messages(entry["id"])):
            calls[c["step_id"]].append(c["tool"])
        durations = []
        for step in s.get(f"/v1/runs/{entry['id']}/steps", order="asc"):
            if step["status"] == "pending":
                assert step["id"] not in calls
                continue
            ns = s.get(f"/v1/steps/{step['id']}/metrics")["tool_execution_ns"]
            assert (ns is not None) == (step["id"] in calls)
            if len(calls.get(step["id"], [])) == 1:
                durations.append({"tool": calls[step["id"]][0], "ns": ns})
        assert entry["tool_durations"] == durations
        single += len(durations)
    assert single > 100


def test_messages_appear_as_their_steps_finish(make: Any) -> None:
    """A step's messages are listed once it finishes, none while it runs (or stays pending forever)."""
    for outcome, seed in (("completed", 1), ("completed", 2), ("cancelled", 4), ("flip", 1), ("zombie", 2)):
        s = make(seed=seed, runs_per_second=1000.0, max_runs=1, duration_scale=0.05, **NO_FILTERS, **only(outcome))
        end, run_id = s.clock.now + 1.5, None
        views: list[list[str]] = []
        tool: dict[str, bool] = {}  # step id: its metrics have tool_execution_ns
        while s.clock.now < end:
            s.clock.now += 0.003
            listed = s.get("/v1/runs/")
            if not listed:
                continue
            run_id = listed[0]["id"]
            steps = s.get(f"/v1/runs/{run_id}/steps", order="asc")
            messages = s.messages(run_id)
            finished = [st["id"] for st in steps if st["status"] != "pending"]
            assert {m["step_id"] for m in messages} <= set(finished)
            for step_id in finished:
                if step_id not in tool:
                    tool[step_id] = s.get(f"/v1/steps/{step_id}/metrics")["tool_execution_ns"] is not None
                calls = [m for m in messages if m["step_id"] == step_id and m["message_type"] == "tool_call_message"]
                assert tool[step_id] == bool(calls)
            ids = [m["id"] for m in messages]
            if not views or views[-1] != ids:
                views.append(ids)
        assert run_id is not None
        final = views[-1]
        assert all(final[: len(v)] == v for v in views)  # messages only ever get appended
        assert len(views) >= 2, outcome
        if outcome == "zombie":
            assert s.sim.truth()["terminal"] == []
        if outcome in ("cancelled", "zombie"):  # the last step never ends: nothing of it, ever
            s.clock.now += 30 * 24 * 3600
            assert [m["id"] for m in s.messages(run_id)] == final
            last = s.get(f"/v1/runs/{run_id}/steps", limit=1)[0]  # a zombie does not list its step
            assert (last["status"] == "pending") == (outcome == "cancelled")
            assert outcome == "zombie" or last["id"] not in {m["step_id"] for m in s.messages(run_id)}


def test_completed_runs_usually_end_with_an_assistant_message(make: Any) -> None:
    s = make(**BUSY, **NO_FILTERS)
    s.clock.now += 3
    replied = ended = 0
    for entry in s.terminal():
        messages = s.messages(entry["id"])
        assistant = [m for m in messages if m["message_type"] == "assistant_message"]
        last = s.get(f"/v1/runs/{entry['id']}/steps", limit=1)[0]  # newest first
        assert all(m["step_id"] == last["id"] for m in assistant) and len(assistant) <= 1
        if last["status"] == "success" and last["stop_reason"] == "end_turn":
            ended += 1
            replied += bool(assistant)
        else:
            assert assistant == []
    assert ended > 100 and 0.8 < replied / ended < 1.0


# ------------------------------------------------------------------------------------- truth, renames


def test_truth_tool_calls_equal_what_paging_the_endpoint_shows(make: Any) -> None:
    s = make(seed=9, history=60, runs_per_second=8, max_runs=80, duration_scale=0.2, cancelled=0.2, flip=0.2)
    for advance in (1.0, 4.0, 30.0):
        s.clock.now += advance
        truth = s.sim.truth()
        runs = {r["id"]: r for r in s.get("/v1/runs/", limit=1000)}
        statuses: collections.Counter[str] = collections.Counter()
        for entry in truth["terminal"]:
            types = runs[entry["id"]]["request_config"]["include_return_message_types"]
            # a filtered run may page past empty pages only with a big enough limit; others page by 2
            ids = walk(s, entry["id"], 1000 if types else 2, "asc")
            messages = s.messages(entry["id"])
            assert [m["id"] for m in messages] == ids
            assert entry["tool_calls"] == calls_of(messages)
            assert entry["tool_messages_filtered"] == (types is not None and "tool_call_message" not in types)
            statuses.update(c["status"] for c in entry["tool_calls"])
        assert "tool_calls" not in json.dumps(truth["active"])
    assert set(statuses) == {"success", "error", "unknown"}
    assert s.get("/_sim/truth") == s.sim.truth()


def test_agents_are_renamed_over_time_keeping_their_ids(make: Any) -> None:
    s = make(seed=3, agents=6, runs_per_second=0, rename_every_s=100.0, agent_renames=0.5)
    first = s.get("/v1/agents/")
    assert [a["name"] for a in first] == [f"sim-agent-{i}" for i in range(6)][::-1]  # newest first
    assert all(a["updated_at"] == a["created_at"] for a in first)
    history: dict[str, list[str]] = collections.defaultdict(list)
    for _ in range(40):
        s.clock.now += 25.0
        agents = s.get("/v1/agents/")
        truth = {a["id"]: a for a in s.sim.truth()["agents"]}
        assert [a["id"] for a in agents] == [a["id"] for a in first]
        for agent in agents:
            assert truth[agent["id"]]["name"] == agent["name"]
            names = history[agent["id"]]
            if not names or names[-1] != agent["name"]:
                names.append(agent["name"])
            assert len(names) == truth[agent["id"]]["renamed"] + 1
            assert (agent["updated_at"] > agent["created_at"]) == (truth[agent["id"]]["renamed"] > 0)
    renamed = [names for names in history.values() if len(names) > 1]
    assert 0 < len(renamed) < 6
    assert all(len(names) == len(set(names)) and 7 <= len(names) <= 10 for names in renamed)  # ~1000 s / 100 s
    # names are a function of the clock alone: a fresh simulator at the same time agrees
    fresh = make(seed=3, agents=6, runs_per_second=0, rename_every_s=100.0, agent_renames=0.5)
    fresh.clock.now = s.clock.now
    assert fresh.get("/v1/agents/") == s.get("/v1/agents/")
    never = make(seed=3, agents=6, runs_per_second=0, rename_every_s=0.0)
    never.clock.now += 30 * 24 * 3600
    assert [a["name"] for a in never.get("/v1/agents/")] == [f"sim-agent-{i}" for i in range(6)][::-1]
    default = make(seed=3, agents=6, runs_per_second=0)
    default.clock.now += 3599.0  # the default renames hourly, never in the first hour
    assert {a["renamed"] for a in default.sim.truth()["agents"]} == {0}


# -------------------------------------------------------------------------------------- determinism


def fingerprint(s: Sim) -> Any:
    """Everything the simulator showed before it had messages: runs, steps, step metrics, old truth."""
    runs = [{k: v for k, v in r.items() if k != "request_config"} for r in s.get("/v1/runs/", limit=1000)]
    steps = [s.get(f"/v1/runs/{r['id']}/steps", order="asc") for r in runs]
    metrics = [s.client.get(f"/v1/steps/{st['id']}/metrics").json() for listed in steps for st in listed]
    truth = s.sim.truth()
    for entry in truth["terminal"]:
        for key in TOOL_FIELDS:
            del entry[key]
    for agent in truth["agents"]:
        del agent["renamed"]
    return runs, steps, metrics, truth


def test_the_new_knobs_change_no_other_part_of_any_plan(make: Any) -> None:
    shape = {"seed": 5, "history": 40, "runs_per_second": 20, "max_runs": 80, "duration_scale": 0.1, "ttft": 0.3}
    off = make(**shape, **NO_TOOL_KNOBS, **NO_FILTERS, agent_renames=0.0)
    default = make(**shape)
    full = make(**shape, parallel_tools=1.0, tool_errors=0.5, tool_unreturned=0.5, filtered_messages=0.5)
    for s in (off, default, full):
        s.clock.now += 4
    assert fingerprint(off) == fingerprint(default) == fingerprint(full)
    # and the knobs change only what they are about: each step's first call stays the same
    for a, b in zip(off.terminal(), full.terminal(), strict=True):
        if b["tool_messages_filtered"]:
            continue
        first: dict[str, tuple[str, str]] = {}
        for call in b["tool_calls"]:
            first.setdefault(call["step_id"], (call["call_id"], call["tool"]))
        assert [(c["call_id"], c["tool"]) for c in a["tool_calls"]] == [first[c["step_id"]] for c in a["tool_calls"]]


def test_same_seed_gives_the_same_messages_whatever_was_asked_before(make: Any) -> None:
    a, b, other = make(**BUSY), make(**BUSY), make(**(BUSY | {"seed": 8}))
    for t in (0.5, 1.0, 2.0, 3.0):  # a is read often, b only at the end
        a.clock.now = T0 + t
        for entry in a.terminal()[:10]:
            a.messages(entry["id"])
    b.clock.now = other.clock.now = T0 + 3.0
    assert a.sim.truth() == b.sim.truth()
    ids = set()
    for entry in a.terminal():
        assert a.messages(entry["id"]) == b.messages(entry["id"])
        ids |= {m["id"] for m in a.messages(entry["id"])}
    other_ids = {m["id"] for e in other.terminal() for m in other.messages(e["id"])}
    assert ids and other_ids and ids.isdisjoint(other_ids)
