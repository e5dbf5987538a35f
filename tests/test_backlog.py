"""A large backlog — a `--backfill` over thousands of finished runs, as after an outage — through the
real exporter process against the simulator over HTTP: memory stays flat (peak RSS read from
/proc), progress is committed as it goes so a `kill -9` in the middle resumes where it was and
counts every run exactly once, and a healthy collector receives every run's spans."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.otlp_receiver import Receiver
from tests.support import (
    memory_mb,
    scrape,
    settled,
    spans_exported_caught_up,
    start_exporter,
    start_simulator,
    total,
    wait_until,
)

pytestmark = pytest.mark.integration

BACKLOG = 8000
PEAK_RSS_MB = 120  # the chart's memory request leaves room above this; its limit is 256 Mi


def created(url: str) -> float:
    return total(scrape(url), "letta_runs_created_total")


@pytest.fixture
def backlog() -> Iterator[str]:
    """A Letta holding BACKLOG finished runs of the last hour and no new ones."""
    sim, url = start_simulator("--seed", "51", "--history", str(BACKLOG), "--runs-per-second", "0")
    yield url
    sim.stop()


def test_a_kill_during_a_large_backfill_resumes_and_counts_every_run_once(backlog: str, tmp_path: Path) -> None:
    state = str(tmp_path / "state.db")
    args = ("--state-path", state, "--backfill", "2h", "--poll-interval", "1s", "--no-step-timings")
    exporter, url = start_exporter(backlog, *args)
    try:
        # /metrics is published at every committed chunk, long before the backfill's poll ends
        wait_until(lambda: created(url) >= BACKLOG / 3, timeout=120, what="a third of the backlog committed")
        first_peak = memory_mb(exporter.proc.pid, "VmHWM")
    finally:
        exporter.stop(signal.SIGKILL)
    exporter, url = start_exporter(backlog, *args)
    try:
        wait_until(lambda: settled(backlog, url, BACKLOG), timeout=240, what="every run counted exactly once")
        second_peak = memory_mb(exporter.proc.pid, "VmHWM")
    finally:
        exporter.stop()
    assert max(first_peak, second_peak) <= PEAK_RSS_MB, (first_peak, second_peak)


def test_a_backfill_burst_to_a_healthy_collector_delivers_every_runs_spans(backlog: str, tmp_path: Path) -> None:
    receiver = Receiver()
    port = receiver.start_grpc()
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
    try:
        exporter, url = start_exporter(
            backlog,
            *("--state-path", str(tmp_path / "state.db"), "--backfill", "2h", "--no-step-timings"),
            *("--poll-interval", "1s", "--otlp-queue-size", "500"),  # a tenth of the burst fits in memory
            env=env,
        )
        try:
            wait_until(lambda: settled(backlog, url, BACKLOG), timeout=240, what="the backlog counted")

            def delivered() -> bool:
                runs = {s.attributes["letta.run.id"] for s in receiver.snapshot() if s.name.startswith("invoke")}
                return len(runs) == BACKLOG

            wait_until(delivered, timeout=240, what="spans for every run of the backlog")
            samples = spans_exported_caught_up(url, len(receiver.snapshot()))
            assert memory_mb(exporter.proc.pid, "VmHWM") <= PEAK_RSS_MB
        finally:
            exporter.stop()
    finally:
        receiver.stop()
    assert samples[("letta_exporter_spans_dropped_total", ())] == 0
