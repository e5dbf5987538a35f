"""The simulator's ground truth: what every run looks like now, as an exporter should count it."""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING, Any

from exporter.simulator.plan import RunPlan, model_of, ns_after
from exporter.types import TOKEN_TYPES

if TYPE_CHECKING:
    from exporter.simulator.api import SimulatedLetta


def at(sim: SimulatedLetta, now: float, runs: list[RunPlan]) -> dict[str, Any]:
    """What the simulated server holds at `now` (also `GET /_sim/truth`), for checking what an exporter counted:

    `{"now", "start" (epoch s), "runs": {"total", "historical", "by_status": {API status: n}},
    "agents": [{"id", "name", "model", "provider"}],
    "terminal": [{"id", "agent_id", "kind" (sync|stream|async), "outcome" (Scenario weight name),
        "historical", "status", "stop_reason" (what the API shows now), "first_terminal_status",
        "first_stop_reason", "first_terminal_at" (epoch s), "created_at", "completed_at" (epoch s,
        as the API shows it, or null), "run_ns" (null while the API status is active), "ttft_ns"
        (null unless `Scenario.ttft` picked the run and its first token came), "model",
        "provider", "steps" (number listed now), "steps_by": [{"status", "stop_reason", "model",
        "provider", "count"}], "tokens": {"input", "output", "cached_input", "cache_write",
        "reasoning"}}], "active": [{"id", "agent_id", "status", "created_at", "zombie"}]}`

    A run is in `terminal` once it looks terminal to the Letta source (`exporter.letta.records`): a terminal status,
    or a terminal stop_reason under a lagging "running" (then `first_terminal_status` is
    "completed" while `status` is still "running"). `first_*` describe that first moment: a
    flip run's are cancelled/cancelled at the cancel, its current ones completed/end_turn later.
    Steps and tokens follow `exporter.letta.records` over the steps listed now (a pending step
    counts with 0 tokens; a flip run lists one while cancelled, then its finished step).
    """
    by_status: collections.Counter[str] = collections.Counter()
    terminal, active = [], []
    for p in runs:
        created, age = p.created_us / 1e6, now - p.created_us / 1e6
        status, stop, done, run_s = p.state(age)
        by_status[status] += 1
        if age < p.t_first:
            active.append(
                {
                    "id": p.id,
                    "agent_id": sim.agents[p.agent],
                    "status": status,
                    "created_at": created,
                    "zombie": p.outcome == "zombie",
                }
            )
            continue
        model, provider = model_of(p.agent, sim.scenario.models)[:2]
        steps = list(p.visible(age))
        groups = collections.Counter((s.status, s.stop_reason) if f else ("pending", None) for s, f in steps)
        tokens = dict.fromkeys(TOKEN_TYPES, 0)
        for step, finished in steps:
            for key, value in zip(tokens, step.tokens if finished else (), strict=False):
                tokens[key] += value or 0
        first = ("cancelled", "cancelled") if p.outcome == "flip" else (p.status, p.stop_reason)
        terminal.append(
            {
                "id": p.id,
                "agent_id": sim.agents[p.agent],
                "kind": p.kind,
                "outcome": p.outcome,
                "historical": p.historical,
                "status": status,
                "stop_reason": stop,
                "first_terminal_status": first[0],
                "first_stop_reason": first[1],
                "first_terminal_at": created + p.t_first,
                "created_at": created,
                "completed_at": None if done is None else created + done,
                "run_ns": None if run_s is None else round(run_s * 1e9),
                "model": model,
                "provider": provider,
                "ttft_ns": ns_after(p.ttft, age),
                "steps": len(steps),
                "tokens": tokens,
                "steps_by": [
                    {"status": st, "stop_reason": sr, "model": model, "provider": provider, "count": n}
                    for (st, sr), n in sorted(groups.items(), key=str)
                ],
            }
        )
    models = [model_of(i, sim.scenario.models) for i in range(len(sim.agents))]
    agents = [
        {"id": a, "name": f"sim-agent-{i}", "model": models[i][0], "provider": models[i][1]}
        for i, a in enumerate(sim.agents)
    ]
    totals = {
        "total": len(runs),
        "historical": sum(p.historical for p in runs),
        "by_status": dict(by_status),
    }
    return {"now": now, "start": sim.start, "runs": totals, "agents": agents, "terminal": terminal, "active": active}
