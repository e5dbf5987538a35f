"""The simulated Letta 0.16.8 REST API: routes, query validation and JSON as the real server returns it.

Quirks included where an exporter can go wrong (docs/letta-api.md §1): inverted run cursors,
`GET /v1/steps/` always 400, `total_duration_ns` only in lists, naive `completed_at`, sync runs
never `running`, a stream cancel leaving its step `pending` forever, FastAPI's 422s and redirects,
run messages filtered after paging, with time-ordered cursors whatever the order.
"""

from __future__ import annotations

import bisect
import collections
import email.utils
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2

from exporter.simulator import messages, truth
from exporter.simulator.plan import (
    INF,
    OUTCOMES,
    RunPlan,
    Scenario,
    StepPlan,
    agent_name,
    model_of,
    ns_after,
    pick,
    plan_run,
    renames,
    uid,
)
from exporter.simulator.query import Reply, boolean, integer, invalid, page
from exporter.types import STOP_REASONS

VERSION = "0.16.8"
ORG = "org-00000000-0000-4000-8000-000000000000"
RUN_STATUSES = ("created", "running", "completed", "failed", "cancelled")  # 0.16.8 RunStatus
RUN_TYPES = {"sync": "send_message", "stream": "send_message_streaming", "async": "send_message_async"}
STEPS_LIST_400 = "Argument order does not match type typing.Optional[str]; is False of type <class 'bool'>"
ROUTES = (  # route templates; SimulatedLetta.requests is keyed by "METHOD <template>"
    "/v1/health/",
    "/v1/runs/",
    "/v1/runs/active",
    "/v1/runs/{run_id}",
    "/v1/runs/{run_id}/steps",
    "/v1/runs/{run_id}/metrics",
    "/v1/runs/{run_id}/messages",
    "/v1/steps/",
    "/v1/steps/{step_id}",
    "/v1/steps/{step_id}/metrics",
    "/v1/agents/",
    "/_sim/truth",
)
_PATTERNS = [(re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", t) + "$"), t) for t in ROUTES]
_UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _iso(us: int, z: bool = True) -> str:
    """created_at carries a ``Z``; completed_at is naive UTC (docs/letta-api.md §1.11)."""
    text = (_EPOCH + timedelta(microseconds=us)).strftime("%Y-%m-%dT%H:%M:%S.%f")
    return text + "Z" if z else text


class SimulatedLetta:
    """The simulated server: ``handle`` is an httpx2 handler, safe to call from many threads."""

    def __init__(self, scenario: Scenario = Scenario(), clock: Callable[[], float] = time.time) -> None:
        self.scenario, self.clock = scenario, clock
        self.requests: collections.Counter[str] = collections.Counter()
        self._lock = threading.RLock()
        self.start = clock()
        rng = random.Random(f"{scenario.seed}:agents")
        self.agents = [uid(rng, "agent") for _ in range(max(1, scenario.agents))]
        self._tools = [uid(rng, "tool") for _ in range(3)]
        self._agents_us = round((self.start - scenario.history_span_s - 3600) * 1e6)
        self._plans: list[RunPlan] = []  # sorted by (created_at, id), as Letta sorts runs
        self._by_id: dict[str, int] = {}
        self._step_run: dict[str, int] = {}
        self._messages: dict[str, tuple[messages.Message, ...]] = {}  # the runs last asked for, built then
        history, hist_rng = [], random.Random(f"{scenario.seed}:history")
        ordinary = {k: getattr(scenario, k) for k in ("completed", "failed", "cancelled")}
        for i in range(scenario.history):
            rng = random.Random(f"{scenario.seed}:history:{i}")
            plan = plan_run(rng, scenario, len(self.agents), self._tools, pick(hist_rng, ordinary))
            created = self.start - scenario.history_span_s * hist_rng.random()
            created = min(created, self.start - plan.t_done - 0.001)  # terminal before start
            history.append(replace(plan, created_us=round(created * 1e6), historical=True))
        for plan in sorted(history, key=lambda p: (p.created_us, p.id)):
            self._add(plan)
        self._arrivals = random.Random(f"{scenario.seed}:arrivals")
        rate = scenario.runs_per_second
        self._next = self.start + self._arrivals.expovariate(rate) if rate > 0 else INF
        self._live = 0

    def _add(self, plan: RunPlan) -> None:
        self._by_id[plan.id] = len(self._plans)
        self._step_run.update((step.id, len(self._plans)) for step in plan.steps)
        self._plans.append(plan)

    def _runs(self, now: float) -> list[RunPlan]:
        """Runs created by ``now``, planning new arrivals first (in order, so the seed decides all)."""
        sc = self.scenario
        while self._next <= now and (sc.max_runs is None or self._live < sc.max_runs):
            rng = random.Random(f"{sc.seed}:live:{self._live}")
            plan = plan_run(rng, sc, len(self.agents), self._tools, pick(rng, {k: getattr(sc, k) for k in OUTCOMES}))
            last = self._plans[-1].created_us if self._plans else 0
            self._add(replace(plan, created_us=max(round(self._next * 1e6), last + 1)))
            self._live += 1
            self._next += self._arrivals.expovariate(sc.runs_per_second)
        return self._plans[: bisect.bisect_right(self._plans, now * 1e6, key=lambda p: p.created_us)]

    # ----------------------------------------------------------------- JSON as 0.16.8 returns it

    def _run_json(self, p: RunPlan, now: float, listed: bool) -> dict[str, Any]:
        status, stop, done, run_s = p.state(now - p.created_us / 1e6)
        meta: dict[str, Any] = {"run_type": RUN_TYPES[p.kind]} | ({"lettuce": None} if p.kind == "async" else {})
        if p.error is not None and status == "failed":
            meta["error"] = p.error
        return {
            "id": p.id,
            "status": status,
            "created_at": _iso(p.created_us),
            "completed_at": None if done is None else _iso(p.created_us + round(done * 1e6), z=False),
            "agent_id": self.agents[p.agent],
            "conversation_id": None,
            "base_template_id": None,
            "background": p.kind == "async",
            "metadata": meta,
            "request_config": {
                "use_assistant_message": True,
                "assistant_message_tool_name": "send_message",
                "assistant_message_tool_kwarg": "message",
                "include_return_message_types": None if p.message_types is None else list(p.message_types),
            },
            "stop_reason": stop,
            "callback_url": None,
            "callback_sent_at": None,
            "callback_status_code": None,
            "callback_error": None,
            "ttft_ns": ns_after(p.ttft, now - p.created_us / 1e6),
            # docs/letta-api.md §1.3, §1.4: only lists carry the duration
            "total_duration_ns": round(run_s * 1e9) if listed and run_s is not None else None,
        }

    def _step_json(self, p: RunPlan, s: StepPlan, finished: bool) -> dict[str, Any]:
        model, provider, handle, endpoint, window = model_of(p.agent, self.scenario.models)
        prompt, completion, cached, write, think = s.tokens if finished else (0, 0, None, None, None)
        failed = finished and s.error is not None
        trace = f"Traceback (most recent call last):\nletta.errors.LLMServerError: {s.error}\n"
        return {
            "id": s.id,
            "origin": None,
            "organization_id": ORG,
            "provider_id": None,
            "run_id": p.id,
            "agent_id": self.agents[p.agent],
            "provider_name": provider,
            "provider_category": "base",
            "model": model,
            "model_handle": handle,
            "model_endpoint": endpoint,
            "context_window_limit": window,
            "completion_tokens": completion,
            "prompt_tokens": prompt,
            "total_tokens": prompt + completion,
            "cached_input_tokens": cached,
            "cache_write_tokens": write,
            "reasoning_tokens": think,
            "completion_tokens_details": None if think is None else {"reasoning_tokens": think},
            "prompt_tokens_details": None
            if cached is None
            else {
                "cached_tokens": cached,
                "cache_read_tokens": cached,
                "cache_creation_tokens": write or 0,
            },
            "stop_reason": s.stop_reason if finished else None,
            "tags": [],
            "tid": None,
            "trace_id": p.trace_id,
            "request_id": None,
            "messages": [],
            "feedback": None,
            "project_id": None,
            "error_type": "LLMServerError" if failed else None,
            "error_data": {"message": s.error, "traceback": trace, "details": None} if failed else None,
            "status": s.status if finished else "pending",
        }

    # ----------------------------------------------------------------- routes

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        """Serve one request; usable as ``httpx2.MockTransport(sim.handle)``."""
        with self._lock:
            response = self._answer(request)
        response.headers["Date"] = email.utils.formatdate(self.clock(), usegmt=True)  # as uvicorn sends it
        return response

    def _answer(self, request: httpx2.Request) -> httpx2.Response:
        path, method = request.url.path, request.method
        route = next(((t, m.groupdict()) for p, t in _PATTERNS if (m := p.match(path))), None)
        try:
            if route is None:
                alt = path[:-1] if path.endswith("/") else path + "/"
                if any(p.match(alt) for p, _ in _PATTERNS):  # FastAPI's redirect_slashes
                    self.requests[f"{method} (redirect)"] += 1
                    raise Reply(307, headers={"location": str(request.url.copy_with(path=alt))})
                self.requests[f"{method} (unmatched)"] += 1
                raise Reply(404, {"detail": "Not Found"})
            self.requests[f"{method} {route[0]}"] += 1
            if method != "GET":
                raise Reply(405, {"detail": "Method Not Allowed"})
            return httpx2.Response(200, json=self._route(route[0], route[1], request.url.params))
        except Reply as reply:
            body = {} if reply.body is None else {"json": reply.body}
            return httpx2.Response(reply.status, headers=reply.headers, **body)

    def _route(self, template: str, args: dict[str, str], q: httpx2.QueryParams) -> Any:
        now = self.clock()
        runs = self._runs(now)
        if template == "/v1/health/":
            return {"version": VERSION, "status": "ok"}
        if template == "/v1/steps/":  # docs/letta-api.md §1.1: 400 on 0.12-0.16.8, whatever the parameters
            raise Reply(400, {"detail": STEPS_LIST_400})
        if template == "/_sim/truth":
            return truth.at(self, now, runs)
        if template == "/v1/runs/":
            return self._list_runs(runs, q, now)
        if template == "/v1/runs/active":  # deprecated: agent_id + background only, newest 100
            kept = [(k, v) for k, v in q.multi_items() if k in ("agent_id", "background")]
            return self._list_runs(runs, httpx2.QueryParams([*kept, ("active", "true")]), now)
        if template == "/v1/agents/":
            return self._list_agents(runs, q, now)
        if "step_id" in args:
            p, step, finished = self._step(args["step_id"], now)
            if template == "/v1/steps/{step_id}":
                return self._step_json(p, step, finished)
            if not finished:  # the metrics row is written when the step ends
                raise Reply(404, {"detail": f"NOT_FOUND: StepMetrics with id {step.id} not found"})
            return {
                "id": step.id,
                "organization_id": ORG,
                "provider_id": None,
                "run_id": p.id,
                "agent_id": self.agents[p.agent],
                "step_start_ns": None,
                "llm_request_start_ns": None,
                "llm_request_ns": step.llm_ns,
                "tool_execution_ns": step.tool_ns,
                "step_ns": step.step_ns,
                "base_template_id": None,
                "template_id": None,
                "project_id": None,
            }
        p = self._run(args["run_id"], now)
        age = now - p.created_us / 1e6
        if template == "/v1/runs/{run_id}":
            return self._run_json(p, now, listed=False)
        if template == "/v1/runs/{run_id}/messages":
            return self._list_messages(p, age, q)
        if template == "/v1/runs/{run_id}/steps":
            steps = list(p.visible(age))
            limit = integer(q, "limit", 100)
            ids = {s.id: i for i, (s, _) in enumerate(steps)}
            return [self._step_json(p, *steps[i]) for i in page(len(steps), ids.get, q, False, "Step")[:limit]]
        _, _, done, run_s = p.state(age)  # /metrics: num_steps and run_ns are written at the terminal update
        return {
            "id": p.id,
            "organization_id": ORG,
            "agent_id": self.agents[p.agent],
            "project_id": None,
            "run_start_ns": p.created_us * 1000,
            "run_ns": None if run_s is None else round(run_s * 1e9),
            "num_steps": 0 if done is None else len(list(p.visible(age))),
            "tools_used": None if p.tool_id is None or done is None else [p.tool_id],
            "template_id": None,
            "base_template_id": None,
        }

    def _run(self, run_id: str, now: float) -> RunPlan:
        if not re.fullmatch(f"run-{_UUID}", run_id):
            raise Reply(400, {"detail": "INVALID_ARGUMENT: Invalid run ID format"})
        i = self._by_id.get(run_id)
        if i is None or self._plans[i].created_us > now * 1e6:
            raise Reply(404, {"detail": f"NOT_FOUND: Run with id {run_id} not found"})
        return self._plans[i]

    def _written(self, p: RunPlan, age: float) -> tuple[messages.Message, ...]:
        """The run's messages written by ``age`` (seconds after its creation), oldest first, unfiltered."""
        with self._lock:
            built = self._messages.get(p.id)
            if built is None:
                if len(self._messages) >= 4096:  # bounded: a demo serves for days
                    del self._messages[next(iter(self._messages))]
                built = self._messages[p.id] = messages.build(self.scenario.seed, p)
        return built[: bisect.bisect_right(built, age, key=lambda m: m.at)]

    def _list_messages(self, p: RunPlan, age: float, q: httpx2.QueryParams) -> list[dict[str, Any]]:
        """Paged in stored order; ``after``/``before`` mean later/earlier than the cursor in time
        whatever the order (0.16.8 compares sequence ids), so in ``desc`` they are inverted. The
        run's message filter is applied after paging: a page may come back short, even empty."""
        limit = integer(q, "limit", 100)
        order_by = q.get("order_by", "created_at")
        if order_by != "created_at":
            raise invalid(
                "order_by", "literal_error", "Input should be 'created_at'", order_by, expected="'created_at'"
            )
        listed = self._written(p, age)
        ids = {m.body["id"]: i for i, m in enumerate(listed)}
        for name in ("after", "before"):
            cursor = q.get(name)
            if cursor is not None and cursor not in ids:
                raise Reply(404, {"detail": f"No message found with id '{cursor}' for agent 'None'."})
        order = q.get("order", "asc")
        kept = [(k, v) for k, v in q.multi_items() if k in ("after", "before")]
        rows = page(len(listed), ids.get, httpx2.QueryParams([*kept, ("order", order)]), order == "desc", None)
        return [listed[i].body for i in rows[:limit] if messages.shown(p.message_types, listed[i].type)]

    def _step(self, step_id: str, now: float) -> tuple[RunPlan, StepPlan, bool]:
        if not re.fullmatch(f"step-{_UUID}", step_id):
            raise Reply(400, {"detail": "INVALID_ARGUMENT: Invalid step ID format"})
        if step_id in self._step_run:
            p = self._plans[self._step_run[step_id]]
            if p.created_us <= now * 1e6:
                for step, finished in p.visible(now - p.created_us / 1e6):
                    if step.id == step_id:
                        return p, step, finished
        raise Reply(404, {"detail": f"NOT_FOUND: Step with id {step_id} not found"})

    def _list_runs(self, runs: list[RunPlan], q: httpx2.QueryParams, now: float) -> list[dict[str, Any]]:
        limit = integer(q, "limit", 100, hi=1000)
        statuses = q.get_list("statuses")
        for value in statuses:
            if value not in RUN_STATUSES:
                raise Reply(400, {"detail": f"'{value}' is not a valid RunStatus"})
        statuses = statuses or (["created", "running"] if boolean(q, "active") else [])
        stop = q.get("stop_reason")
        if stop is not None and stop not in STOP_REASONS:
            raise invalid("stop_reason", "enum", "Input should be a valid StopReasonType", stop)
        agents = [q["agent_id"]] if q.get("agent_id") else q.get_list("agent_ids")
        background = boolean(q, "background")
        out = []

        def find(run_id: str) -> int | None:
            at = self._by_id.get(run_id)
            return at if at is not None and at < len(runs) else None

        for i in page(len(runs), find, q, True, None):
            p = runs[i]
            status, reason, _, _ = p.state(now - p.created_us / 1e6)
            if (
                (not statuses or status in statuses)
                and (not agents or self.agents[p.agent] in agents)
                and (background is None or (p.kind == "async") == background)
                and (stop is None or reason == stop)
            ):
                out.append(self._run_json(p, now, listed=True))
                if len(out) == limit:
                    break
        return out

    def _list_agents(self, runs: list[RunPlan], q: httpx2.QueryParams, now: float) -> list[dict[str, Any]]:
        last: dict[int, str | None] = {}  # last_stop_reason: set at every terminal run update
        for p in runs:
            _, stop, done, _ = p.state(now - p.created_us / 1e6)
            if done is not None:
                last[p.agent] = stop
        out = []
        ids = {a: i for i, a in enumerate(self.agents)}  # agent i was created i µs after agent 0
        for i in page(len(ids), ids.get, q, False, None)[: integer(q, "limit", 50)]:
            model, provider, handle, endpoint, window = model_of(i, self.scenario.models)
            created = _iso(self._agents_us + i)
            renamed, renamed_at = renames(self.scenario, i, now - self.start)
            updated = created if renamed_at is None else _iso(round((self.start + renamed_at) * 1e6))
            out.append(
                {
                    "id": self.agents[i],
                    "name": agent_name(i, renamed),
                    "agent_type": "letta_v1_agent",
                    "model": handle,
                    "llm_config": {
                        "model": model,
                        "handle": handle,
                        "model_endpoint_type": provider,
                        "model_endpoint": endpoint,
                        "provider_name": provider,
                        "provider_category": "base",
                        "context_window": window,
                    },
                    "tags": ["simulated"],
                    "created_at": created,
                    "updated_at": updated,
                    "description": None,
                    "metadata": None,
                    "project_id": None,
                    "last_stop_reason": last.get(i),
                }
            )
        return out

    def truth(self) -> dict[str, Any]:
        """Ground truth at `clock()` (also `GET /_sim/truth`): see `exporter.simulator.truth`."""
        with self._lock:
            now = self.clock()
            return truth.at(self, now, self._runs(now))
