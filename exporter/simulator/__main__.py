"""`python -m exporter.simulator`: serve a simulated Letta until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import signal
import threading

from exporter.simulator import faults
from exporter.simulator.api import SimulatedLetta
from exporter.simulator.plan import Scenario
from exporter.simulator.server import serve


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
    parser.add_argument("--history-span", type=float, default=3600.0, help="seconds the history is spread over")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds every answer is held back (a WAN)")
    parser.add_argument("--duration-scale", type=float, default=1.0)
    parser.add_argument(
        "--ttft", type=float, default=0.0, help="fraction of runs reporting ttft_ns, as Letta <= 0.11 does (0.16: 0)"
    )
    parser.add_argument(
        "--rename-every", type=float, default=3600.0, help="seconds between renames of half the agents (0: never)"
    )
    parser.add_argument(
        "--error-every", type=int, default=0, help="fault injection: answer every Nth request with HTTP 500 (0: never)"
    )
    parser.add_argument("--slow-every", type=int, default=0, help="fault injection: hold back every Nth answer")
    parser.add_argument("--slow-seconds", type=float, default=1.5, help="how long --slow-every holds an answer back")
    a = parser.parse_args(argv)
    scenario = Scenario(
        seed=a.seed,
        agents=a.agents,
        runs_per_second=a.runs_per_second,
        max_runs=a.max_runs,
        history=a.history,
        history_span_s=a.history_span,
        duration_scale=a.duration_scale,
        ttft=a.ttft,
        models=a.models,
        rename_every_s=a.rename_every,
    )
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    sim = SimulatedLetta(scenario)
    injected: list[faults.Fault] = []
    if a.error_every:
        injected.append(faults.ErrorBursts(every=a.error_every, burst=1))
    if a.latency:
        injected.append(faults.Latency(a.latency))
    if a.slow_every:
        injected.append(faults.Slow(every=a.slow_every, seconds=a.slow_seconds))
    handle = faults.inject(sim.handle, *injected) if injected else None
    with serve(sim, a.host, a.port, handle) as server:
        print(f"simulator listening on {server.url}", flush=True)
        while not stop.wait(0.2):
            pass


if __name__ == "__main__":
    main()
