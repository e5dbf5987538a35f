"""Per-agent labels: bounded, stable across renames and restarts, summing to the unlabelled totals."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from pathlib import Path

import httpx2

from exporter.agents import AgentLabels
from exporter.letta import LettaClient, records
from exporter.letta.details import AGENT_NAMES_EVERY, AGENT_NAMES_TTL, RunDetails
from exporter.letta.records import RUN, STEP
from exporter.lifecycle import Decisions
from exporter.metrics import ExporterMetrics
from exporter.model import FinishedRun, Run
from exporter.problems import ProblemLog
from exporter.simulator.clock import no_sleep
from exporter.state import StateStore
from tests.samples import sample


def finished(agent_id: str | None, status: str = "completed") -> FinishedRun:
    listed = sample("runs_list")[0] | {"agent_id": agent_id, "status": status}
    steps = tuple(STEP(s | {"agent_id": agent_id}) for s in sample("run_steps"))
    return FinishedRun(run=RUN(listed), status=RUN(listed).status, steps=steps)  # type: ignore[arg-type]


def by_agent(m: ExporterMetrics, name: str) -> dict[str, float]:
    """Non-zero totals of `name` by agent_id."""
    totals: defaultdict[str, float] = defaultdict(float)
    for metric in m.registry.collect():
        for s in metric.samples:
            if s.name == name:
                totals[s.labels["agent_id"]] += s.value
    return {agent: n for agent, n in totals.items() if n}


def test_the_first_agents_seen_get_labels_and_the_rest_are_other() -> None:
    m = ExporterMetrics(agents=AgentLabels(max_agents=2))
    for agent in ["agent-a", "agent-b", "agent-c", "agent-a", "agent-d"]:
        m.ledger.record(finished(agent))
    assert by_agent(m, "letta_runs_finished_total") == {"agent-a": 2, "agent-b": 1, "other": 2}
    assert m.registry.get_sample_value("letta_exporter_series_dropped_total", {"metric": "agent_id"}) == 2
    info = {s.labels["agent_id"] for mf in m.registry.collect() for s in mf.samples if s.name == "letta_agent_info"}
    assert info == {"agent-a", "agent-b"}


def test_an_allowlist_names_agents_by_id_or_by_name() -> None:
    agents = AgentLabels(allowlist=("agent-a", "support-bot"))
    agents.learn({"agent-b": "support-bot", "agent-c": "other-bot"})
    m = ExporterMetrics(agents=agents)
    for agent in ["agent-a", "agent-b", "agent-c", None]:
        m.ledger.record(finished(agent))
    assert by_agent(m, "letta_runs_finished_total") == {"agent-a": 1, "agent-b": 1, "other": 1, "none": 1}


def test_a_rename_changes_only_the_info_series() -> None:
    agents = AgentLabels()
    m = ExporterMetrics(agents=agents)
    agents.learn({"agent-a": "first name"})
    m.ledger.record(finished("agent-a"))
    agents.learn({"agent-a": "second name"})
    m.ledger.record(finished("agent-a"))
    assert by_agent(m, "letta_runs_finished_total") == {"agent-a": 2}
    get = m.registry.get_sample_value
    assert get("letta_agent_info", {"agent_id": "agent-a", "agent_name": "second name"}) == 1
    assert get("letta_agent_info", {"agent_id": "agent-a", "agent_name": "first name"}) is None


def test_sums_over_agent_id_equal_the_unlabelled_metrics() -> None:
    plain, labelled = ExporterMetrics(), ExporterMetrics(agents=AgentLabels(max_agents=1))
    for agent in ["agent-a", "agent-b", "agent-a", None]:
        for m in (plain, labelled):
            m.ledger.record(finished(agent))
    for name in ("letta_runs_finished_total", "letta_step_tokens_total", "letta_run_duration_seconds_count"):
        totals: list[float] = []
        for m in (plain, labelled):
            totals.append(sum(s.value for mf in m.registry.collect() for s in mf.samples if s.name == name))
        assert totals[0] == totals[1] > 0, name


def test_labelled_agents_survive_a_restart_and_toggling_labels_starts_their_series_afresh(tmp_path: Path) -> None:
    path = str(tmp_path / "state.db")
    first = ExporterMetrics(agents=AgentLabels(max_agents=1))
    first.ledger.record(finished("agent-b"))
    store = StateStore(path)
    store.commit(Decisions(watermark=1.0), first.ledger.take_dirty(), exports=False)
    store.close()
    rows = StateStore(path).load().series
    again = ExporterMetrics(agents=AgentLabels(max_agents=1))
    again.ledger.restore(rows)
    again.ledger.record(finished("agent-a"))  # agent-b still holds the only label
    assert by_agent(again, "letta_runs_finished_total") == {"agent-b": 1, "other": 1}
    unlabelled = ExporterMetrics()
    unlabelled.ledger.restore(rows)
    assert (
        unlabelled.registry.get_sample_value(
            "letta_runs_finished_total", {"status": "completed", "stop_reason": "end_turn"}
        )
        == 0
    )  # the per-agent series are not read under the wrong labels


def test_agent_names_are_listed_for_unknown_agents_and_periodically_for_renames() -> None:
    listings: list[int] = []
    names = {"agent-a": "alpha"}

    def handler(request: httpx2.Request) -> httpx2.Response:
        listings.append(1)
        return httpx2.Response(200, json=[{"id": i, "name": n} for i, n in names.items()])

    now = [1000.0]
    learned: list[dict[str, str]] = []
    metrics = ExporterMetrics()
    client = LettaClient("http://letta.test", metrics, transport=httpx2.MockTransport(handler), sleep=no_sleep)
    details = RunDetails(
        client,
        records.Reading(ProblemLog(metrics)),
        False,
        lambda: now[0],
        on_agent_names=lambda n: learned.append(dict(n)),
    )
    run_a = Run(id="run-1", status="completed", created_at=RUN(sample("run")).created_at, agent_id="agent-a")
    run_b = run_a.model_copy(update={"agent_id": "agent-b"})

    asyncio.run(details.know_agents([run_a]))
    assert len(listings) == 1 and learned[-1] == {"agent-a": "alpha"}
    asyncio.run(details.know_agents([run_a]))
    assert len(listings) == 1  # known, and not stale yet
    names["agent-b"] = "beta"
    now[0] += AGENT_NAMES_EVERY - 1
    asyncio.run(details.know_agents([run_b]))
    assert len(listings) == 1  # unknown, but listed too recently
    now[0] += 1
    asyncio.run(details.know_agents([run_b]))
    assert len(listings) == 2 and learned[-1]["agent-b"] == "beta"
    names["agent-a"] = "alpha v2"
    now[0] += AGENT_NAMES_TTL
    asyncio.run(details.know_agents([]))
    assert len(listings) == 3 and learned[-1]["agent-a"] == "alpha v2"
