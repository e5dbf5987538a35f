"""Memory: the exporter's RSS after a whole history of runs vs after the first 1 000.

Runs in a child process of its own (a clean heap): a simulator streams runs at a fake-clock pace
of 5 a second and an in-process exporter (poll loop, file state, metrics; what `app.run` wires)
polls it every 15 s until every run is counted and the re-check schedule has drained. RSS is read
from /proc after a full garbage collection and a render of /metrics. The simulator shares the
process, so it plans every run before the first reading and its share (RSS after planning minus
RSS before) is subtracted from every reading: the figures are the exporter's.

    python -m bench.memory [--runs 20000]
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import tempfile
from typing import Any

import httpx2
from prometheus_client import generate_latest

from bench.common import LETTA_URL, ROOT, Figure, Target, make_exporter, progress, rss_mb, total
from exporter.letta import LettaSettings
from exporter.simulator import Scenario, SimulatedLetta
from exporter.simulator.clock import START, FakeClock

RATE = 5.0
INTERVAL = 15.0
FIRST = 1000
SETTLE_S = 600.0  # after the last run is created: every run finishes and its re-checks end


def child(runs: int) -> dict[str, Any]:
    gc.collect()
    before_sim = rss_mb()[0]
    clock = FakeClock()
    sim = SimulatedLetta(Scenario(seed=31, agents=8, runs_per_second=RATE, max_runs=runs), clock=clock)
    clock.now = START + runs / RATE * 2 + 3600.0
    sim.handle(httpx2.Request("GET", f"{LETTA_URL}/v1/health/"))  # plans every run now (any route does)
    clock.now = START
    gc.collect()
    simulator_mb = rss_mb()[0] - before_sim
    readings: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        exporter = make_exporter(sim.handle, clock, LettaSettings(first_recheck=INTERVAL), f"{tmp}/state.db")
        registry = exporter.metrics.registry

        def read(name: str) -> None:
            gc.collect()
            generate_latest(registry)
            rss, peak = rss_mb()
            counted = total(registry, "letta_runs_finished_total")
            readings[name] = {
                "process_rss_mb": rss,
                "peak_rss_mb": peak,
                "exporter_rss_mb": rss - simulator_mb,
                "runs_counted": counted,
                "tracked_runs": len(exporter.loop.lifecycle.runs),
            }
            progress(f"memory: {counted:,.0f} runs counted, exporter RSS {rss - simulator_mb:.1f} MB")

        settled_at = None
        while settled_at is None or clock.now < settled_at:
            assert exporter.poll(), exporter.loop.last_error
            clock.now += INTERVAL
            if "first" not in readings and total(registry, "letta_runs_finished_total") >= FIRST:
                read("first")
            if settled_at is None and total(registry, "letta_runs_created_total") >= runs:
                settled_at = clock.now + SETTLE_S
        read("all")
        truth = sim.truth()
        expected = len(truth["terminal"])
        assert readings["all"]["runs_counted"] == expected, (readings["all"], expected)
        exporter.close()
    return {"runs": runs, "simulator_mb": simulator_mb, "zombies_tracked": len(truth["active"]), **readings}


def measure(runs: int) -> list[Figure]:
    progress(f"memory: streaming {runs:,} runs through an exporter in a child process")
    out = subprocess.run(
        [sys.executable, "-m", "bench.memory", "--child", "--runs", str(runs)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    ).stdout
    result = json.loads(out)
    first, last = result["first"], result["all"]
    growth = (last["exporter_rss_mb"] / first["exporter_rss_mb"] - 1) * 100
    basis = (
        f"{first['exporter_rss_mb']:.1f} MB after {first['runs_counted']:,.0f} runs → {last['exporter_rss_mb']:.1f} MB "
        f"after {last['runs_counted']:,.0f}"
    )
    return [
        Figure("memory_growth_pct", "memory growth", growth, "%", Target("<=", 10), basis, result),
        Figure(
            "memory_rss_mb",
            "memory total (exporter RSS)",
            last["exporter_rss_mb"],
            "MB",
            Target("<=", 120),
            f"process {last['process_rss_mb']:.1f} MB (peak {last['peak_rss_mb']:.1f}) less the simulator's "
            f"{result['simulator_mb']:.1f} MB",
            result,
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20_000)
    parser.add_argument("--child", action="store_true", help="measure in this process and print JSON")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.runs)))
        return
    for figure in measure(args.runs):
        print(f"{figure.label}: {figure.shown()} (target {figure.target}) — {figure.basis}")


if __name__ == "__main__":
    main()
