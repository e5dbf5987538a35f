"""Freshness: from a run finishing in Letta to `/metrics` counting it, on a real clock.

A simulator served over real HTTP on 127.0.0.1 and the exporter as a real process (`letta-exporter
run`, 1 s polls). The exporter first starts against an empty server; once it has polled, the
server switches to a busy simulator, every run of which the exporter must therefore count. This
process scrapes `/metrics` every 50 ms and notes when each scrape's answer arrived (an upper bound
on when the count became visible). `letta_runs_finished_total` is a total, so runs are matched to
it in finishing order: the i-th run to finish (simulator truth, `first_terminal_at`) became
visible with the first scrape that counts at least i runs.

    python -m bench.freshness [--seconds 20] [--interval 1]
"""

from __future__ import annotations

import argparse
import time

import httpx2

from bench.common import Figure, Target, progress, quantile
from exporter.simulator import Scenario, SimulatedLetta, serve
from tests.support import scrape, start_exporter, wait_until
from tests.support import total as sample_total

RATE = 4.0  # new runs a second
EVERY = 0.05  # between scrapes


def measure(seconds: float, interval: float) -> list[Figure]:
    current = SimulatedLetta(Scenario(runs_per_second=0.0))

    def handle(request: httpx2.Request) -> httpx2.Response:
        return current.handle(request)

    with serve(current, handle=handle) as server:
        exporter, url = start_exporter(server.url, "--poll-interval", f"{interval}s", "--state-path", ":memory:")
        try:
            wait_until(lambda: sample_total(scrape(url), "letta_up") == 1, timeout=30, what="the exporter's first poll")
            current = SimulatedLetta(Scenario(seed=41, agents=4, runs_per_second=RATE))
            progress(f"freshness: {RATE:g} runs/s for {seconds:g} s, exporter polling every {interval:g} s")
            seen: list[tuple[float, float]] = []  # (when the scrape's answer arrived, runs counted)
            window_end = time.time() + seconds
            while time.time() < window_end + interval + 2.0:  # late runs of the window still show up
                counted = sample_total(scrape(url), "letta_runs_finished_total")
                seen.append((time.time(), counted))
                time.sleep(EVERY)
            truth = current.truth()
        finally:
            exporter.stop()
    finished = sorted(r["first_terminal_at"] for r in truth["terminal"])
    lags = []
    for i, at in enumerate(finished, start=1):
        if at > window_end:
            break
        visible = next((when for when, counted in seen if counted >= i), None)
        assert visible is not None, f"run {i} of {len(finished)} (finished at {at:.2f}) never showed up"
        lags.append(visible - at)
    p50, p95, worst = quantile(lags, 0.5), quantile(lags, 0.95), max(lags)
    detail = {
        "runs": len(lags),
        "poll_interval_s": interval,
        "scrape_every_s": EVERY,
        "p50_s": p50,
        "p95_s": p95,
        "max_s": worst,
        "scrapes": len(seen),
    }
    basis = f"{len(lags)} runs on a real clock, {interval:g} s polls, scraped every {EVERY * 1000:.0f} ms"
    return [
        Figure(
            "freshness_p50_s",
            "freshness p50 (finished → on /metrics)",
            p50,
            "s",
            None,
            f"{basis}; p95 {p95:.2f} s",
            detail,
            "lower",
        ),
        Figure(
            "freshness_max_s",
            "freshness max",
            worst,
            "s",
            Target("<=", interval + 1.0),
            f"target: poll interval {interval:g} s + 1 s",
            detail,
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args()
    for figure in measure(args.seconds, args.interval):
        print(f"{figure.label}: {figure.shown()} (target {figure.target}) — {figure.basis}")


if __name__ == "__main__":
    main()
