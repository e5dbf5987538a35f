"""The simulator's ground truth: what every run looks like now, as an exporter should count it."""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING, Any

from exporter.simulator.messages import shown, tools_filtered
from exporter.simulator.plan import RunPlan, agent_name, model_of, ns_after, renames
from exporter.types import TOKEN_TYPES

if TYPE_CHECKING:
    from exporter.simulator.api import SimulatedLetta


def at(sim: SimulatedLetta, now: float, runs: list[RunPlan]) -> dict[str, Any]:
    """What the simulated server holds at `now` (also `GET /_sim/truth`), for checking what an exporter counted:

    `{"now", "start" (epoch s), "runs": {"total", "historical", "by_status": {API status: n}},
    "agents": [{"id", "name" (current), "renamed" (renames so far), "model", "provider"}],
    "terminal": [{"id", "agent_id", "kind" (sync|stream|async), "outcome" (Scenario weight name),
        "historical", "status", "stop_reason" (what the API shows now), "first_terminal_status",
        "first_stop_reason", "first_terminal_at" (epoch s), "created_at", "completed_at" (epoch s,
        as the API shows it, or null), "run_ns" (null while the API status is active), "ttft_ns"
        (null unless `Scenario.ttft` picked the run and its first token came), "model",
        "provider", "steps" (number listed now), "steps_by": [{"status", "stop_reason", "model",
        "provider", "count"}], "tokens": {"input", "output", "cached_input", "cache_write",
        "reasoning"}, "tool_calls": [{"tool", "status" (success|error|unknown), "call_id", "step_id"}],
        "tool_messages_filtered", "tool_durations": [{"tool", "ns"}]}],
    "active": [{"id", "agent_id", "status", "created_at", "zombie"}]}`

    A run is in `terminal` once it looks terminal to the Letta source (`exporter.letta.records`): a terminal status,
    or a terminal stop_reason under a lagging "running" (then `first_terminal_status` is
    "completed" while `status` is still "running"). `first_*` describe that first moment: a
    flip run's are cancelled/cancelled at the cancel, its current ones completed/end_turn later.
    Steps and tokens follow `exporter.letta.records` over the steps listed now (a pending step
    counts with 0 tokens; a flip run lists one while cancelled, then its finished step).

    `tool_calls` are the calls `GET /v1/runs/{id}/messages` lists now, oldest first (a finished
    step's; `unknown`: no return was written), none when the run's `include_return_message_types`
    drops tool call messages; `tool_messages_filtered` says whether it drops tool call or return
    messages (then returns are not listed either and every listed call would be `unknown`).
    `tool_durations`: the `tool_execution_ns` of each finished step with exactly one listed call.
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
        calls, durations = [], []
        if shown(p.message_types, "tool_call_message"):
            returns = shown(p.message_types, "tool_return_message")
            for step, call_plans in zip(p.steps, p.calls, strict=False):
                if age < step.end or not call_plans:
                    continue
                for c in call_plans:
                    outcome = (c.status if returns else None) or "unknown"
                    calls.append({"tool": c.name, "status": outcome, "call_id": c.id, "step_id": step.id})
                if len(call_plans) == 1 and step.tool_ns is not None:
                    durations.append({"tool": call_plans[0].name, "ns": step.tool_ns})
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
                "tool_calls": calls,
                "tool_messages_filtered": tools_filtered(p.message_types),
                "tool_durations": durations,
            }
        )
    models = [model_of(i, sim.scenario.models) for i in range(len(sim.agents))]
    agents = []
    for i, a in enumerate(sim.agents):
        renamed = renames(sim.scenario, i, now - sim.start)[0]
        agents.append(
            {
                "id": a,
                "name": agent_name(i, renamed),
                "renamed": renamed,
                "model": models[i][0],
                "provider": models[i][1],
            }
        )
    totals = {
        "total": len(runs),
        "historical": sum(p.historical for p in runs),
        "by_status": dict(by_status),
    }
    return {"now": now, "start": sim.start, "runs": totals, "agents": agents, "terminal": terminal, "active": active}
