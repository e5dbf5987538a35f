"""Bounded resources over a long run: the real exporter process against a busy simulator with a
large history and ~200 model names, scraped by concurrent scrapers all the while.

CI runs the short variant (SOAK_SECONDS=60); `SOAK_SECONDS=1800 make test PYTEST_ARGS="-m soak -s"`
is the long one. It prints what it measured (run with -s to see it): RSS after the first 1 000 runs
and at the end, tracked runs, state rows, series and `/metrics` p50/p99 under load.
"""

from __future__ import annotations

import os
import sqlite3
import statistics
import threading
import time
from pathlib import Path

import httpx2
import pytest

from tests.support import memory_mb, scrape, start_exporter, start_simulator, total, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.soak]

SOAK_SECONDS = float(os.environ.get("SOAK_SECONDS", "60"))
SCRAPERS = 4
RATE = 20  # runs/s, ~1.7 M a day
WARM_RUNS = 1500  # past the tracker's steady state: it holds about the last minute of runs
HISTORY = 20000  # finished runs the simulator starts with
SIMULATOR_ARGS = (
    "--seed",
    "21",
    "--runs-per-second",
    str(RATE),
    "--duration-scale",
    "0.05",
    "--history",
    str(HISTORY),
    "--agents",
    "200",
    "--models",
    "200",
)
EXPORTER_ARGS = ("--poll-interval", "1s", "--stuck-after", "5s", "--expire-after", "10s")


class Scrapers:
    """`count` threads scraping `/metrics` back to back, recording each latency."""

    def __init__(self, url: str, count: int) -> None:
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._scrape, args=(url,), daemon=True) for _ in range(count)]
        for thread in self._threads:
            thread.start()

    def _scrape(self, url: str) -> None:
        with httpx2.Client(timeout=10) as client:
            while not self._stop.is_set():
                started = time.perf_counter()
                response = client.get(f"{url}/metrics")
                self.latencies.append(time.perf_counter() - started)
                if response.status_code != 200:
                    self.failures.append(f"HTTP {response.status_code}")

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=15)


def created(url: str) -> float:
    return total(scrape(url), "letta_runs_created_total")


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def test_memory_and_tracked_runs_stay_flat_and_scrapes_stay_fast_over_a_long_run(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    sim, sim_url = start_simulator(*SIMULATOR_ARGS)
    try:
        exporter, url = start_exporter(sim_url, *EXPORTER_ARGS, "--state-path", str(state))
        scrapers = Scrapers(url, SCRAPERS)
        try:
            wait_until(lambda: created(url) >= WARM_RUNS, timeout=120, what=f"the first {WARM_RUNS} runs")
            warm_rss, warm_latencies = memory_mb(exporter.proc.pid), len(scrapers.latencies)
            deadline = time.monotonic() + SOAK_SECONDS
            peak_rss, peak_tracked = warm_rss, 0.0
            while time.monotonic() < deadline:
                samples = scrape(url)
                peak_tracked = max(peak_tracked, samples[("letta_exporter_tracked_runs", ())])
                peak_rss = max(peak_rss, memory_mb(exporter.proc.pid))
                time.sleep(1.0)  # a sampling period, not a wait for an event
            end_rss = memory_mb(exporter.proc.pid)
            live = httpx2.get(f"{sim_url}/_sim/truth", timeout=30).json()["runs"]["total"] - HISTORY
            lag = live - created(url)
            scrapers.stop()
            # no backlog grew: what existed at the end is counted within a few polls
            wait_until(lambda: created(url) >= live, timeout=30, what=f"all {live} runs counted")
            samples = scrape(url)
        finally:
            scrapers.stop()
            assert exporter.stop() == 0
    finally:
        sim.stop()
    with sqlite3.connect(state) as db:
        rows = db.execute("SELECT count(*) FROM runs").fetchone()[0]
    latencies = scrapers.latencies[warm_latencies:]
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    print(
        f"\nsoak {SOAK_SECONDS:.0f}s: {live} runs, {lag:.0f} behind at the end, series {len(samples)}, "
        f"RSS {warm_rss:.1f} MB after {WARM_RUNS} runs -> {end_rss:.1f} MB at the end (peak {peak_rss:.1f}), "
        f"tracked runs peak {peak_tracked:.0f}, state rows {rows}, "
        f"/metrics under {SCRAPERS} concurrent scrapers: {len(latencies)} scrapes, "
        f"p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms"
    )
    assert not scrapers.failures
    assert peak_tracked <= 90 * RATE  # neither the history nor finished runs are held
    assert end_rss <= warm_rss * 1.10 and peak_rss < 120
    assert p99 < 0.5  # generous for a loaded CI machine; the figures are printed, bench/ has the target
