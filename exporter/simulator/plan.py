"""The simulator's plans: every run planned whole from the seed — arrival, outcome, steps,
durations, tokens — so that what the API shows is a pure function of the plan and the clock."""

from __future__ import annotations

import functools
import math
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import NamedTuple

from exporter.types import STOP_REASON_STATUS

OUTCOMES = ("completed", "failed", "cancelled", "flip", "zombie", "lagging")
INF = float("inf")
# model, provider_name, handle, endpoint, context window. Agent i uses MODELS[i % 4] for every step
# (with Scenario.models > 4, fine-tunes of them: see model_of).
MODELS = (
    ("gpt-4o-mini", "openai", "openai/gpt-4o-mini", "https://api.openai.com/v1", 128000),
    ("claude-sonnet-4", "anthropic", "anthropic/claude-sonnet-4", "https://api.anthropic.com/v1", 200000),
    (
        "gemini-2.5-flash",
        "google_ai",
        "google_ai/gemini-2.5-flash",
        "https://generativelanguage.googleapis.com",
        1048576,
    ),
    ("gpt-4.1", "openai", "openai/gpt-4.1", "https://api.openai.com/v1", 1047576),
)
ERRORS = (
    "INTERNAL_SERVER_ERROR: OpenAI API error: Error code: 500 - {'error': {'message': 'upstream failure'}}",
    # as real 0.16.8 stores it for a non-JSON LLM answer (tests/e2e, fake LLM [garbage])
    "INTERNAL_SERVER_ERROR: OpenAI API returned invalid JSON response (likely an HTML error page): "
    "Expecting value: line 1 column 1 (char 0)",
)
# prompt, completion, cached input, cache write, reasoning tokens
Tokens = tuple[int, int, int | None, int | None, int | None]
# the tools agents call; each agent has a few of them (toolset), each call picks one
TOOL_NAMES = (
    "conversation_search",
    "archival_memory_search",
    "archival_memory_insert",
    "core_memory_append",
    "web_search",
    "run_code",
    "fetch_webpage",
)
# request_config.include_return_message_types of filtered runs: Letta filters a run's messages by it
# after paging (docs/letta-api.md §2.7). The first hides every tool message, the second keeps them
# but drops the user message (pages come back short)
ONLY_ASSISTANT = ("assistant_message",)
KEEP_TOOLS = ("tool_call_message", "tool_return_message", "assistant_message")


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
    # Tool calls (GET /v1/runs/{id}/messages): a step calls tools iff its tool_ns is set. These knobs
    # draw from a generator of their own (seeded by the run id): none changes any other part of a plan.
    parallel_tools: float = 0.15  # fraction of tool steps making 2-3 parallel calls instead of one
    tool_errors: float = 0.08  # fraction of calls whose return has status "error"
    tool_unreturned: float = 0.03  # fraction of calls whose return was never written (status unknown)
    filtered_messages: float = 0.05  # fraction of runs whose request kept only assistant messages
    filtered_keep_tools: float = 0.02  # fraction of runs whose request kept tool messages, dropped others
    # Agent renames (GET /v1/agents/): this fraction of agents is renamed every rename_every_s
    # (each at its own phase; never in the first period after start; 0: never). Ids never change.
    agent_renames: float = 0.5
    rename_every_s: float = 3600.0


class ToolCallPlan(NamedTuple):
    id: str  # tool_call_id: call_<20 hex>
    name: str
    status: str | None  # of its return: success | error; None: the return was never written


@dataclass(frozen=True)
class StepPlan:
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
class RunPlan:
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
    steps: tuple[StepPlan, ...]
    status: str  # final status and stop reason
    stop_reason: str | None
    error: str | None
    t_first: float
    t_done: float
    ttft: float | None = None  # first token, seconds after creation (within the first LLM call); None: unreported
    calls: tuple[tuple[ToolCallPlan, ...], ...] = ()  # per step (empty: no tool), once the step finishes
    message_types: tuple[str, ...] | None = None  # request_config.include_return_message_types
    reply: bool = False  # its last step ends with an assistant_message

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

    def visible(self, age: float) -> Iterator[tuple[StepPlan, bool]]:
        """(step, finished) listed at ``age``: finished steps, plus the in-flight one once cancelled."""
        for step in self.steps:
            if age < step.end:
                if self.outcome in ("cancelled", "flip") and age >= self.t_first:
                    yield step, False
                return
            yield step, True


def uid(rng: random.Random, prefix: str) -> str:
    return f"{prefix}-{uuid.UUID(int=rng.getrandbits(128), version=4)}"


def pick(rng: random.Random, weights: dict[str, float]) -> str:
    names = [k for k, w in weights.items() if w > 0] or ["completed"]
    return rng.choices(names, [weights.get(k, 1.0) for k in names])[0]


def model_of(agent: int, models: int) -> tuple[str, str, str, str, int]:
    index = agent % max(1, models)
    model, provider, handle, endpoint, window = MODELS[index % len(MODELS)]
    if index < len(MODELS):
        return model, provider, handle, endpoint, window
    return f"{model}-ft{index}", provider, f"{handle}-ft{index}", endpoint, window


def plan_run(rng: random.Random, sc: Scenario, agents: int, tools: list[str], outcome: str) -> RunPlan:
    """Plan a run relative to its creation (``created_us`` is set by the caller)."""
    s = sc.duration_scale
    kinds = {"sync": 0.4, "stream": 0.35, "async": 0.25}
    if outcome == "failed":
        kinds = {"sync": 0.6, "async": 0.4}
    kind = {"cancelled": "stream", "lagging": "stream", "flip": "async"}.get(outcome) or pick(rng, kinds)
    agent = rng.randrange(agents)
    provider = model_of(agent, sc.models)[1]
    reason = pick(rng, {"end_turn": 0.9, "max_steps": 0.05, "requires_approval": 0.05})
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
        steps.append(StepPlan(uid(rng, "step"), end, *ns, tokens, status, stop, err))
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
    run_id = uid(rng, "run")
    # its own generator, like _ttft: Scenario.empty_stream changes no other part of any plan
    empty = random.Random(f"{sc.seed}:empty:{run_id}").random() < sc.empty_stream
    if empty and outcome == "completed" and kind == "stream" and reason == "end_turn" and len(steps) == 1:
        steps[0] = replace(steps[0], tokens=(0, 0, None, None, None))
    calls, message_types, reply = _tool_calls(sc, run_id, agent, steps)
    return RunPlan(
        run_id,
        agent,
        0,
        kind,
        outcome,
        False,
        trace,
        tool_id,
        tuple(steps),
        status,
        stop_reason,
        error,
        t_first,
        t_done,
        _ttft(sc, run_id, t_start, steps[0], t_first),
        calls,
        message_types,
        reply,
    )


def _ttft(sc: Scenario, run_id: str, t_start: float, first: StepPlan, t_first: float) -> float | None:
    """When the first token arrived, if this run reports it: part way into the first LLM call, and only
    when that call produced tokens before the run first looked terminal (a failed first call, or a
    cancel before the first token, has none). Its own generator, so ``Scenario.ttft`` changes no
    other part of any plan."""
    if sc.ttft <= 0:
        return None
    rng = random.Random(f"{sc.seed}:ttft:{run_id}")
    at = t_start + rng.uniform(0.05, 0.5) * first.llm_ns / 1e9
    return at if rng.random() < sc.ttft and first.status == "success" and at < t_first else None


@functools.cache
def toolset(seed: int, agent: int) -> tuple[str, ...]:
    """The 3-5 tools agent ``agent`` has."""
    rng = random.Random(f"{seed}:toolset:{agent}")
    return tuple(rng.sample(TOOL_NAMES, rng.randint(3, 5)))


def _tool_calls(
    sc: Scenario, run_id: str, agent: int, steps: list[StepPlan]
) -> tuple[tuple[tuple[ToolCallPlan, ...], ...], tuple[str, ...] | None, bool]:
    """Each step's tool calls, the run's message filter, and whether its last step replies. Its own
    generator, drawing the same numbers whatever the knobs say: no other part of any plan changes."""
    rng = random.Random(f"{sc.seed}:tools:{run_id}")
    u = rng.random()
    types: tuple[str, ...] | None = ONLY_ASSISTANT if u < sc.filtered_messages else None
    if types is None and u < sc.filtered_messages + sc.filtered_keep_tools:
        types = KEEP_TOOLS
    kit, calls = toolset(sc.seed, agent), list[tuple[ToolCallPlan, ...]]()
    unreturned, failed = sc.tool_unreturned, sc.tool_unreturned + sc.tool_errors
    for step in steps:
        if step.tool_ns is None:
            calls.append(())
            continue
        # three calls drawn whatever the knobs say: they decide how many are used and how each ends
        draws = [(rng.random(), rng.choice(kit), rng.getrandbits(80), rng.random()) for _ in range(3)]
        width = 2 + (draws[2][0] < 0.5) if draws[0][0] < sc.parallel_tools else 1  # 1, or 2-3 parallel
        used = []
        for _, name, bits, v in draws[:width]:
            status = None if v < unreturned else "error" if v < failed else "success"
            used.append(ToolCallPlan(f"call_{bits:020x}", name, status))
        calls.append(tuple(used))
    last = steps[-1]
    reply = rng.random() < 0.9 and last.status == "success" and last.stop_reason == "end_turn"
    return tuple(calls), types, reply


@functools.cache
def _rename_draws(seed: int, agent: int) -> tuple[float, float]:
    rng = random.Random(f"{seed}:renames:{agent}")
    return rng.random(), rng.random()


def renames(sc: Scenario, agent: int, since_start: float) -> tuple[int, float | None]:
    """How often agent ``agent`` was renamed ``since_start`` seconds after the simulator started, and
    when it last was (seconds after start): every ``rename_every_s``, at the agent's own phase."""
    period = sc.rename_every_s
    chosen, phase = _rename_draws(sc.seed, agent)
    if chosen >= sc.agent_renames or period <= 0 or since_start < period * (1 + phase):
        return 0, None
    n = math.floor(since_start / period - phase)
    return n, period * (n + phase)


def agent_name(agent: int, renamed: int) -> str:
    return f"sim-agent-{agent}" if renamed == 0 else f"sim-agent-{agent}-v{renamed + 1}"


def ns_after(at: float | None, age: float) -> int | None:
    """``at`` (seconds after creation) in ns once the run is ``age`` seconds old, else None."""
    return None if at is None or age < at else round(at * 1e9)
