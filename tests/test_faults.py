"""Fault injection: for each way a Letta server misbehaves, the exporter stays up, `/metrics` keeps
answering, the problem shows in a metric, and the well-formed runs are still counted exactly once.

The simulator and the exporter share a fake clock (no sockets to Letta, no sleeps); the exporter's
real HTTP server is scraped on 127.0.0.1 throughout.
"""

from __future__ import annotations

import time
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

import httpx2
import pytest

from exporter.letta.records import RUN, parse_timestamp
from exporter.server import MetricsServer, PollStatus
from exporter.simulator import Scenario
from exporter.simulator.faults import (
    DeletedRuns,
    ErrorBursts,
    Fault,
    IgnoredCursor,
    RepeatedItems,
    RewriteRuns,
    TruncatedJson,
    Unreachable,
    inject,
)
from exporter.types import ACTIVE_STATUSES
from tests.harness import BUSY, SETTINGS, STUCK_AFTER, Harness, assert_counts_match_truth, counted_truth
from tests.support import FAST, scrape, settled, start_exporter, start_simulator, total, wait_until

SCENARIO = replace(BUSY, max_runs=150)
NO_HISTORY = replace(SCENARIO, history=0)  # every run is read when new, so problems are countable per run
DURATION = 70 + SETTINGS.expire_after
SCRAPE_EVERY = 10  # polls between scrapes of the real /metrics endpoint


def some(percent: int) -> Callable[[str], bool]:
    """A fixed pseudo-random subset of run ids."""
    return lambda run_id: zlib.crc32(run_id.encode()) % 100 < percent


class Scraped(Harness):
    """A harness whose registry is also served over real HTTP, scraped after every poll."""

    def __init__(self, *faults: Fault, scenario: Scenario = SCENARIO, **kwargs: Any) -> None:
        self.server: MetricsServer | None = None
        self.polls = 0
        self.scrapes = 0
        super().__init__(scenario, wrap=lambda handle: inject(handle, *faults), **kwargs)

    def restart(self) -> None:
        super().restart()
        if self.server is not None:
            self.server.close()
        self.server = MetricsServer(self.metrics.registry, PollStatus(1.0), "http://letta.test", "127.0.0.1", 0)
        self.server.start()

    def poll(self) -> bool:
        ok = super().poll()
        self.polls += 1
        if self.polls % SCRAPE_EVERY == 1:
            self.scrape()
        return ok

    def scrape(self) -> str:
        assert self.server is not None
        response = httpx2.get(f"http://127.0.0.1:{self.server.port}/metrics", timeout=5)
        assert response.status_code == 200 and "letta_up" in response.text
        self.scrapes += 1
        return response.text

    def close(self) -> None:
        if self.server is not None:
            self.server.close()

    def problems(self, kind: str) -> float:
        return self.value("letta_exporter_parse_errors_total", {"kind": kind})

    def requests(self, code: str) -> float:
        return sum(
            s.value
            for m in self.metrics.registry.collect()
            for s in m.samples
            if s.name == "letta_exporter_api_requests_total" and s.labels["code"] == code
        )


def test_http_500_bursts() -> None:
    h = Scraped(ErrorBursts(status=500, every=9, burst=3), retries=1)
    h.run_for(DURATION)
    assert_counts_match_truth(h)
    assert h.requests("500") > 0 and h.scrapes > 0


def test_429_with_retry_after() -> None:
    h = Scraped(ErrorBursts(status=429, every=6, burst=2, retry_after="1"), retries=2)
    h.run_for(DURATION)
    assert_counts_match_truth(h)
    assert h.requests("429") > 0


def test_letta_restarting_connection_refused_for_a_while() -> None:
    h = Scraped()
    outage = (h.clock.now + 20, h.clock.now + 45)
    h.handler = inject(h.sim.handle, Unreachable(lambda: outage[0] <= h.clock.now < outage[1]))
    h.restart()
    h.run_for(30)
    assert h.value("letta_up") == 0 and h.requests("error") > 0
    h.run_for(DURATION)
    assert h.value("letta_up") == 1
    assert_counts_match_truth(h)


def test_hanging_server_times_out_and_recovers() -> None:
    h = Scraped()
    hang = (h.clock.now + 10, h.clock.now + 25)
    h.handler = inject(h.sim.handle, Unreachable(lambda: hang[0] <= h.clock.now < hang[1], hang=True))
    h.restart()
    h.run_for(DURATION)
    assert_counts_match_truth(h)
    assert h.requests("timeout") > 0


def test_truncated_and_malformed_json() -> None:
    h = Scraped(TruncatedJson(every=5))
    h.run_for(DURATION)
    assert_counts_match_truth(h)
    assert h.problems("malformed_json") > 0


def test_unknown_stop_reasons_count_as_other_and_each_run_is_reported_once() -> None:
    def rename(run: dict[str, Any]) -> dict[str, Any]:
        return {**run, "stop_reason": "quota_exceeded"} if run.get("stop_reason") else run

    rewrite = RewriteRuns(some(20), rename)
    h = Scraped(rewrite, scenario=NO_HISTORY)
    h.run_for(DURATION)
    assert_counts_match_truth(h)  # the status still counts; only the reason is unknown
    other = sum(
        h.value("letta_runs_finished_total", {"status": s, "stop_reason": "other"})
        for s in ("completed", "failed", "cancelled")
    )
    renamed = [r for r in counted_truth(h.sim.truth(), h.boot) if r["id"] in rewrite.rewritten and r["stop_reason"]]
    assert other == len(renamed) > 0
    assert h.problems("unknown_stop_reason") == len(renamed)  # once per run, not per poll


def test_missing_and_extra_fields() -> None:
    broken = RewriteRuns(some(10), lambda run: {k: v for k, v in run.items() if k != "created_at"})
    extra = RewriteRuns(lambda _: True, lambda run: {**run, "new_field": {"nested": [1, 2]}, "priority": "high"})
    h = Scraped(broken, extra, scenario=NO_HISTORY)
    h.run_for(DURATION)
    assert_counts_match_truth(h, exclude=frozenset(broken.rewritten))
    assert h.problems("invalid_run") == len(broken.rewritten) > 0


def test_list_pages_that_repeat_items() -> None:
    h = Scraped(RepeatedItems())
    h.run_for(DURATION)
    assert_counts_match_truth(h)


def test_a_cursor_the_server_ignores() -> None:
    h = Scraped(IgnoredCursor(), settings=replace(SETTINGS, page_size=10))
    h.run_for(DURATION)
    assert_counts_match_truth(h)
    assert h.problems("cursor_not_advancing") > 0


def test_runs_deleted_between_list_and_get() -> None:
    deleted = DeletedRuns(some(15))
    h = Scraped(deleted)
    h.run_for(DURATION)
    truth = h.sim.truth()
    # a run deleted while active was never seen finishing: it cannot be counted; one listed as
    # finished was, and is counted (without steps)
    first_seen = {i: RUN(run, []) for i, run in deleted.first_seen.items()}
    vanished_active = {i for i, run in first_seen.items() if not run.terminal}
    keep = [r for r in counted_truth(truth, h.boot) if r["id"] not in vanished_active]
    expected = Counter(
        first_seen[r["id"]].status
        if r["id"] in first_seen
        else (r["status"] if r["status"] != "running" else r["first_terminal_status"])
        for r in keep
    )
    expected["expired"] += sum(1 for r in truth["active"] if r["zombie"] and r["id"] not in vanished_active)
    assert h.settled_by_status() == +expected
    assert h.problems("run_not_found") == len(vanished_active) > 0


def test_very_large_pages() -> None:
    h = Scraped(
        scenario=replace(SCENARIO, runs_per_second=40.0, max_runs=2000), settings=replace(SETTINGS, page_size=1000)
    )
    h.run_for(DURATION)
    assert_counts_match_truth(h)


def test_runs_whose_status_changes_after_being_terminal() -> None:
    h = Scraped()
    h.run_for(DURATION)
    assert_counts_match_truth(h)  # counted once as cancelled, then moved by the change counter
    flipped = [r for r in counted_truth(h.sim.truth(), h.boot) if r["outcome"] == "flip"]
    assert flipped and ("cancelled", "completed", len(flipped)) in h.changes()


def test_unknown_run_status_is_tracked_as_active_until_it_ends() -> None:
    def rename(run: dict[str, Any]) -> dict[str, Any]:
        return {**run, "status": "suspended"} if run.get("status") == "running" else run

    h = Scraped(RewriteRuns(some(30), rename), scenario=NO_HISTORY)
    h.run_for(DURATION)
    assert_counts_match_truth(h)  # never taken for an outcome, so nothing is lost or invented
    assert h.problems("unknown_run_status") > 0


@pytest.mark.parametrize("offset", [-1800.0, 1800.0], ids=["letta-behind", "letta-ahead"])
def test_a_letta_clock_that_disagrees_with_ours(offset: float) -> None:
    """Ages (stuck, expired) are measured on Letta's clock, learnt from its Date header: without
    that, a clock 30 min behind would expire every run at once and one ahead would expire none."""
    h = Scraped(server_clock_offset=offset)
    h.run_for(45)
    h.poll()
    truth = h.sim.truth()
    assert abs(h.value("letta_exporter_server_clock_offset_seconds") - offset) <= 1
    stuck = sum(1 for r in truth["active"] if truth["now"] - r["created_at"] > STUCK_AFTER)
    assert sum(h.value("letta_runs_stuck", {"status": s}) for s in ACTIVE_STATUSES) == stuck > 0
    oldest = min(r["created_at"] for r in truth["active"])  # reported on our clock, for time() - x
    assert h.value("letta_run_oldest_active_created_timestamp_seconds") == pytest.approx(oldest - offset, abs=1)
    h.run_for(DURATION)
    assert_counts_match_truth(h)


def test_runs_stamped_in_the_future() -> None:
    """A writer with a skewed clock: its runs sort first for an hour; they must not drag the
    watermark ahead, which would hide every run created meanwhile."""

    def ahead(run: dict[str, Any]) -> dict[str, Any]:
        created = parse_timestamp(run.get("created_at"))
        return {**run, "created_at": (created + timedelta(hours=1)).isoformat()} if created else run

    future = RewriteRuns(some(5), ahead, resort=True)
    h = Scraped(future, scenario=NO_HISTORY)
    h.run_for(DURATION)
    assert_counts_match_truth(h)
    assert h.problems("future_timestamp") == len(future.rewritten) > 0


@pytest.mark.integration
def test_slow_answers_over_real_http_time_out_retry_and_lose_nothing() -> None:
    """Every 5th answer takes 1.5 s against a 1 s request timeout: polls slow down, `/metrics` does not."""
    sim, sim_url = start_simulator(
        "--seed",
        "13",
        "--runs-per-second",
        "10",
        "--max-runs",
        "50",
        "--duration-scale",
        "0.1",
        "--slow-every",
        "5",
        "--slow-seconds",
        "1.5",
    )
    try:
        exporter, url = start_exporter(sim_url, *FAST, "--request-timeout", "1s", "--state-path", ":memory:")
        latencies: list[float] = []

        def timed_settled() -> bool:
            started = time.perf_counter()
            scrape(url)
            latencies.append(time.perf_counter() - started)
            return settled(sim_url, url, 50)

        try:
            wait_until(timed_settled, timeout=180, what="counters equal to the ground truth despite slow answers")
            samples = scrape(url)
            assert total(samples, "letta_exporter_api_requests_total", code="timeout") > 0
            assert samples[("letta_up", ())] == 1
            assert max(latencies) < 0.5, latencies  # a scrape never waits for Letta
        finally:
            assert exporter.stop() == 0
        assert "Traceback" not in exporter.text()
    finally:
        sim.stop()
