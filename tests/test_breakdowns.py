"""Agents, tools and cost against the simulator's ground truth: every new series exactly.

The scenario has no async-cancel flips and no zombies: the exporter counts a run once, at its first
terminal state, while the truth shows its messages as they are now, and only these two outcomes
change a run's messages after that moment.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from exporter.agents import AgentLabels
from exporter.letta.details import AGENT_NAMES_TTL
from exporter.metrics import ExporterMetrics
from exporter.pricing import PriceTable
from tests.harness import BUSY, SETTINGS, Harness, counted_truth

SCENARIO = replace(BUSY, flip=0.0, zombie=0.0, max_runs=150, rename_every_s=30.0, agent_renames=1.0)
# USD per million input, output, cached input, cache write tokens of each simulated model
PRICES = {
    "gpt-4o-mini": (0.15, 0.6, 0.075, 0.0),
    "claude-sonnet-4": (3.0, 15.0, 0.3, 3.75),
    "gemini-2.5-flash": (0.3, 2.5, 0.075, 0.0),
    "gpt-4.1": (2.0, 8.0, 0.5, 0.0),
}


def samples(h: Harness, name: str, *labels: str) -> dict[tuple[str, ...], float]:
    """Non-zero values of `name` by `labels`, summed over the others."""
    out: defaultdict[tuple[str, ...], float] = defaultdict(float)
    for metric in h.metrics.registry.collect():
        for s in metric.samples:
            if s.name == name:
                out[tuple(s.labels[label] for label in labels)] += s.value
    return {key: value for key, value in out.items() if value}


@pytest.fixture(scope="module")
def settled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Harness, list[dict[str, Any]], dict[str, Any]]:
    table = tmp_path_factory.mktemp("prices") / "prices.yaml"
    table.write_text(
        "".join(
            f"{m}: {{input: {i}, output: {o}, cached_input: {c}, cache_write: {w}}}\n"
            for m, (i, o, c, w) in PRICES.items()
        )
    )
    prices = PriceTable.load(Path(table))

    def metrics() -> ExporterMetrics:
        return ExporterMetrics(agents=AgentLabels(), prices=prices, tools=True)

    h = Harness(SCENARIO, settings=replace(SETTINGS, tool_metrics=True), metrics=metrics)
    h.run_for(90)
    h.clock.now += AGENT_NAMES_TTL  # the next poll lists the agents again, under their names of now
    h.poll()
    truth = h.sim.truth()
    return h, counted_truth(truth, h.boot), truth


def test_runs_and_tokens_by_agent_equal_the_truth(
    settled: tuple[Harness, list[dict[str, Any]], dict[str, Any]],
) -> None:
    h, runs, _ = settled
    assert len(runs) == SCENARIO.max_runs
    want_runs = Counter((r["agent_id"], r["first_terminal_status"]) for r in runs)
    assert samples(h, "letta_runs_finished_total", "agent_id", "status") == dict(want_runs)
    tokens: Counter[tuple[str, str]] = Counter()
    for run in runs:
        for kind, n in run["tokens"].items():
            tokens[(run["agent_id"], kind)] += n
    assert samples(h, "letta_step_tokens_total", "agent_id", "type") == {k: float(v) for k, v in tokens.items() if v}
    # a lagging run is counted while Letta still shows it running: no duration is known yet
    durations = Counter((r["agent_id"],) for r in runs if r["outcome"] != "lagging")
    assert samples(h, "letta_run_duration_seconds_count", "agent_id") == dict(durations)


def test_sums_over_agent_id_equal_the_unlabelled_totals(
    settled: tuple[Harness, list[dict[str, Any]], dict[str, Any]],
) -> None:
    h, runs, _ = settled
    assert sum(samples(h, "letta_runs_finished_total", "agent_id").values()) == len(runs)
    by_type = samples(h, "letta_step_tokens_total", "type")
    assert by_type == {(k,): float(sum(r["tokens"][k] for r in runs)) for k in runs[0]["tokens"] if by_type.get((k,))}


def test_cost_is_the_formula_over_the_truths_tokens(
    settled: tuple[Harness, list[dict[str, Any]], dict[str, Any]],
) -> None:
    h, runs, _ = settled
    want: defaultdict[tuple[str, ...], float] = defaultdict(float)
    for run in runs:
        t = run["tokens"]
        given, output, cached, written = PRICES[run["model"]]
        fresh = t["input"] - t["cached_input"] - t["cache_write"]
        usd = fresh * given + t["cached_input"] * cached + t["cache_write"] * written + t["output"] * output
        want[(run["agent_id"], run["model"])] += usd / 1e6
    got = samples(h, "letta_step_cost_usd_total", "agent_id", "model")
    assert got.keys() == {k for k, v in want.items() if v}
    for key, usd in got.items():
        assert usd == pytest.approx(want[key], rel=1e-9), key
    assert samples(h, "letta_exporter_unpriced_steps_total", "reason") == {}


def test_tool_calls_by_tool_status_and_agent_equal_the_truth(
    settled: tuple[Harness, list[dict[str, Any]], dict[str, Any]],
) -> None:
    h, runs, _ = settled
    read = [r for r in runs if not r["tool_messages_filtered"]]
    calls = Counter((r["agent_id"], c["tool"], c["status"]) for r in read for c in r["tool_calls"])
    assert {s for _, _, s in calls} == {"success", "error", "unknown"}, "the scenario exercises every status"
    assert samples(h, "letta_tool_calls_total", "agent_id", "tool", "status") == dict(calls)
    filtered = sum(1 for r in runs if r["tool_messages_filtered"])
    assert filtered > 0
    assert samples(h, "letta_runs_tool_messages_missing_total", "reason") == {("filtered",): filtered}


def test_tool_durations_are_the_one_tool_steps(settled: tuple[Harness, list[dict[str, Any]], dict[str, Any]]) -> None:
    h, runs, _ = settled
    count: Counter[str] = Counter()
    total: defaultdict[str, float] = defaultdict(float)
    for run in (r for r in runs if not r["tool_messages_filtered"]):
        for d in run["tool_durations"]:
            count[d["tool"]] += 1
            total[d["tool"]] += d["ns"] / 1e9
    assert samples(h, "letta_tool_duration_seconds_count", "tool") == {(t,): n for t, n in count.items()}
    for (tool,), seconds in samples(h, "letta_tool_duration_seconds_sum", "tool").items():
        assert seconds == pytest.approx(total[tool], rel=1e-9)


def test_agent_info_shows_every_labelled_agent_under_its_current_name(
    settled: tuple[Harness, list[dict[str, Any]], dict[str, Any]],
) -> None:
    h, runs, truth = settled
    names = {a["id"]: a["name"] for a in truth["agents"]}
    assert any(a.get("renamed") for a in truth["agents"]), "the scenario renames an agent"
    shown = samples(h, "letta_agent_info", "agent_id", "agent_name")
    assert shown == {(agent, names[agent]): 1.0 for agent in {r["agent_id"] for r in runs}}
