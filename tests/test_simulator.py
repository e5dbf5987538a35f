"""The simulated Letta 0.16.8 API: shapes, quirks, lifecycles, determinism and ground truth.

No sleeps: a mutable fake clock drives the simulator; only the server tests touch real sockets.
"""

from __future__ import annotations

import collections
import json
import re
import select
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx2
import pytest

from exporter.letta.records import RUN, RUN_METRICS, STEP, STEP_METRICS
from exporter.simulator import STEPS_LIST_400, Scenario, SimulatedLetta, serve
from exporter.types import ProblemKind
from tests.simulated import T0, Sim, factory, only

FIXTURES = Path(__file__).parent / "fixtures" / "letta-0.16.8"
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
ISO_NAIVE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$")


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


@pytest.fixture
def make() -> Iterator[Any]:
    with factory() as made:
        yield made


def parse(reader: Any, data: Any) -> Any:
    problems: list[ProblemKind] = []
    parsed = reader(data, problems)
    assert problems == [], (problems, data)
    return parsed


# --------------------------------------------------------------------------------------------- shapes


def test_every_shape_matches_the_recorded_fields_and_parses_without_problems(make: Any) -> None:
    s = make(seed=7, history=40, runs_per_second=20, max_runs=200, duration_scale=0.05, tracing=0.5)
    s.clock.now += 5  # leaves live runs mid-flight as well as finished ones
    keys = {name: set(fixture(name)) for name in ("run.json", "step.json", "run_metrics.json", "step_metrics.json")}
    agent_keys = set(fixture("agents_list_no_relationships.json")[0])
    llm_keys = set(fixture("agents_list_no_relationships.json")[0]["llm_config"])
    runs = s.runs()
    assert len(runs) > 100
    step_statuses: collections.Counter[str] = collections.Counter()
    for listed in runs:
        assert set(listed) == keys["run.json"]
        single = s.get(f"/v1/runs/{listed['id']}")
        assert single["total_duration_ns"] is None and single["ttft_ns"] is None  # docs/letta-api.md §1.3, §1.4
        assert {k: v for k, v in single.items() if k != "total_duration_ns"} == {
            k: v for k, v in listed.items() if k != "total_duration_ns"
        }
        run = parse(RUN, listed)
        assert ISO_Z.match(listed["created_at"])
        assert listed["completed_at"] is None or ISO_NAIVE.match(listed["completed_at"])
        metrics = s.get(f"/v1/runs/{listed['id']}/metrics")
        assert set(metrics) == keys["run_metrics.json"]
        start_ns = parse(RUN_METRICS, metrics).run_start_ns  # the reader's float parse costs ~100 ns here
        assert start_ns is not None and abs(start_ns - run.created_at.timestamp() * 1e9) < 1e3
        assert (metrics["run_ns"] is None) == (listed["total_duration_ns"] is None)
        assert metrics["run_ns"] == listed["total_duration_ns"]
        trace_ids = set()
        for raw in s.steps(listed["id"]):
            assert set(raw) == keys["step.json"]
            step = parse(STEP, raw)
            assert step.run_id == run.id and step.agent_id == run.agent_id
            trace_ids.add(step.trace_id)
            step_statuses[raw["status"]] += 1
            assert s.get(f"/v1/steps/{raw['id']}") == raw
            response = s.client.get(f"/v1/steps/{raw['id']}/metrics")
            if raw["status"] == "pending":
                assert response.status_code == 404
                continue
            assert set(response.json()) == keys["step_metrics.json"]
            step_metrics = parse(STEP_METRICS, response.json())
            assert step_metrics.step_ns is not None and step_metrics.llm_request_ns is not None
            assert step_metrics.step_ns >= step_metrics.llm_request_ns + (step_metrics.tool_execution_ns or 0)
        assert len(trace_ids) <= 1  # one trace per run (or none)
        assert all(t is None or re.fullmatch("[0-9a-f]{32}", t) for t in trace_ids)
    assert set(step_statuses) == {"success", "failed", "pending"}
    agents = s.get("/v1/agents/")
    assert len(agents) == 3
    for agent in agents:
        assert set(agent) <= agent_keys and set(agent["llm_config"]) <= llm_keys
        assert ISO_Z.match(agent["created_at"])
    assert s.get("/v1/health/") == fixture("health.json")


def test_run_metadata_and_error_shapes_follow_the_samples(make: Any) -> None:
    s = make(seed=3, history=300, runs_per_second=0)
    runs = s.runs()
    by_type = {(r["metadata"]["run_type"], r["status"], r["stop_reason"]): r for r in runs}
    sync_failed = by_type[("send_message", "failed", None)]
    async_failed = by_type[("send_message_async", "failed", "error")]
    assert sync_failed["background"] is False and isinstance(sync_failed["metadata"]["error"], str)
    assert async_failed["background"] is True and async_failed["metadata"]["lettuce"] is None
    assert isinstance(async_failed["metadata"]["error"], str)
    cancelled = by_type[("send_message_streaming", "cancelled", "cancelled")]
    assert cancelled["background"] is False
    assert {k for k in by_type if k[1] == "completed"} >= {
        ("send_message", "completed", "end_turn"),
        ("send_message_streaming", "completed", "end_turn"),
        ("send_message_async", "completed", "end_turn"),
    }
    last = s.steps(sync_failed["id"])[-1]
    assert (last["status"], last["stop_reason"], last["error_type"]) == ("failed", "llm_api_error", "LLMServerError")
    assert set(last["error_data"]) == {"message", "traceback", "details"}
    assert (last["prompt_tokens"], last["completion_tokens"], last["prompt_tokens_details"]) == (0, 0, None)
    # the models span several providers, with the token detail fields like the samples
    steps = [st for r in runs[:60] for st in s.steps(r["id"]) if st["status"] == "success"]
    assert {st["provider_name"] for st in steps} == {"openai", "anthropic", "google_ai"}
    for st in steps:
        details = st["prompt_tokens_details"]
        assert details["cached_tokens"] == st["cached_input_tokens"]
        assert st["total_tokens"] == st["prompt_tokens"] + st["completion_tokens"]
        if st["provider_name"] == "anthropic":
            assert st["cache_write_tokens"] == details["cache_creation_tokens"]
            assert st["completion_tokens_details"] is None
        else:
            assert st["completion_tokens_details"] == {"reasoning_tokens": st["reasoning_tokens"]}


# ----------------------------------------------------------------------------------------- quirks


def test_run_cursors_are_inverted_like_the_recorded_probe(make: Any) -> None:
    s = make(history=12, runs_per_second=0)
    ids = [r["id"] for r in s.runs()]
    assert len(ids) == 12
    probe = fixture("_pagination_probe_runs.json")
    cases = {
        "desc_before=ids_desc[1]": {"order": "desc", "before": ids[1]},
        "desc_after=ids_desc[1]": {"order": "desc", "after": ids[1]},
        "asc_before=ids_desc[1]": {"order": "asc", "before": ids[1]},
        "asc_after=ids_desc[1]": {"order": "asc", "after": ids[1]},
    }
    for name, params in cases.items():
        assert [ids.index(r["id"]) for r in s.runs(**params)] == probe[name], name
    assert [r["id"] for r in s.get("/v1/runs/", before=ids[1], limit=3)] == ids[2:5]  # the next page
    # the SDK's after=<last id> auto-pagination keeps returning the newest runs (docs/letta-api.md §1.2)
    assert [r["id"] for r in s.get("/v1/runs/", after=ids[2], limit=3)] == ids[:2]
    unknown = "run-00000000-0000-4000-8000-000000000000"
    assert [r["id"] for r in s.get("/v1/runs/", before=unknown, limit=5)] == ids[:5]
    assert [r["id"] for r in s.get("/v1/runs/", after=unknown)] == ids
    seen: list[str] = []
    page = s.get("/v1/runs/", limit=5)
    while page:
        seen += [r["id"] for r in page]
        page = s.get("/v1/runs/", limit=5, before=seen[-1])
    assert seen == ids


def test_step_and_agent_cursors_keep_normal_semantics(make: Any) -> None:
    s = make(seed=2, history=30, runs_per_second=0, agents=4)
    run = next(r for r in s.sim.truth()["terminal"] if r["steps"] >= 3)
    ids = [st["id"] for st in s.get(f"/v1/runs/{run['id']}/steps")]  # default: newest first
    assert ids == [st["id"] for st in s.steps(run["id"])][::-1]
    assert [st["id"] for st in s.get(f"/v1/runs/{run['id']}/steps", after=ids[0])] == ids[1:]
    assert s.get(f"/v1/runs/{run['id']}/steps", before=ids[0]) == []
    assert [st["id"] for st in s.get(f"/v1/runs/{run['id']}/steps", limit=1, after=ids[0])] == ids[1:2]
    unknown = s.client.get(f"/v1/runs/{run['id']}/steps", params={"after": "step-00000000-0000-4000-8000-0000000000ff"})
    assert unknown.status_code == 404 and "detail" in unknown.json()
    agents = [a["id"] for a in s.get("/v1/agents/")]
    assert [a["id"] for a in s.get("/v1/agents/", limit=2, after=agents[1])] == agents[2:4]
    assert [a["id"] for a in s.get("/v1/agents/", order="asc")] == agents[::-1]


def test_parameter_validation_and_error_bodies(make: Any) -> None:
    s = make(history=5, runs_per_second=0)
    for bad in ("0", "1001", "-3", "ten"):
        response = s.client.get("/v1/runs/", params={"limit": bad})
        assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["query", "limit"]
    assert len(s.get("/v1/runs/", limit=1000)) == 5 and len(s.get("/v1/runs/", limit=1)) == 1
    assert s.client.get("/v1/runs/", params={"order": "up"}).status_code == 422
    bogus = s.client.get("/v1/runs/", params=[("statuses", "completed"), ("statuses", "bogus")])
    assert (bogus.status_code, bogus.json()) == (400, {"detail": "'bogus' is not a valid RunStatus"})
    for params in ({}, {"order": "asc"}, {"order": "desc", "limit": 5}):
        response = s.client.get("/v1/steps/", params=params)
        assert (response.status_code, response.json()) == (400, fixture("steps_list.json"))
    assert fixture("steps_list.json") == {"detail": STEPS_LIST_400}
    malformed = s.client.get("/v1/runs/not-a-run")
    assert (malformed.status_code, malformed.json()) == (400, {"detail": "INVALID_ARGUMENT: Invalid run ID format"})
    for path in (
        "/v1/runs/run-00000000-0000-4000-8000-000000000000",
        "/v1/steps/step-00000000-0000-4000-8000-000000000000",
    ):
        missing = s.client.get(path)
        assert missing.status_code == 404 and isinstance(missing.json()["detail"], str)
    missing = s.client.get("/v1/runs/run-00000000-0000-4000-8000-000000000000/metrics")
    assert missing.status_code == 404
    assert (s.client.get("/v1/nope").status_code, s.client.get("/v1/nope").json()) == (404, {"detail": "Not Found"})
    redirect = s.client.get("/v1/runs", params={"limit": 2})  # FastAPI redirect_slashes; httpx does not follow
    assert redirect.status_code == 307 and redirect.headers["location"] == "http://letta/v1/runs/?limit=2"
    assert s.sim.requests["GET /v1/runs/"] >= 5 and s.sim.requests["GET /v1/steps/"] == 3
    assert s.sim.requests["GET /v1/runs/{run_id}"] == 2 and s.sim.requests["GET (unmatched)"] == 2


def test_list_filters(make: Any) -> None:
    s = make(seed=5, history=60, runs_per_second=10, max_runs=40, duration_scale=0.05, zombie=0.3)
    s.clock.now += 10
    runs = s.runs()
    truth = s.sim.truth()
    assert len(runs) == truth["runs"]["total"] == 100
    active = s.runs(active="true")
    assert active and {r["status"] for r in active} <= {"created", "running"}
    assert {r["id"] for r in active} == {r["id"] for r in runs if r["status"] in ("created", "running")}
    assert {r["id"] for r in s.get("/v1/runs/active")} == {r["id"] for r in active}
    pair = s.runs(statuses=["completed", "failed"])
    assert {r["id"] for r in pair} == {r["id"] for r in runs if r["status"] in ("completed", "failed")}
    assert {r["id"] for r in s.runs(statuses="cancelled", active="true")} == {
        r["id"] for r in runs if r["status"] == "cancelled"
    }
    agent = runs[0]["agent_id"]
    assert {r["id"] for r in s.runs(agent_id=agent)} == {r["id"] for r in runs if r["agent_id"] == agent}
    assert {r["background"] for r in s.runs(background="true")} == {True}
    assert {r["background"] for r in s.runs(background="false")} == {False}
    assert {r["stop_reason"] for r in s.runs(stop_reason="cancelled")} == {"cancelled"}
    for r in runs:
        assert (r["total_duration_ns"] is None) == (r["status"] in ("created", "running"))


# ------------------------------------------------------------------------------------- lifecycles


def watch(make: Any, outcome: str, seed: int, horizon: float = 1.5, dt: float = 0.002) -> tuple[Sim, str, list[Any]]:
    """Step the clock through one run's life; record each distinct (run, steps) view."""
    s = make(seed=seed, runs_per_second=1000.0, max_runs=1, duration_scale=0.05, **only(outcome))
    views: list[Any] = []
    end = s.clock.now + horizon
    run_id = None
    while s.clock.now < end:
        s.clock.now += dt
        if run_id is None:
            listed = s.get("/v1/runs/")
            if not listed:
                continue
            run_id = listed[0]["id"]
        run = s.get(f"/v1/runs/{run_id}")
        steps = tuple((st["status"], st["stop_reason"]) for st in s.steps(run_id))
        view = (run["status"], run["stop_reason"], run["completed_at"], steps)
        if not views or views[-1] != view:
            views.append(view)
    assert run_id is not None
    return s, run_id, views


@pytest.mark.parametrize("seed", range(1, 7))
def test_completed_runs_grow_steps_then_complete(make: Any, seed: int) -> None:
    s, run_id, views = watch(make, "completed", seed)
    run = s.get(f"/v1/runs/{run_id}")
    active = (
        "running" if run["metadata"]["run_type"] == "send_message_streaming" else "created"
    )  # docs/letta-api.md §1.8
    *before, final = views
    assert before and all(v[:3] == (active, None, None) for v in before)
    assert [len(v[3]) for v in views] == sorted(len(v[3]) for v in views)  # steps appear as they finish
    assert final[0] == "completed" and final[1] in ("end_turn", "max_steps", "requires_approval")
    assert final[3][-1] == ("success", final[1]) and all(st == ("success", None) for st in final[3][:-1])
    assert s.get(f"/v1/runs/{run_id}/metrics")["num_steps"] == len(final[3])


def test_sync_and_async_failures_differ(make: Any) -> None:
    kinds = set()
    for seed in range(1, 30):
        s, run_id, views = watch(make, "failed", seed, horizon=0.6)
        run = s.get(f"/v1/runs/{run_id}")
        sync = run["metadata"]["run_type"] == "send_message"
        assert views[-1][:2] == ("failed", None if sync else "error")  # docs/letta-api.md §1.10
        assert views[-1][3][-1] == ("failed", "llm_api_error")
        assert views[0][:2] == ("created", None)  # sync and async runs are never "running" (docs/letta-api.md §1.8)
        kinds.add(sync)
        if kinds == {True, False}:
            break
    assert kinds == {True, False}


def test_stream_cancel_leaves_its_step_pending_forever(make: Any) -> None:
    s, run_id, views = watch(make, "cancelled", seed=4)
    assert views[0][:2] == ("running", None)
    final = views[-1]
    assert final[:2] == ("cancelled", "cancelled") and final[3][-1] == ("pending", None)
    s.clock.now += 10 * 24 * 3600
    assert s.steps(run_id)[-1]["status"] == "pending" and s.get(f"/v1/runs/{run_id}")["status"] == "cancelled"
    pending = s.steps(run_id)[-1]
    assert (pending["prompt_tokens"], pending["completion_tokens"], pending["stop_reason"]) == (0, 0, None)
    assert s.client.get(f"/v1/steps/{pending['id']}/metrics").status_code == 404
    metrics = s.get(f"/v1/runs/{run_id}/metrics")
    assert metrics["num_steps"] == len(final[3]) and metrics["run_ns"] > 0


def test_async_cancel_flips_to_completed_keeping_completed_at(make: Any) -> None:
    s, _, views = watch(make, "flip", seed=1, horizon=3.0)
    statuses = [v[:2] for v in views]
    first_cancel = statuses.index(("cancelled", "cancelled"))
    assert set(statuses[:first_cancel]) == {("created", None)}
    assert statuses[-1] == ("completed", "end_turn")
    cancelled = [v for v in views if v[0] == "cancelled"]
    assert cancelled[0][3][-1] == ("pending", None)
    assert {v[2] for v in cancelled} | {views[-1][2]} == {cancelled[0][2]}  # completed_at never moves
    assert all(st[0] == "success" for st in views[-1][3])
    truth = s.sim.truth()["terminal"][0]
    assert (truth["first_terminal_status"], truth["first_stop_reason"]) == ("cancelled", "cancelled")
    assert (truth["status"], truth["stop_reason"]) == ("completed", "end_turn")
    assert truth["completed_at"] == truth["first_terminal_at"]
    assert truth["run_ns"] > round((truth["completed_at"] - truth["created_at"]) * 1e9)  # like the 20 s sample


def test_zombie_never_finishes(make: Any) -> None:
    s, run_id, _ = watch(make, "zombie", seed=2)
    s.clock.now += 30 * 24 * 3600
    run = s.get(f"/v1/runs/{run_id}")
    assert run["status"] in ("created", "running") and run["stop_reason"] is None
    steps = s.steps(run_id)
    assert steps and all(st["status"] == "success" and st["stop_reason"] is None for st in steps)
    assert s.get(f"/v1/runs/{run_id}/metrics")["run_ns"] is None
    truth = s.sim.truth()
    assert truth["terminal"] == [] and truth["active"][0]["zombie"] is True


def test_lagging_status_shows_stop_reason_before_completed(make: Any) -> None:
    _, _, views = watch(make, "lagging", seed=3, horizon=2.0)
    statuses = [v[:3] for v in views]
    assert ("running", "end_turn", None) in statuses
    assert statuses[-1][:2] == ("completed", "end_turn") and statuses[-1][2] is not None
    lag = statuses.index(("running", "end_turn", None))
    assert set(statuses[:lag]) == {("running", None, None)}


def test_lagging_run_counts_as_terminal_in_truth_during_the_lag(make: Any) -> None:
    s = make(seed=3, runs_per_second=1000.0, max_runs=1, duration_scale=0.05, **only("lagging"))
    s.clock.now += 5
    done = s.sim.truth()["terminal"][0]
    s.clock.now = done["first_terminal_at"] + 1e-4
    listed = s.runs()[0]
    assert (listed["status"], listed["stop_reason"], listed["total_duration_ns"]) == ("running", "end_turn", None)
    assert parse(RUN, listed).status == "completed"  # exporter.model trusts the stop reason
    t = s.sim.truth()
    assert t["active"] == [] and t["terminal"][0]["status"] == "running"
    assert (t["terminal"][0]["first_terminal_status"], t["terminal"][0]["completed_at"]) == ("completed", None)


# --------------------------------------------------------------------------- determinism and truth


def test_same_seed_and_clock_give_the_same_api_whatever_was_asked_before(make: Any) -> None:
    a = make(seed=11, history=10, duration_scale=0.1)
    b = make(seed=11, history=10, duration_scale=0.1)
    for t in (0.5, 1.0, 1.5, 2.0, 3.0):  # a is polled often, b only at the end
        a.clock.now = T0 + t
        a.runs()
    b.clock.now = T0 + 3.0
    assert a.runs() == b.runs()
    assert a.sim.truth() == b.sim.truth()
    run_id = a.runs()[0]["id"]
    assert a.steps(run_id) == b.steps(run_id)
    c = make(seed=12, history=10, duration_scale=0.1)
    c.clock.now = T0 + 3.0
    assert {r["id"] for r in c.runs()}.isdisjoint({r["id"] for r in a.runs()})


def test_max_runs_and_zero_rate_stop_arrivals(make: Any) -> None:
    s = make(runs_per_second=50, max_runs=7)
    s.clock.now += 3600
    assert len(s.runs()) == 7
    idle = make(runs_per_second=0)
    idle.clock.now += 3600
    assert idle.runs() == [] and idle.sim.truth()["runs"] == {"total": 0, "historical": 0, "by_status": {}}


def test_truth_agrees_with_what_the_api_shows(make: Any) -> None:
    s = make(
        seed=9, history=50, runs_per_second=8, max_runs=80, duration_scale=0.2, cancelled=0.2, flip=0.2, lagging=0.2
    )
    for advance in (1.0, 4.0, 30.0):
        s.clock.now += advance
        truth = s.sim.truth()
        assert truth["now"] == s.clock.now
        runs = {r["id"]: r for r in s.runs()}
        assert truth["runs"]["total"] == len(runs)
        assert truth["runs"]["by_status"] == dict(collections.Counter(r["status"] for r in runs.values()))
        assert len(truth["terminal"]) + len(truth["active"]) == len(runs)
        for entry in truth["active"]:
            assert not parse(RUN, runs[entry["id"]]).terminal and runs[entry["id"]]["status"] == entry["status"]
        for entry in truth["terminal"]:
            raw = runs[entry["id"]]
            run = parse(RUN, raw)
            assert run.terminal and (raw["status"], raw["stop_reason"]) == (entry["status"], entry["stop_reason"])
            if entry["outcome"] != "flip" or entry["status"] == "cancelled":
                assert (run.status, run.stop_reason) == (entry["first_terminal_status"], entry["first_stop_reason"])
            assert entry["first_terminal_at"] <= truth["now"]
            assert abs(run.created_at.timestamp() - entry["created_at"]) < 1e-5
            assert raw["total_duration_ns"] == entry["run_ns"]
            steps = [parse(STEP, st) for st in s.steps(entry["id"])]
            assert len(steps) == entry["steps"]
            by = collections.Counter((st.status, st.stop_reason, st.model, st.provider) for st in steps)
            assert by == {
                (g["status"], g["stop_reason"], g["model"], g["provider"]): g["count"] for g in entry["steps_by"]
            }
            tokens: collections.Counter[str] = collections.Counter()
            for st in steps:
                tokens.update(st.tokens())
                assert (st.model, st.provider) == (entry["model"], entry["provider"])
            assert {k: tokens[k] for k in entry["tokens"]} == entry["tokens"]
    assert json.loads(json.dumps(truth)) == truth
    assert s.get("/_sim/truth") == s.sim.truth()
    outcomes = collections.Counter(e["outcome"] for e in s.sim.truth()["terminal"])
    assert {"completed", "failed", "cancelled", "flip", "lagging"} <= set(outcomes)


def test_ttft_is_reported_for_the_chosen_fraction_inside_the_first_llm_call(make: Any) -> None:
    """Scenario.ttft: run JSON carries ttft_ns (as Letta <= 0.11 and some hosted deployments do) for that
    fraction of runs, deterministically, before the run's first terminal moment, and nothing else changes."""
    shape = {"seed": 5, "history": 40, "runs_per_second": 20, "max_runs": 200, "duration_scale": 0.1}
    plain, half, again, full = make(**shape), make(**shape, ttft=0.5), make(**shape, ttft=0.5), make(**shape, ttft=1.0)
    for s in (plain, half, again, full):
        s.clock.now += 12
    assert all(r["ttft_ns"] is None for r in plain.runs())  # the 0.16 default
    without = [{k: v for k, v in r.items() if k != "ttft_ns"} for r in half.runs()]
    assert without == [{k: v for k, v in r.items() if k != "ttft_ns"} for r in plain.runs()]
    assert half.runs() == again.runs() and half.sim.truth() == again.sim.truth()

    reported = {}
    for s, fraction in ((half, 0.5), (full, 1.0)):
        truth, runs = s.sim.truth(), {r["id"]: r for r in s.runs()}
        for entry in truth["terminal"]:
            ttft = entry["ttft_ns"]
            assert ttft == runs[entry["id"]]["ttft_ns"] == s.get(f"/v1/runs/{entry['id']}")["ttft_ns"]
            assert parse(RUN, runs[entry["id"]]).ttft_ns == ttft
            if ttft is not None:
                assert 0 < ttft < (entry["first_terminal_at"] - entry["created_at"]) * 1e9
                assert entry["run_ns"] is None or ttft < entry["run_ns"]
            if entry["outcome"] == "failed" and entry["steps"] == 1:
                assert ttft is None  # the only LLM call failed: no token
        for entry in truth["active"]:
            ttft = runs[entry["id"]]["ttft_ns"]
            assert ttft is None or ttft <= (truth["now"] - entry["created_at"]) * 1e9
        completed = [e["ttft_ns"] for e in truth["terminal"] if e["outcome"] == "completed"]
        share = sum(t is not None for t in completed) / len(completed)
        assert share == 1.0 if fraction == 1.0 else 0.35 < share < 0.65, share
        reported[fraction] = next(e for e in truth["terminal"] if e["ttft_ns"] and not e["historical"])

    # ttft_ns appears when the first token does, not before
    entry = reported[0.5]
    early = make(**shape, ttft=0.5)
    early.clock.now = entry["created_at"] + entry["ttft_ns"] / 2e9
    assert early.get(f"/v1/runs/{entry['id']}")["ttft_ns"] is None
    early.clock.now = entry["created_at"] + entry["ttft_ns"] / 1e9 + 1e-3
    assert early.get(f"/v1/runs/{entry['id']}")["ttft_ns"] == entry["ttft_ns"]


def test_history_is_terminal_and_precedes_the_start(make: Any) -> None:
    s = make(seed=4, history=30, history_span_s=600.0, runs_per_second=0)
    truth = s.sim.truth()
    assert truth["runs"]["total"] == truth["runs"]["historical"] == 30 and truth["active"] == []
    assert set(truth["runs"]["by_status"]) <= {"completed", "failed", "cancelled"}
    for entry in truth["terminal"]:
        assert entry["historical"] and entry["outcome"] in ("completed", "failed", "cancelled")
        assert T0 - 600.0 - 60 <= entry["created_at"] < entry["first_terminal_at"] < T0
    runs = s.runs()
    assert len(runs) == 30 and all(r["total_duration_ns"] for r in runs)
    created = [r["created_at"] for r in runs]
    assert created == sorted(created, reverse=True)


# ----------------------------------------------------------------------------------- real servers


def test_serve_answers_real_http_concurrently_and_closes(make: Any) -> None:
    sim = SimulatedLetta(Scenario(history=20, runs_per_second=0))
    with serve(sim) as server:
        assert server.url.startswith("http://127.0.0.1:")
        with httpx2.Client(base_url=server.url) as client:
            assert client.get("/v1/health/").json() == {"version": "0.16.8", "status": "ok"}
            assert client.get("/v1/steps/").status_code == 400
            assert client.get("/v1/runs").status_code == 307
            runs = client.get("/v1/runs/", params={"limit": 5}).json()
            assert len(runs) == 5
            assert client.get("/_sim/truth").json()["runs"]["total"] == 20

            def crawl(_: int) -> int:
                return len(client.get("/v1/runs/", params={"limit": 1000}).json())

            with ThreadPoolExecutor(8) as pool:
                assert set(pool.map(crawl, range(32))) == {20}
    with pytest.raises(httpx2.ConnectError), httpx2.Client() as client:
        client.get(server.url + "/v1/health/")


def test_module_main_prints_the_url_and_exits_cleanly_on_sigterm() -> None:
    command = [sys.executable, "-m", "exporter.simulator", "--port", "0", "--seed", "3", "--runs-per-second", "5"]
    command += ["--max-runs", "10", "--history", "4", "--duration-scale", "0.05"]
    root = Path(__file__).resolve().parent.parent
    with subprocess.Popen(command, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None and proc.stderr is not None
            ready, _, _ = select.select([proc.stdout], [], [], 20)
            assert ready, "no listening line"
            line = proc.stdout.readline()
            match = re.fullmatch(r"simulator listening on (http://127\.0\.0\.1:\d+)\n", line)
            assert match, line
            with httpx2.Client(base_url=match.group(1)) as client:
                assert client.get("/v1/health/").json()["version"] == "0.16.8"
                assert len(client.get("/v1/runs/").json()) >= 4
            proc.terminate()
            assert proc.wait(timeout=10) == 0
            assert proc.stderr.read() == ""
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_unparseable_stream_answer_completes_with_a_zero_token_step(make: Any) -> None:
    """Real 0.16.8 (tests/e2e, fake LLM [garbage] on a token stream): the run still completes with
    end_turn, its one step succeeds with 0 tokens and null token details; truth agrees."""
    shape = {
        "seed": 7,
        "history": 60,
        "runs_per_second": 20,
        "max_runs": 100,
        "duration_scale": 0.1,
        **only("completed"),
    }
    s, none = make(**shape, empty_stream=1.0), make(**shape, empty_stream=0.0)
    for sim in (s, none):
        sim.clock.now += 12
    truth = {t["id"]: t for t in s.sim.truth()["terminal"]}
    empty = 0
    for run in s.runs():
        steps = s.steps(run["id"])
        zero = [st for st in steps if st["status"] == "success" and st["prompt_tokens"] == 0]
        if not zero:
            continue
        empty += 1
        assert run["metadata"]["run_type"] == "send_message_streaming" and len(steps) == 1
        assert (run["status"], run["stop_reason"], zero[0]["stop_reason"]) == ("completed", "end_turn", "end_turn")
        assert zero[0]["completion_tokens"] == 0 and zero[0]["prompt_tokens_details"] is None
        assert zero[0]["completion_tokens_details"] is None and zero[0]["cached_input_tokens"] is None
        assert parse(STEP, zero[0]).tokens() == dict.fromkeys(
            ("input", "output", "cached_input", "cache_write", "reasoning"), 0
        )
        assert set(truth[run["id"]]["tokens"].values()) == {0}
    assert empty > 0
    assert not any(st["prompt_tokens"] == 0 for r in none.runs() for st in none.steps(r["id"]))
