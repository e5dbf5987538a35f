"""What polling costs Letta: requests per finished run, and per poll against a naive poller's cycle.

Fake clock, so every count is exact and repeatable: a simulator with 20 000 runs of history and
2 new runs a second, the exporter polling it at a fixed interval. After a warm-up long enough for
the re-check schedule and the prune horizon to be in steady state, the requests the exporter
counted itself (`letta_exporter_api_requests_total`) and the response bytes (measured in front of
the simulator) over a window are divided by the runs finished in it (`letta_runs_finished_total`)
and by the number of polls. At the same simulator state, one cycle of `bench.naive` is counted.

    python -m bench.cost [--history 20000]
"""

from __future__ import annotations

import argparse
from collections import Counter
from dataclasses import dataclass

import httpx2

from bench import naive
from bench.common import LETTA_URL, Figure, Meter, Target, by_label, make_exporter, progress, total
from exporter.agents import AgentLabels
from exporter.letta import LettaSettings
from exporter.metrics import ExporterMetrics
from exporter.simulator import Scenario, SimulatedLetta
from exporter.simulator.clock import FakeClock

RATE = 2.0  # new runs a second
WARM_S = 600.0  # re-checks run 15 s → 240 s after a cancel; done runs are pruned after 60 s
WINDOW_S = 900.0
DEFAULT_INTERVAL = 15.0  # --poll-interval's default
TARGET_HISTORY = 20_000  # the naive-ratio target is set for this much history


@dataclass
class Steady:
    interval: float
    step_timings: bool
    breakdowns: bool  # tool metrics and agent labels on
    polls: int
    finished: float
    by_endpoint: Counter[str]  # requests in the window
    bytes: int
    naive_requests: int = 0
    naive_bytes: int = 0

    @property
    def requests(self) -> int:
        return int(sum(self.by_endpoint.values()))

    def per_run(self) -> float:
        return self.requests / self.finished

    def breakdown(self) -> dict[str, float]:
        return {e: round(n / self.finished, 3) for e, n in sorted(self.by_endpoint.items(), key=lambda i: -i[1])}


def steady(
    history: int, interval: float, step_timings: bool, with_naive: bool = False, breakdowns: bool = False
) -> Steady:
    clock = FakeClock()
    sim = SimulatedLetta(
        Scenario(seed=21, agents=8, runs_per_second=RATE, history=history, history_span_s=86400.0), clock=clock
    )
    meter = Meter(sim.handle)
    # as exporter.app.letta_settings: the first re-check one poll interval after a cancel
    settings = LettaSettings(step_timings=step_timings, first_recheck=interval, tool_metrics=breakdowns)
    metrics = ExporterMetrics(agents=AgentLabels(), tools=True) if breakdowns else None
    exporter = make_exporter(meter, clock, settings, metrics=metrics)
    registry = exporter.metrics.registry
    name = f"cost: {interval:g} s polls, step timings {'on' if step_timings else 'off'}"
    name += ", tool metrics and agent labels" if breakdowns else ""
    progress(f"{name}: warming up ({WARM_S:g} s of traffic)")
    end = clock.now + WARM_S
    while clock.now < end:
        assert exporter.poll(), exporter.loop.last_error
        clock.now += interval
    requests, finished, sent = by_label(registry, "letta_exporter_api_requests_total", "endpoint"), 0.0, 0
    finished, sent = total(registry, "letta_runs_finished_total"), meter.totals()[1]
    progress(f"{name}: measuring ({WINDOW_S:g} s of traffic)")
    polls, end = 0, clock.now + WINDOW_S
    while clock.now < end:
        assert exporter.poll(), exporter.loop.last_error
        polls += 1
        clock.now += interval
    window = by_label(registry, "letta_exporter_api_requests_total", "endpoint")
    window.subtract(requests)
    result = Steady(
        interval,
        step_timings,
        breakdowns,
        polls,
        total(registry, "letta_runs_finished_total") - finished,
        +window,
        meter.totals()[1] - sent,
    )
    if with_naive:
        progress(f"cost: one naive cycle over {history:,}+ runs")
        naive_meter = Meter(sim.handle)
        with httpx2.Client(base_url=LETTA_URL, transport=httpx2.MockTransport(naive_meter)) as http:
            naive.cycle(http)
        result.naive_requests, result.naive_bytes = naive_meter.totals()
    exporter.close()
    return result


def measure(history: int) -> list[Figure]:
    default = steady(history, DEFAULT_INTERVAL, step_timings=True, with_naive=True)
    lean = steady(history, DEFAULT_INTERVAL, step_timings=False)
    tools = steady(history, DEFAULT_INTERVAL, step_timings=False, breakdowns=True)
    short = steady(history, 2.0, step_timings=False)
    per_poll = default.requests / default.polls
    bytes_per_poll = default.bytes / default.polls
    where = f"{history:,} runs of history, {RATE:g} new runs/s, {DEFAULT_INTERVAL:g} s polls"
    naive_target = Target(">=", 100) if history >= TARGET_HISTORY else None  # the naive cost grows with history

    def detail(s: Steady) -> dict[str, object]:
        return {
            "interval_s": s.interval,
            "step_timings": s.step_timings,
            "tool_metrics_and_agent_labels": s.breakdowns,
            "polls": s.polls,
            "finished": s.finished,
            "requests": s.requests,
            "response_bytes": s.bytes,
            "per_finished_run_by_endpoint": s.breakdown(),
        }

    return [
        Figure(
            "naive_request_ratio",
            "naive ratio: requests",
            default.naive_requests / per_poll,
            "x",
            naive_target,
            f"naive {default.naive_requests:,} requests/cycle ÷ ours {per_poll:.1f}/poll; {where}, step timings on",
            {**detail(default), "naive_requests_per_cycle": default.naive_requests, "ours_per_poll": per_poll},
            "higher",
        ),
        Figure(
            "naive_byte_ratio",
            "naive ratio: response bytes",
            default.naive_bytes / bytes_per_poll,
            "x",
            None,
            f"naive {default.naive_bytes / 1e6:,.1f} MB/cycle ÷ ours {bytes_per_poll / 1e3:,.1f} kB/poll",
            {"naive_bytes_per_cycle": default.naive_bytes, "ours_bytes_per_poll": bytes_per_poll},
            "higher",
        ),
        Figure(
            "requests_per_finished_run",
            "requests per finished run, no step timings",
            lean.per_run(),
            "",
            Target("<=", 2),
            f"{lean.requests:,} requests ÷ {lean.finished:,.0f} runs over {lean.polls} polls of {lean.interval:g} s",
            detail(lean),
        ),
        Figure(
            "extra_requests_per_finished_run_tool_metrics",
            "extra requests per finished run, --tool-metrics and --agent-labels",
            tools.per_run() - lean.per_run(),
            "",
            None,
            f"{tools.per_run():.3f} - {lean.per_run():.3f} requests per finished run (no step timings); "
            f"messages {tools.breakdown().get('/v1/runs/{run_id}/messages', 0):.3f}, "
            f"agents {tools.breakdown().get('/v1/agents/', 0):.3f} per run",
            detail(tools),
            "lower",
        ),
        Figure(
            "requests_per_finished_run_step_timings",
            "requests per finished run, step timings on",
            default.per_run(),
            "",
            None,
            f"{default.requests:,} requests ÷ {default.finished:,.0f} runs over {default.polls} polls of "
            f"{default.interval:g} s",
            detail(default),
            "lower",
        ),
        Figure(
            "requests_per_finished_run_2s",
            "requests per finished run, no step timings, 2 s polls",
            short.per_run(),
            "",
            None,
            f"{short.requests:,} requests ÷ {short.finished:,.0f} runs over {short.polls} polls of "
            f"{short.interval:g} s",
            detail(short),
            "lower",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--history", type=int, default=20_000)
    args = parser.parse_args()
    for figure in measure(args.history):
        print(f"{figure.label}: {figure.shown()} (target {figure.target}) — {figure.basis}")
        print(f"    {figure.detail.get('per_finished_run_by_endpoint', '')}")


if __name__ == "__main__":
    main()
