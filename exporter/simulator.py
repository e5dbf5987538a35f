"""A deterministic, simulated Letta 0.16.8 REST API, quirks included.

The demo, the unit tests (in-process through ``httpx.MockTransport(sim.handle)``) and the integration
tests and benchmarks (``serve()``, real HTTP on 127.0.0.1) need a Letta that behaves like the real one
where an exporter can go wrong (``letta-api.md`` §0, §4, §5): inverted run cursors, ``GET /v1/steps/``
always 400, ``total_duration_ns`` only in lists, sync runs never ``running``, failed runs with and
without a stop reason, a stream cancel leaving its step ``pending`` forever, an async cancel later
overwritten to ``completed``, zombie runs, and ``stop_reason`` set while ``status`` still says running.

Every run is planned whole from the seed (arrival, outcome, steps, durations, tokens) and what the API
shows is a pure function of that plan and ``clock()``, so a fake clock gives exact, sleep-free tests.
"""

from __future__ import annotations

import argparse
import bisect
import collections
import email.utils
import random
import re
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx

from exporter import faults
from exporter.model import STOP_REASON_STATUS, STOP_REASONS

VERSION = "0.16.8"
ORG = "org-00000000-0000-4000-8000-000000000000"
RUN_STATUSES = ("created", "running", "completed", "failed", "cancelled")  # 0.16.8 RunStatus
OUTCOMES = ("completed", "failed", "cancelled", "flip", "zombie", "lagging")
INF = float("inf")
# model, provider_name, handle, endpoint, context window. Agent i uses MODELS[i % 4] for every step
# (with Scenario.models > 4, fine-tunes of them: see _model).
MODELS = (
    ("gpt-4o-mini", "openai", "openai/gpt-4o-mini", "https://api.openai.com/v1", 128000),
    ("claude-sonnet-4", "anthropic", "anthropic/claude-sonnet-4", "https://api.anthropic.com/v1", 200000),
    ("gemini-2.5-flash", "google_ai", "google_ai/gemini-2.5-flash",
     "https://generativelanguage.googleapis.com", 1048576),
    ("gpt-4.1", "openai", "openai/gpt-4.1", "https://api.openai.com/v1", 1047576),
)  # fmt: skip
RUN_TYPES = {"sync": "send_message", "stream": "send_message_streaming", "async": "send_message_async"}
ERRORS = (
    "INTERNAL_SERVER_ERROR: OpenAI API error: Error code: 500 - {'error': {'message': 'upstream failure'}}",
    # as real 0.16.8 stores it for a non-JSON LLM answer (tests/e2e, fake LLM [garbage])
    "INTERNAL_SERVER_ERROR: OpenAI API returned invalid JSON response (likely an HTML error page): "
    "Expecting value: line 1 column 1 (char 0)",
)
STEPS_LIST_400 = "Argument order does not match type typing.Optional[str]; is False of type <class 'bool'>"
ROUTES = (  # route templates; SimulatedLetta.requests is keyed by "METHOD <template>"
    "/v1/health/", "/v1/runs/", "/v1/runs/active", "/v1/runs/{run_id}", "/v1/runs/{run_id}/steps",
    "/v1/runs/{run_id}/metrics", "/v1/steps/", "/v1/steps/{step_id}", "/v1/steps/{step_id}/metrics",
    "/v1/agents/", "/_sim/truth",
)  # fmt: skip
_PATTERNS = [(re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", t) + "$"), t) for t in ROUTES]
_UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# prompt, completion, cached input, cache write, reasoning tokens
Tokens = tuple[int, int, int | None, int | None, int | None]


@dataclass(frozen=True)
class Scenario:
    """Traffic shape. Outcome weights are normalised; real-Letta-like durations (0.2-3 s a run)."""

    seed: int = 1
    agents: int = 3
    runs_per_second: float = 2.0  # Poisson arrivals of new runs (0 = no new runs)
    max_runs: int | None = None  # stop creating live runs after this many (history not included)
    history: int = 0  # terminal runs seeded before start, spread over history_span_s
    history_span_s: float = 3600.0
    duration_scale: float = 1.0  # multiplies every duration, including the lagging-status window
    completed: float = 0.80  # end_turn mostly, a few max_steps / requires_approval
    failed: float = 0.08  # sync: failed/null, async: failed/error; last step llm_api_error
    cancelled: float = 0.04  # stream cancel: cancelled/cancelled, last step pending forever
    flip: float = 0.03  # async: cancelled/cancelled, later overwritten to completed/end_turn
    zombie: float = 0.02  # stays created/running forever
    lagging: float = 0.03  # stream: stop_reason end_turn while status still running, then completed
    tracing: float = 1.0  # fraction of runs whose steps carry a trace_id
    # fraction of runs whose run JSON carries ttft_ns (Letta <= 0.11, some hosted deployments); 0.16: null
    ttft: float = 0.0
    # fraction of completed streams whose LLM answer was unparseable: real 0.16.8 still completes them
    # (end_turn) with a successful step of 0 tokens and null token details (tests/e2e, [garbage])
    empty_stream: float = 0.02
    # distinct model names: agent i uses model i % models; past the four of MODELS, fine-tunes of
    # them (``gpt-4o-mini-ft4``): many label sets for series-cardinality and scrape-load tests
    models: int = 4


@dataclass(frozen=True)
class _StepPlan:
    id: str
    end: float  # seconds after run creation when the step finishes (INF: never)
    llm_ns: int
    tool_ns: int | None
    step_ns: int
    tokens: Tokens
    status: str  # success | failed, once finished
    stop_reason: str | None
    error: str | None


@dataclass(frozen=True)
class _RunPlan:
    """One run's whole life. Times are seconds after creation: ``t_first`` it first looks terminal to
    ``exporter.model.Run`` (flip: the cancel; lagging: the stop_reason), ``t_done`` the final status."""

    id: str
    agent: int
    created_us: int
    kind: str  # sync | stream | async
    outcome: str  # one of OUTCOMES
    historical: bool
    trace_id: str | None
    tool_id: str | None
    steps: tuple[_StepPlan, ...]
    status: str  # final status and stop reason
    stop_reason: str | None
    error: str | None
    t_first: float
    t_done: float
    ttft: float | None = None  # first token, seconds after creation (within the first LLM call); None: unreported

    def state(self, age: float) -> tuple[str, str | None, float | None, float | None]:
        """(status, stop_reason, completed_at, run duration) at ``age``; times relative to creation."""
        if self.outcome == "flip" and self.t_first <= age < self.t_done:
            return "cancelled", "cancelled", self.t_first, self.t_first
        if age >= self.t_done:  # completed_at stays at the first terminal update (flip: the cancel)
            completed_at = self.t_first if self.outcome == "flip" else self.t_done
            return self.status, self.stop_reason, completed_at, self.t_done
        if self.outcome == "lagging" and age >= self.t_first:
            return "running", "end_turn", None, None
        return ("running" if self.kind == "stream" else "created"), None, None, None

    def visible(self, age: float) -> Iterator[tuple[_StepPlan, bool]]:
        """(step, finished) listed at ``age``: finished steps, plus the in-flight one once cancelled."""
        for step in self.steps:
            if age < step.end:
                if self.outcome in ("cancelled", "flip") and age >= self.t_first:
                    yield step, False
                return
            yield step, True


class _Reply(Exception):
    """Raised to answer early with an error status (the body mimics FastAPI's)."""

    def __init__(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers


def _uid(rng: random.Random, prefix: str) -> str:
    return f"{prefix}-{uuid.UUID(int=rng.getrandbits(128), version=4)}"


def _iso(us: int, z: bool = True) -> str:
    """created_at carries a ``Z``; completed_at is naive UTC (§0.11)."""
    text = (_EPOCH + timedelta(microseconds=us)).strftime("%Y-%m-%dT%H:%M:%S.%f")
    return text + "Z" if z else text


def _pick(rng: random.Random, weights: dict[str, float]) -> str:
    names = [k for k, w in weights.items() if w > 0] or ["completed"]
    return rng.choices(names, [weights.get(k, 1.0) for k in names])[0]


def _model(agent: int, models: int) -> tuple[str, str, str, str, int]:
    index = agent % max(1, models)
    model, provider, handle, endpoint, window = MODELS[index % len(MODELS)]
    if index < len(MODELS):
        return model, provider, handle, endpoint, window
    return f"{model}-ft{index}", provider, f"{handle}-ft{index}", endpoint, window


def _plan(rng: random.Random, sc: Scenario, agents: int, tools: list[str], outcome: str) -> _RunPlan:
    """Plan a run relative to its creation (``created_us`` is set by the caller)."""
    s = sc.duration_scale
    kinds = {"sync": 0.4, "stream": 0.35, "async": 0.25}
    if outcome == "failed":
        kinds = {"sync": 0.6, "async": 0.4}
    kind = {"cancelled": "stream", "lagging": "stream", "flip": "async"}.get(outcome) or _pick(rng, kinds)
    agent = rng.randrange(agents)
    provider = _model(agent, sc.models)[1]
    reason = _pick(rng, {"end_turn": 0.9, "max_steps": 0.05, "requires_approval": 0.05})
    error = rng.choice(ERRORS) if outcome == "failed" else None
    n = rng.randint(2 if outcome in ("zombie", "flip") else 1, 4)
    t, t_first, steps = rng.uniform(0.01, 0.06) * s, INF, []
    t_start = t
    for i in range(n):
        last = i == n - 1
        # a flip run's last LLM call is slow: the cancel cannot interrupt it, its result lands later
        llm = rng.uniform(2.0, 8.0) if last and outcome == "flip" else rng.uniform(0.06, 0.9)
        tool = rng.uniform(0.005, 0.3) if not last or rng.random() < 0.3 else None
        prompt, completion = rng.randint(1500, 6000) + 400 * i, rng.randint(5, 400)
        cached = rng.randint(0, prompt // 2) if rng.random() < 0.6 else 0
        write = rng.randint(0, 500) if provider == "anthropic" else None  # only Anthropic reports writes
        think = None if provider == "anthropic" else rng.randint(0, completion // 2)
        tokens: Tokens = (prompt, completion, cached, write, think)
        status, stop, err = "success", (reason if last else None), None
        if last and outcome == "failed":
            tool, tokens, status, stop, err = None, (0, 0, None, None, None), "failed", "llm_api_error", error
        step_s = (llm + (tool or 0.0) + rng.uniform(0.003, 0.03)) * s
        if last and outcome in ("cancelled", "flip"):  # cancelled while this step's LLM call is in flight
            t_first = t + rng.uniform(0.1, 0.9) * llm * s
        end = INF if last and outcome in ("cancelled", "zombie") else t + step_s
        ns = (round(llm * s * 1e9), None if tool is None else round(tool * s * 1e9), round(step_s * 1e9))
        steps.append(_StepPlan(_uid(rng, "step"), end, *ns, tokens, status, stop, err))
        t = end
    t_done = t + rng.uniform(0.01, 0.08) * s  # INF for cancelled and zombie: the last step never ends
    if outcome == "cancelled":
        t_done = t_first
    elif outcome == "lagging":
        t_first, t_done = t_done, t_done + rng.uniform(2.0, 8.0) * s
    elif outcome != "flip":
        t_first = t_done
    status, stop_reason = {
        "failed": ("failed", "error" if kind == "async" else None),
        "cancelled": ("cancelled", "cancelled"),
        "zombie": ("running" if kind == "stream" else "created", None),
        "lagging": ("completed", "end_turn"),
        "flip": ("completed", "end_turn"),
    }.get(outcome, (STOP_REASON_STATUS[reason], reason))
    trace = f"{rng.getrandbits(128):032x}" if rng.random() < sc.tracing else None
    tool_id = rng.choice(tools) if any(st.tool_ns is not None for st in steps) else None
    run_id = _uid(rng, "run")
    # its own generator, like _ttft: Scenario.empty_stream changes no other part of any plan
    empty = random.Random(f"{sc.seed}:empty:{run_id}").random() < sc.empty_stream
    if empty and outcome == "completed" and kind == "stream" and reason == "end_turn" and len(steps) == 1:
        steps[0] = replace(steps[0], tokens=(0, 0, None, None, None))
    return _RunPlan(
        run_id, agent, 0, kind, outcome, False, trace, tool_id, tuple(steps), status, stop_reason, error,
        t_first, t_done, _ttft(sc, run_id, t_start, steps[0], t_first),
    )  # fmt: skip


def _ttft(sc: Scenario, run_id: str, t_start: float, first: _StepPlan, t_first: float) -> float | None:
    """When the first token arrived, if this run reports it: part way into the first LLM call, and only
    when that call produced tokens before the run first looked terminal (a failed first call, or a
    cancel before the first token, has none). Its own generator, so ``Scenario.ttft`` changes no
    other part of any plan."""
    if sc.ttft <= 0:
        return None
    rng = random.Random(f"{sc.seed}:ttft:{run_id}")
    at = t_start + rng.uniform(0.05, 0.5) * first.llm_ns / 1e9
    return at if rng.random() < sc.ttft and first.status == "success" and at < t_first else None


def _ns_after(at: float | None, age: float) -> int | None:
    """``at`` (seconds after creation) in ns once the run is ``age`` seconds old, else None."""
    return None if at is None or age < at else round(at * 1e9)


def _invalid(name: str, kind: str, msg: str, raw: str, **ctx: Any) -> _Reply:
    detail = {"type": kind, "loc": ["query", name], "msg": msg, "input": raw} | ({"ctx": ctx} if ctx else {})
    return _Reply(422, {"detail": [detail]})


def _int(q: httpx.QueryParams, name: str, default: int, hi: int | None = None) -> int:
    """``Query(default, ge=1, le=hi)`` as FastAPI validates it."""
    raw = q.get(name)
    if raw is None:
        return default
    if not re.fullmatch(r"[+-]?\d+", raw.strip()):
        msg = "Input should be a valid integer, unable to parse string as an integer"
        raise _invalid(name, "int_parsing", msg, raw)
    value = int(raw)
    if value < 1:
        raise _invalid(name, "greater_than_equal", "Input should be greater than or equal to 1", raw, ge=1)
    if hi is not None and value > hi:
        raise _invalid(name, "less_than_equal", f"Input should be less than or equal to {hi}", raw, le=hi)
    return value


def _bool(q: httpx.QueryParams, name: str) -> bool | None:
    raw = q.get(name)
    if raw is None:
        return None
    if raw.lower() in ("1", "true", "t", "yes", "y", "on"):
        return True
    if raw.lower() in ("0", "false", "f", "no", "n", "off"):
        return False
    raise _invalid(name, "bool_parsing", "Input should be a valid boolean, unable to interpret input", raw)


def _page(
    n: int, find: Callable[[str], int | None], q: httpx.QueryParams, inverted: bool, unknown: str | None
) -> range:
    """Indexes into a list of ``n`` rows sorted oldest first, in the requested order, after the cursors.

    Normal lists: ``after=X`` keeps the rows following X in that order (the next page), ``before=X``
    the preceding ones. ``inverted`` swaps them (runs on 0.14+, §0.2). The limit is applied by the
    caller to the front of this list, as SQL does. An unknown cursor is ignored, or 404s if ``unknown``.
    """
    order = q.get("order", "desc")
    if order not in ("asc", "desc"):
        choices = "'asc' or 'desc'"
        raise _invalid("order", "literal_error", f"Input should be {choices}", order, expected=choices)
    desc = order == "desc" and q.get("ascending", "").lower() != "true"  # deprecated flag overrides order
    lo, hi = 0, n
    for name in ("after", "before"):
        cursor = q.get(name)
        at = None if cursor is None else find(cursor)
        if at is None:
            if cursor is not None and unknown is not None:
                raise _Reply(404, {"detail": f"NOT_FOUND: {unknown} with id {cursor} not found"})
        elif ((name == "after") != inverted) == desc:  # rows following X in a desc list: the older ones
            hi = min(hi, at)
        else:
            lo = max(lo, at + 1)
    return range(hi - 1, lo - 1, -1) if desc else range(lo, hi)


class SimulatedLetta:
    """The simulated server: ``handle`` is an httpx handler, safe to call from many threads."""

    def __init__(self, scenario: Scenario = Scenario(), clock: Callable[[], float] = time.time) -> None:
        self.scenario, self.clock = scenario, clock
        self.requests: collections.Counter[str] = collections.Counter()
        self._lock = threading.RLock()
        self.start = clock()
        rng = random.Random(f"{scenario.seed}:agents")
        self.agents = [_uid(rng, "agent") for _ in range(max(1, scenario.agents))]
        self._tools = [_uid(rng, "tool") for _ in range(3)]
        self._agents_us = round((self.start - scenario.history_span_s - 3600) * 1e6)
        self._plans: list[_RunPlan] = []  # sorted by (created_at, id), as Letta sorts runs
        self._by_id: dict[str, int] = {}
        self._step_run: dict[str, int] = {}
        history, hist_rng = [], random.Random(f"{scenario.seed}:history")
        ordinary = {k: getattr(scenario, k) for k in ("completed", "failed", "cancelled")}
        for i in range(scenario.history):
            rng = random.Random(f"{scenario.seed}:history:{i}")
            plan = _plan(rng, scenario, len(self.agents), self._tools, _pick(hist_rng, ordinary))
            created = self.start - scenario.history_span_s * hist_rng.random()
            created = min(created, self.start - plan.t_done - 0.001)  # terminal before start
            history.append(replace(plan, created_us=round(created * 1e6), historical=True))
        for plan in sorted(history, key=lambda p: (p.created_us, p.id)):
            self._add(plan)
        self._arrivals = random.Random(f"{scenario.seed}:arrivals")
        rate = scenario.runs_per_second
        self._next = self.start + self._arrivals.expovariate(rate) if rate > 0 else INF
        self._live = 0

    def _add(self, plan: _RunPlan) -> None:
        self._by_id[plan.id] = len(self._plans)
        self._step_run.update((step.id, len(self._plans)) for step in plan.steps)
        self._plans.append(plan)

    def _runs(self, now: float) -> list[_RunPlan]:
        """Runs created by ``now``, planning new arrivals first (in order, so the seed decides all)."""
        sc = self.scenario
        while self._next <= now and (sc.max_runs is None or self._live < sc.max_runs):
            rng = random.Random(f"{sc.seed}:live:{self._live}")
            plan = _plan(rng, sc, len(self.agents), self._tools, _pick(rng, {k: getattr(sc, k) for k in OUTCOMES}))
            last = self._plans[-1].created_us if self._plans else 0
            self._add(replace(plan, created_us=max(round(self._next * 1e6), last + 1)))
            self._live += 1
            self._next += self._arrivals.expovariate(sc.runs_per_second)
        return self._plans[: bisect.bisect_right(self._plans, now * 1e6, key=lambda p: p.created_us)]

    # ----------------------------------------------------------------- JSON as 0.16.8 returns it

    def _run_json(self, p: _RunPlan, now: float, listed: bool) -> dict[str, Any]:
        status, stop, done, run_s = p.state(now - p.created_us / 1e6)
        meta: dict[str, Any] = {"run_type": RUN_TYPES[p.kind]} | ({"lettuce": None} if p.kind == "async" else {})
        if p.error is not None and status == "failed":
            meta["error"] = p.error
        return {
            "id": p.id, "status": status, "created_at": _iso(p.created_us),
            "completed_at": None if done is None else _iso(p.created_us + round(done * 1e6), z=False),
            "agent_id": self.agents[p.agent], "conversation_id": None, "base_template_id": None,
            "background": p.kind == "async", "metadata": meta,
            "request_config": {
                "use_assistant_message": True, "assistant_message_tool_name": "send_message",
                "assistant_message_tool_kwarg": "message", "include_return_message_types": None,
            },
            "stop_reason": stop, "callback_url": None, "callback_sent_at": None, "callback_status_code": None,
            "callback_error": None, "ttft_ns": _ns_after(p.ttft, now - p.created_us / 1e6),
            # §0.3, §0.4: only lists carry the duration
            "total_duration_ns": round(run_s * 1e9) if listed and run_s is not None else None,
        }  # fmt: skip

    def _step_json(self, p: _RunPlan, s: _StepPlan, finished: bool) -> dict[str, Any]:
        model, provider, handle, endpoint, window = _model(p.agent, self.scenario.models)
        prompt, completion, cached, write, think = s.tokens if finished else (0, 0, None, None, None)
        failed = finished and s.error is not None
        trace = f"Traceback (most recent call last):\nletta.errors.LLMServerError: {s.error}\n"
        return {
            "id": s.id, "origin": None, "organization_id": ORG, "provider_id": None, "run_id": p.id,
            "agent_id": self.agents[p.agent], "provider_name": provider, "provider_category": "base",
            "model": model, "model_handle": handle, "model_endpoint": endpoint,
            "context_window_limit": window, "completion_tokens": completion, "prompt_tokens": prompt,
            "total_tokens": prompt + completion, "cached_input_tokens": cached, "cache_write_tokens": write,
            "reasoning_tokens": think,
            "completion_tokens_details": None if think is None else {"reasoning_tokens": think},
            "prompt_tokens_details": None if cached is None else {
                "cached_tokens": cached, "cache_read_tokens": cached, "cache_creation_tokens": write or 0,
            },
            "stop_reason": s.stop_reason if finished else None, "tags": [], "tid": None,
            "trace_id": p.trace_id, "request_id": None, "messages": [], "feedback": None, "project_id": None,
            "error_type": "LLMServerError" if failed else None,
            "error_data": {"message": s.error, "traceback": trace, "details": None} if failed else None,
            "status": s.status if finished else "pending",
        }  # fmt: skip

    # ----------------------------------------------------------------- routes

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Serve one request; usable as ``httpx.MockTransport(sim.handle)``."""
        with self._lock:
            response = self._answer(request)
        response.headers["Date"] = email.utils.formatdate(self.clock(), usegmt=True)  # as uvicorn sends it
        return response

    def _answer(self, request: httpx.Request) -> httpx.Response:
        path, method = request.url.path, request.method
        route = next(((t, m.groupdict()) for p, t in _PATTERNS if (m := p.match(path))), None)
        try:
            if route is None:
                alt = path[:-1] if path.endswith("/") else path + "/"
                if any(p.match(alt) for p, _ in _PATTERNS):  # FastAPI's redirect_slashes
                    self.requests[f"{method} (redirect)"] += 1
                    raise _Reply(307, headers={"location": str(request.url.copy_with(path=alt))})
                self.requests[f"{method} (unmatched)"] += 1
                raise _Reply(404, {"detail": "Not Found"})
            self.requests[f"{method} {route[0]}"] += 1
            if method != "GET":
                raise _Reply(405, {"detail": "Method Not Allowed"})
            return httpx.Response(200, json=self._route(route[0], route[1], request.url.params))
        except _Reply as reply:
            body = {} if reply.body is None else {"json": reply.body}
            return httpx.Response(reply.status, headers=reply.headers, **body)

    def _route(self, template: str, args: dict[str, str], q: httpx.QueryParams) -> Any:
        now = self.clock()
        runs = self._runs(now)
        if template == "/v1/health/":
            return {"version": VERSION, "status": "ok"}
        if template == "/v1/steps/":  # §0.1: 400 on 0.12-0.16.8, whatever the parameters
            raise _Reply(400, {"detail": STEPS_LIST_400})
        if template == "/_sim/truth":
            return self._truth(now, runs)
        if template == "/v1/runs/":
            return self._list_runs(runs, q, now)
        if template == "/v1/runs/active":  # deprecated: agent_id + background only, newest 100
            kept = [(k, v) for k, v in q.multi_items() if k in ("agent_id", "background")]
            return self._list_runs(runs, httpx.QueryParams([*kept, ("active", "true")]), now)
        if template == "/v1/agents/":
            return self._list_agents(runs, q, now)
        if "step_id" in args:
            p, step, finished = self._step(args["step_id"], now)
            if template == "/v1/steps/{step_id}":
                return self._step_json(p, step, finished)
            if not finished:  # the metrics row is written when the step ends
                raise _Reply(404, {"detail": f"NOT_FOUND: StepMetrics with id {step.id} not found"})
            return {
                "id": step.id, "organization_id": ORG, "provider_id": None, "run_id": p.id,
                "agent_id": self.agents[p.agent], "step_start_ns": None, "llm_request_start_ns": None,
                "llm_request_ns": step.llm_ns, "tool_execution_ns": step.tool_ns, "step_ns": step.step_ns,
                "base_template_id": None, "template_id": None, "project_id": None,
            }  # fmt: skip
        p = self._run(args["run_id"], now)
        age = now - p.created_us / 1e6
        if template == "/v1/runs/{run_id}":
            return self._run_json(p, now, listed=False)
        if template == "/v1/runs/{run_id}/steps":
            steps = list(p.visible(age))
            limit = _int(q, "limit", 100)
            ids = {s.id: i for i, (s, _) in enumerate(steps)}
            return [self._step_json(p, *steps[i]) for i in _page(len(steps), ids.get, q, False, "Step")[:limit]]
        _, _, done, run_s = p.state(age)  # /metrics: num_steps and run_ns are written at the terminal update
        return {
            "id": p.id, "organization_id": ORG, "agent_id": self.agents[p.agent], "project_id": None,
            "run_start_ns": p.created_us * 1000, "run_ns": None if run_s is None else round(run_s * 1e9),
            "num_steps": 0 if done is None else len(list(p.visible(age))),
            "tools_used": None if p.tool_id is None or done is None else [p.tool_id],
            "template_id": None, "base_template_id": None,
        }  # fmt: skip

    def _run(self, run_id: str, now: float) -> _RunPlan:
        if not re.fullmatch(f"run-{_UUID}", run_id):
            raise _Reply(400, {"detail": "INVALID_ARGUMENT: Invalid run ID format"})
        i = self._by_id.get(run_id)
        if i is None or self._plans[i].created_us > now * 1e6:
            raise _Reply(404, {"detail": f"NOT_FOUND: Run with id {run_id} not found"})
        return self._plans[i]

    def _step(self, step_id: str, now: float) -> tuple[_RunPlan, _StepPlan, bool]:
        if not re.fullmatch(f"step-{_UUID}", step_id):
            raise _Reply(400, {"detail": "INVALID_ARGUMENT: Invalid step ID format"})
        if step_id in self._step_run:
            p = self._plans[self._step_run[step_id]]
            if p.created_us <= now * 1e6:
                for step, finished in p.visible(now - p.created_us / 1e6):
                    if step.id == step_id:
                        return p, step, finished
        raise _Reply(404, {"detail": f"NOT_FOUND: Step with id {step_id} not found"})

    def _list_runs(self, runs: list[_RunPlan], q: httpx.QueryParams, now: float) -> list[dict[str, Any]]:
        limit = _int(q, "limit", 100, hi=1000)
        statuses = q.get_list("statuses")
        for value in statuses:
            if value not in RUN_STATUSES:
                raise _Reply(400, {"detail": f"'{value}' is not a valid RunStatus"})
        statuses = statuses or (["created", "running"] if _bool(q, "active") else [])
        stop = q.get("stop_reason")
        if stop is not None and stop not in STOP_REASONS:
            raise _invalid("stop_reason", "enum", "Input should be a valid StopReasonType", stop)
        agents = [q["agent_id"]] if q.get("agent_id") else q.get_list("agent_ids")
        background = _bool(q, "background")
        out = []

        def find(run_id: str) -> int | None:
            at = self._by_id.get(run_id)
            return at if at is not None and at < len(runs) else None

        for i in _page(len(runs), find, q, True, None):
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

    def _list_agents(self, runs: list[_RunPlan], q: httpx.QueryParams, now: float) -> list[dict[str, Any]]:
        last: dict[int, str | None] = {}  # last_stop_reason: set at every terminal run update
        for p in runs:
            _, stop, done, _ = p.state(now - p.created_us / 1e6)
            if done is not None:
                last[p.agent] = stop
        out = []
        ids = {a: i for i, a in enumerate(self.agents)}  # agent i was created i µs after agent 0
        for i in _page(len(ids), ids.get, q, False, None)[: _int(q, "limit", 50)]:
            model, provider, handle, endpoint, window = _model(i, self.scenario.models)
            created = _iso(self._agents_us + i)
            out.append({
                "id": self.agents[i], "name": f"sim-agent-{i}", "agent_type": "letta_v1_agent",
                "model": handle, "llm_config": {
                    "model": model, "handle": handle, "model_endpoint_type": provider,
                    "model_endpoint": endpoint, "provider_name": provider, "provider_category": "base",
                    "context_window": window,
                },
                "tags": ["simulated"], "created_at": created, "updated_at": created, "description": None,
                "metadata": None, "project_id": None, "last_stop_reason": last.get(i),
            })  # fmt: skip
        return out

    # ----------------------------------------------------------------- ground truth

    def truth(self) -> dict[str, Any]:
        """Ground truth at ``clock()`` (also ``GET /_sim/truth``), for checking what an exporter counted.

        ``{"now", "start" (epoch s), "runs": {"total", "historical", "by_status": {API status: n}},
        "agents": [{"id", "name", "model", "provider"}],
        "terminal": [{"id", "agent_id", "kind" (sync|stream|async), "outcome" (Scenario weight name),
            "historical", "status", "stop_reason" (what the API shows now), "first_terminal_status",
            "first_stop_reason", "first_terminal_at" (epoch s), "created_at", "completed_at" (epoch s,
            as the API shows it, or null), "run_ns" (null while the API status is active), "ttft_ns"
            (null unless ``Scenario.ttft`` picked the run and its first token came), "model",
            "provider", "steps" (number listed now), "steps_by": [{"status", "stop_reason", "model",
            "provider", "count"}], "tokens": {"input", "output", "cached_input", "cache_write",
            "reasoning"}}], "active": [{"id", "agent_id", "status", "created_at", "zombie"}]}``

        A run is in ``terminal`` once it looks terminal to ``exporter.model.Run``: a terminal status,
        or a terminal stop_reason under a lagging "running" (then ``first_terminal_status`` is
        "completed" while ``status`` is still "running"). ``first_*`` describe that first moment: a
        flip run's are cancelled/cancelled at the cancel, its current ones completed/end_turn later.
        Steps and tokens follow ``exporter.model.Step`` over the steps listed now (a pending step
        counts with 0 tokens; a flip run lists one while cancelled, then its finished step).
        """
        with self._lock:
            now = self.clock()
            return self._truth(now, self._runs(now))

    def _truth(self, now: float, runs: list[_RunPlan]) -> dict[str, Any]:
        by_status: collections.Counter[str] = collections.Counter()
        terminal, active = [], []
        for p in runs:
            created, age = p.created_us / 1e6, now - p.created_us / 1e6
            status, stop, done, run_s = p.state(age)
            by_status[status] += 1
            if age < p.t_first:
                active.append({"id": p.id, "agent_id": self.agents[p.agent], "status": status,
                               "created_at": created, "zombie": p.outcome == "zombie"})  # fmt: skip
                continue
            model, provider = _model(p.agent, self.scenario.models)[:2]
            steps = list(p.visible(age))
            groups = collections.Counter((s.status, s.stop_reason) if f else ("pending", None) for s, f in steps)
            tokens = dict.fromkeys(("input", "output", "cached_input", "cache_write", "reasoning"), 0)
            for step, finished in steps:
                for key, value in zip(tokens, step.tokens if finished else (), strict=False):
                    tokens[key] += value or 0
            first = ("cancelled", "cancelled") if p.outcome == "flip" else (p.status, p.stop_reason)
            terminal.append({
                "id": p.id, "agent_id": self.agents[p.agent], "kind": p.kind, "outcome": p.outcome,
                "historical": p.historical, "status": status, "stop_reason": stop,
                "first_terminal_status": first[0], "first_stop_reason": first[1],
                "first_terminal_at": created + p.t_first, "created_at": created,
                "completed_at": None if done is None else created + done,
                "run_ns": None if run_s is None else round(run_s * 1e9), "model": model, "provider": provider,
                "ttft_ns": _ns_after(p.ttft, age),
                "steps": len(steps), "tokens": tokens, "steps_by": [
                    {"status": st, "stop_reason": sr, "model": model, "provider": provider, "count": n}
                    for (st, sr), n in sorted(groups.items(), key=str)
                ],
            })  # fmt: skip
        models = [_model(i, self.scenario.models) for i in range(len(self.agents))]
        agents = [{"id": a, "name": f"sim-agent-{i}", "model": models[i][0], "provider": models[i][1]}
                  for i, a in enumerate(self.agents)]  # fmt: skip
        totals = {
            "total": len(runs),
            "historical": sum(p.historical for p in runs),
            "by_status": dict(by_status),
        }
        return {"now": now, "start": self.start, "runs": totals, "agents": agents, "terminal": terminal,
                "active": active}  # fmt: skip


class SimulatorServer:
    """``sim`` over real HTTP/1.1 on a daemon thread; ``url`` is ``http://host:port``. ``handle``
    replaces ``sim.handle``, e.g. with ``exporter.faults.inject(sim.handle, ...)``."""

    def __init__(
        self,
        sim: SimulatedLetta,
        host: str = "127.0.0.1",
        port: int = 0,
        handle: Callable[[httpx.Request], httpx.Response] | None = None,
    ) -> None:
        answer = handle or sim.handle

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                url = f"http://{self.headers.get('host') or host}{self.path}"
                response = answer(httpx.Request(self.command, url, headers=self.headers.items(), content=body))
                self.send_response_only(response.status_code)  # the Date header is the simulator's clock
                for key, value in response.headers.items():
                    if key not in ("content-length", "connection"):
                        self.send_header(key, value)
                self.send_header("content-length", str(len(response.content)))
                self.end_headers()
                self.wfile.write(response.content)

            do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

            def log_message(self, format: str, *args: Any) -> None:  # stdout belongs to the caller
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.url = f"http://{host}:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="letta-sim", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> SimulatorServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve(
    sim: SimulatedLetta,
    host: str = "127.0.0.1",
    port: int = 0,
    handle: Callable[[httpx.Request], httpx.Response] | None = None,
) -> SimulatorServer:
    """Start serving ``sim`` on ``host:port`` (0: a free port) in the background; returns at once."""
    return SimulatorServer(sim, host, port, handle)


def main(argv: list[str] | None = None) -> None:
    """``python -m exporter.simulator``: serve a simulated Letta until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m exporter.simulator", description="Simulated Letta 0.16.8")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8283)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--agents", type=int, default=3)
    parser.add_argument("--models", type=int, default=4, help="distinct model names (past 4: fine-tunes)")
    parser.add_argument("--runs-per-second", type=float, default=2.0)
    parser.add_argument("--max-runs", type=int, default=None)
    parser.add_argument("--history", type=int, default=0)
    parser.add_argument("--duration-scale", type=float, default=1.0)
    parser.add_argument(
        "--ttft", type=float, default=0.0, help="fraction of runs reporting ttft_ns, as Letta <= 0.11 does (0.16: 0)"
    )
    parser.add_argument(
        "--error-every", type=int, default=0, help="fault injection: answer every Nth request with HTTP 500 (0: never)"
    )
    parser.add_argument("--slow-every", type=int, default=0, help="fault injection: hold back every Nth answer")
    parser.add_argument("--slow-seconds", type=float, default=1.5, help="how long --slow-every holds an answer back")
    a = parser.parse_args(argv)
    scenario = Scenario(
        seed=a.seed, agents=a.agents, runs_per_second=a.runs_per_second, max_runs=a.max_runs,
        history=a.history, duration_scale=a.duration_scale, ttft=a.ttft, models=a.models,
    )  # fmt: skip
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    sim = SimulatedLetta(scenario)
    injected: list[faults.Fault] = []
    if a.error_every:
        injected.append(faults.ErrorBursts(every=a.error_every, burst=1))
    if a.slow_every:
        injected.append(faults.Slow(every=a.slow_every, seconds=a.slow_seconds))
    handle = faults.inject(sim.handle, *injected) if injected else None
    with serve(sim, a.host, a.port, handle) as server:
        print(f"simulator listening on {server.url}", flush=True)
        while not stop.wait(0.2):
            pass


if __name__ == "__main__":
    main()
