"""Drive a real Letta server through the scenario mix, and read the ground truth back from its API.

Adapted from the driver of the tested offline Letta recipe. The fake LLM picks its behaviour from a
marker in the user message (see letta_server/fake_llm.py). Nothing here sleeps: every wait polls Letta or the
fake LLM with a bounded `wait_until`.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx2

from exporter.types import STOP_REASON_STATUS
from tests.e2e.letta_server.stack import FAKE_MODEL, LettaStack
from tests.support import wait_until

TERMINAL = ("completed", "failed", "cancelled", "expired")
SLOW = 4  # seconds the fake LLM takes in the cancel scenarios: the window to cancel in


@dataclass
class Phase:
    """What one driving phase did: scenario name -> run id (when known) and observations."""

    tracing: bool
    runs: dict[str, str] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)


def message(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


class Driver:
    def __init__(self, stack: LettaStack) -> None:
        self.stack = stack
        # No keep-alive: Letta 0.11 answers an unhandled error with a 500 and then drops the connection,
        # which would break the next request on a pooled connection.
        limits = httpx2.Limits(max_keepalive_connections=0)
        self.client = httpx2.Client(base_url=f"{stack.letta_url}/v1", timeout=120, limits=limits)
        self.version = stack.target.version
        self.modern = not stack.target.version.startswith("0.11")

    def close(self) -> None:
        self.client.close()

    # ------------------------------------------------------------------ agents
    def create_agent(self, name: str, agent_type: str | None = None) -> str:
        body: dict[str, Any] = {
            "name": name,
            "memory_blocks": [
                {"label": "human", "value": "The human is a test harness."},
                {"label": "persona", "value": "I am an agent driven by a fake LLM."},
            ],
        }
        if self.modern:
            body.update(model=f"openai-proxy/{FAKE_MODEL}", embedding="openai/text-embedding-3-small")
        else:  # 0.11: handles of OpenAI-compatible proxies are rejected; give the configs themselves
            endpoint = f"{self.stack.fake_llm_url}/v1"
            body["llm_config"] = {
                "model": FAKE_MODEL,
                "model_endpoint_type": "openai",
                "model_endpoint": endpoint,
                "context_window": 128000,
                "provider_name": "openai",
            }
            body["embedding_config"] = {
                "embedding_model": "text-embedding-3-small",
                "embedding_endpoint_type": "openai",
                "embedding_endpoint": endpoint,
                "embedding_dim": 1536,
            }
        if agent_type:
            body["agent_type"] = agent_type
        response = self.client.post("/agents/", json=body)
        assert response.status_code == 200, response.text
        return str(response.json()["id"])

    # ------------------------------------------------------------------ requests
    def sync(self, agent: str, text: str) -> int:
        return self.client.post(f"/agents/{agent}/messages", json=message(text)).status_code

    def stream(self, agent: str, text: str) -> str:
        with self.client.stream(
            "POST", f"/agents/{agent}/messages/stream", json={**message(text), "stream_tokens": True}
        ) as response:
            return "".join(response.iter_text())

    def start_async(self, agent: str, text: str) -> str:
        response = self.client.post(f"/agents/{agent}/messages/async", json=message(text))
        assert response.status_code == 200, response.text
        return str(response.json()["id"])

    def run(self, run_id: str) -> dict[str, Any]:
        run: dict[str, Any] = self.client.get(f"/runs/{run_id}").json()
        return run

    def wait_terminal(self, run_id: str, timeout: float = 60) -> dict[str, Any]:
        def terminal() -> dict[str, Any] | None:
            run = self.run(run_id)
            return run if run["status"] in TERMINAL else None

        return wait_until(terminal, timeout, f"{run_id} terminal")

    def cancel(self, agent: str, run_id: str) -> Any:
        response = self.client.post(f"/agents/{agent}/messages/cancel", json={"run_ids": [run_id]})
        assert response.status_code == 200, response.text
        return response.json()

    def newest_run_ids(self) -> set[str]:
        return {r["id"] for r in self.client.get("/runs/", params={"limit": 50}).json()}

    # ------------------------------------------------------------------ the mix
    def drive(self, agent: str, phase: Phase, memgpt_agent: str | None = None) -> None:
        """sync, stream, async (plain and with a tool call), LLM 500s, garbage, async and stream cancel."""
        before = self.newest_run_ids()

        def new_run() -> str:
            fresh = self.newest_run_ids() - before - set(phase.runs.values())
            assert len(fresh) == 1, fresh
            return fresh.pop()

        for name, text in (("sync_plain", "hello there"), ("sync_tool", "please look it up [tool]")):
            phase.notes[name] = self.sync(agent, text)
            phase.runs[name] = new_run()
        for name, text in (("stream_plain", "stream me"), ("stream_tool", "stream a lookup [tool]")):
            phase.notes[name] = self.stream(agent, text)[-300:]
            phase.runs[name] = new_run()
        for name, text in (("async_plain", "async hello"), ("async_tool", "async lookup [tool]")):
            phase.runs[name] = self.start_async(agent, text)
            self.wait_terminal(phase.runs[name])
        phase.notes["sync_fail500"] = self.sync(agent, "please fail [fail500]")
        phase.runs["sync_fail500"] = new_run()
        phase.runs["async_fail500"] = self.start_async(agent, "please fail async [fail500]")
        self.wait_terminal(phase.runs["async_fail500"])
        phase.notes["sync_garbage"] = self.sync(agent, "garbage please [garbage]")
        phase.runs["sync_garbage"] = new_run()
        phase.notes["stream_garbage"] = self.stream(agent, "garbage stream [garbage]")[-300:]
        phase.runs["stream_garbage"] = new_run()
        if memgpt_agent:
            phase.notes["memgpt_sync"] = self.sync(memgpt_agent, "hello memgpt")
            phase.runs["memgpt_sync"] = new_run()
        self.async_cancel(agent, phase)
        self.stream_cancel(agent, phase)

    def async_cancel(self, agent: str, phase: Phase) -> None:
        """Cancel an async run while its LLM call is in flight; Letta 0.16 later overwrites the status."""
        run_id = phase.runs["async_cancel"] = self.start_async(agent, f"be slow [slow={SLOW}]")
        wait_until(lambda: self.stack.llm_in_flight("text") == 1, 30, "the slow async LLM call in flight")
        phase.notes["async_cancel_response"] = self.cancel(agent, run_id)
        cancelled = self.wait_terminal(run_id, 30)
        phase.notes["async_cancel_seen"] = {"run": cancelled, "steps": run_steps(self.client, run_id)}
        phase.notes["async_cancel_status_after_cancel"] = (cancelled["status"], cancelled.get("stop_reason"))
        # Let the shielded task finish: the LLM call returns, then Letta writes the run once more.
        wait_until(lambda: self.stack.llm_in_flight() == 0, SLOW + 30, "the slow LLM call returned")
        if cancelled["status"] == "cancelled" and self.modern:

            def overwritten() -> dict[str, Any] | None:
                run = self.run(run_id)
                return run if run["status"] != "cancelled" else None

            settled = wait_until(overwritten, 30, "the cancelled->completed overwrite")
            phase.notes["async_cancel_status_later"] = (settled["status"], settled.get("stop_reason"))

    def stream_cancel(self, agent: str, phase: Phase) -> None:
        """Cancel a token stream while the LLM trickles its answer; the run stays cancelled."""
        before = self.newest_run_ids()
        result: dict[str, str] = {}
        thread = threading.Thread(target=lambda: result.update(body=self.stream(agent, f"slow stream [slow={SLOW}]")))
        thread.start()
        try:
            wait_until(lambda: self.stack.llm_in_flight("text") == 1, 30, "the slow stream's LLM call in flight")
            run_id = phase.runs["stream_cancel"] = wait_until(
                lambda: next(iter(self.newest_run_ids() - before), None), 30, "the streaming run listed"
            )
            phase.notes["stream_cancel_response"] = self.cancel(agent, run_id)
            cancelled = self.wait_terminal(run_id, 30)
            phase.notes["stream_cancel_seen"] = {"run": cancelled, "steps": run_steps(self.client, run_id)}
        finally:
            thread.join(SLOW + 60)
        phase.notes["stream_cancel_tail"] = result.get("body", "")[-300:]
        wait_until(lambda: self.stack.llm_in_flight() == 0, SLOW + 30, "the slow stream's LLM call returned")
        final = self.wait_terminal(run_id, 30)
        phase.notes["stream_cancel_status"] = (final["status"], final.get("stop_reason"))


# ---------------------------------------------------------------------- ground truth
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def all_runs(client: httpx2.Client, modern: bool) -> list[dict[str, Any]]:
    """Every run, paged newest first (0.14+: `before=<last id>` is the next, older, page)."""
    runs: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 20}
    while True:
        page = client.get("/runs/", params=params).json()
        fresh = [r for r in page if r["id"] not in {x["id"] for x in runs}]
        runs.extend(fresh)
        if len(page) < params["limit"] or not fresh or not modern:
            break
        params["before"] = page[-1]["id"]
    if not modern:  # 0.11 ignores the order and cursors; one big page holds everything here
        runs = client.get("/runs/", params={"limit": 1000}).json()
    return runs


def run_steps(client: httpx2.Client, run_id: str) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = client.get(f"/runs/{run_id}/steps", params={"limit": 1000}).json()
    return steps


def _n(value: Any) -> int:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) and value > 0 else 0


def step_tokens(step: dict[str, Any]) -> dict[str, int]:
    """The README's token rules: input=prompt_tokens, output=completion_tokens, cached_input,
    cache_write, reasoning (the flat 0.16.6+ fields, else the OpenAI-style details)."""
    prompt = step.get("prompt_tokens_details") or {}
    completion = step.get("completion_tokens_details") or {}

    def first(*values: Any) -> int:
        return next((_n(v) for v in values if v is not None), 0)

    return {
        "input": _n(step.get("prompt_tokens")),
        "output": _n(step.get("completion_tokens")),
        "cached_input": first(
            step.get("cached_input_tokens"), prompt.get("cached_tokens"), prompt.get("cache_read_tokens")
        ),
        "cache_write": first(step.get("cache_write_tokens"), prompt.get("cache_creation_tokens")),
        "reasoning": first(step.get("reasoning_tokens"), completion.get("reasoning_tokens")),
    }


def expected_samples(runs: list[dict[str, Any]], steps: dict[str, list[dict[str, Any]]]) -> Samples:
    """The counters the exporter must show for these runs, computed from the raw API answers."""
    counts: Counter[tuple[str, tuple[tuple[str, str], ...]]] = Counter()
    for run in runs:
        status, reason = run["status"], run.get("stop_reason")
        if status not in TERMINAL and reason in STOP_REASON_STATUS:
            status = STOP_REASON_STATUS[reason]
        assert status in TERMINAL, f"run {run['id']} is still {status}"
        counts[("letta_runs_finished_total", (("status", status), ("stop_reason", reason or "none")))] += 1
        counts[("letta_run_steps_count", (("status", status),))] += 1
        counts[("letta_run_steps_sum", (("status", status),))] += len(steps[run["id"]])
        if run.get("ttft_ns") is not None:
            counts[("letta_run_ttft_seconds_count", ())] += 1
        for step in steps[run["id"]]:
            model, provider = step.get("model") or "other", step.get("provider_name") or "other"
            labels = (
                ("model", model),
                ("provider", provider),
                ("status", step.get("status") or "none"),
                ("stop_reason", step.get("stop_reason") or "none"),
            )
            counts[("letta_steps_total", labels)] += 1
            for kind, amount in step_tokens(step).items():
                if amount:
                    counts[("letta_step_tokens_total", (("model", model), ("provider", provider), ("type", kind)))] += (
                        amount
                    )
    counts[("letta_runs_created_total", ())] = len(runs)
    return {key: float(value) for key, value in counts.items()}


COMPARED = (
    "letta_runs_created_total",
    "letta_runs_finished_total",
    "letta_run_steps_count",
    "letta_run_steps_sum",
    "letta_run_ttft_seconds_count",
    "letta_steps_total",
    "letta_step_tokens_total",
)


def exported_samples(samples: Samples) -> Samples:
    """The exporter's values for the compared families, without the zero-valued pre-initialised series."""
    return {key: value for key, value in samples.items() if key[0] in COMPARED and value != 0}


def diff(expected: Samples, exported: Samples) -> str:
    lines = []
    for key in sorted(set(expected) | set(exported)):
        want, got = expected.get(key, 0.0), exported.get(key, 0.0)
        mark = "  " if want == got else "!!"
        lines.append(f"{mark} {key[0]}{{{', '.join(f'{k}={v}' for k, v in key[1])}}}: expected {want:g}, got {got:g}")
    return "\n".join(lines)


def run_messages(client: httpx2.Client, run_id: str) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = client.get(f"/runs/{run_id}/messages", params={"limit": 1000}).json()
    return messages


def agent_names(client: httpx2.Client) -> dict[str, str]:
    return {a["id"]: a["name"] for a in client.get("/agents/", params={"limit": 1000}).json()}


def tool_outcomes(messages: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(tool, status) per tool call: `tool_calls` of call messages (else the single `tool_call`), the
    status of the return with the same call id (`tool_returns`, else the message's own), else unknown."""
    calls: dict[str, str] = {}
    returned: dict[str, str] = {}
    for m in messages:
        if m["message_type"] == "tool_call_message":
            for call in m.get("tool_calls") or [m["tool_call"]]:
                calls[call["tool_call_id"]] = call["name"]
        elif m["message_type"] == "tool_return_message":
            for r in m.get("tool_returns") or [m]:
                returned[r["tool_call_id"]] = r["status"]
    return [(name, returned.get(call_id, "unknown")) for call_id, name in calls.items()]


def run_agent(run: dict[str, Any], steps: list[dict[str, Any]]) -> str:
    """0.12+ runs carry `agent_id`; 0.11's Job-shaped runs carry none, but their steps do."""
    found = run.get("agent_id") or (run.get("metadata") or {}).get("agent_id")
    return str(found or next((s["agent_id"] for s in steps if s.get("agent_id")), "none"))


def expected_breakdowns(
    runs: list[dict[str, Any]],
    steps: dict[str, list[dict[str, Any]]],
    messages: dict[str, list[dict[str, Any]]],
    names: dict[str, str],
) -> Samples:
    """What `--agent-labels --tool-metrics` must show: runs and tool calls by agent, and agent names."""
    counts: Counter[tuple[str, tuple[tuple[str, str], ...]]] = Counter()
    for run in runs:
        status, reason, agent = run["status"], run.get("stop_reason"), run_agent(run, steps[run["id"]])
        if status not in TERMINAL and reason in STOP_REASON_STATUS:
            status = STOP_REASON_STATUS[reason]
        labels = (("agent_id", agent), ("status", status), ("stop_reason", reason or "none"))
        counts[("letta_runs_finished_total", labels)] += 1
        for tool, outcome in tool_outcomes(messages[run["id"]]):
            counts[("letta_tool_calls_total", (("agent_id", agent), ("status", outcome), ("tool", tool)))] += 1
    for agent in {run_agent(r, steps[r["id"]]) for r in runs} - {"none"}:
        counts[("letta_agent_info", (("agent_id", agent), ("agent_name", names[agent])))] = 1
    return {key: float(value) for key, value in counts.items()}


BREAKDOWNS = ("letta_runs_finished_total", "letta_tool_calls_total", "letta_agent_info")
