"""The Letta poller, the lifecycle and the poll loop against the simulator, in-process: a fake
clock drives both, no sockets, no sleeps.

The central property: every run that finishes is counted exactly once, whatever the poll timing,
the errors in between and the restarts, and the counters equal the simulator's ground truth.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import httpx2
import pytest

from exporter.simulator import Scenario
from tests.harness import BUSY, SETTINGS, Harness, assert_counts_match_truth, counted_truth


def test_every_terminal_run_is_counted_exactly_once() -> None:
    h = Harness(BUSY)
    h.run_for(80 + SETTINGS.expire_after, every=1.0)
    assert_counts_match_truth(h)
    assert h.value("letta_up") == 1
    assert (
        h.value("letta_runs_active", {"status": "created"}) + h.value("letta_runs_active", {"status": "running"}) == 0
    )


@pytest.mark.parametrize("every", [0.25, 3.0, 17.0])
def test_counts_do_not_depend_on_the_poll_interval(every: float) -> None:
    h = Harness(BUSY)
    h.run_for(80 + SETTINGS.expire_after + 2 * every, every=every)
    assert_counts_match_truth(h)


def test_steps_and_tokens_equal_the_ground_truth() -> None:
    h = Harness(replace(BUSY, flip=0.0, zombie=0.0, max_runs=120))
    h.run_for(60)
    truth = h.sim.truth()
    runs = counted_truth(truth, h.boot)
    assert len(runs) == 120
    steps: Counter[tuple[str, str, str, str]] = Counter()
    tokens: Counter[tuple[str, str, str]] = Counter()
    for run in runs:
        for group in run["steps_by"]:
            key = (group["status"], group["stop_reason"] or "none", group["model"], group["provider"])
            steps[key] += group["count"]
        for kind, n in run["tokens"].items():
            tokens[(kind, run["model"], run["provider"])] += n
    for (status, reason, model, provider), n in steps.items():
        labels = {"status": status, "stop_reason": reason, "model": model, "provider": provider}
        assert h.value("letta_steps_total", labels) == n, labels
    for (kind, model, provider), n in tokens.items():
        assert h.value("letta_step_tokens_total", {"type": kind, "model": model, "provider": provider}) == n
    assert sum(h.value("letta_run_steps_sum", {"status": s}) for s in ("completed", "failed", "cancelled")) == sum(
        steps.values()
    )


def test_restarts_with_a_state_file_lose_and_repeat_nothing(tmp_path: Path) -> None:
    h = Harness(BUSY, state_path=str(tmp_path / "state.db"))
    for _ in range(6):
        h.run_for(13, every=1.0)
        h.store.close()
        h.clock.now += 5.0  # the exporter is down for a while; runs keep finishing
        h.restart()
    h.run_for(80 + SETTINGS.expire_after)
    assert_counts_match_truth(h)


def test_a_poll_that_fails_half_way_is_redone_without_double_counting() -> None:
    calls = Counter[str]()

    def flaky(handle: Callable[[httpx2.Request], httpx2.Response]) -> Callable[[httpx2.Request], httpx2.Response]:
        def wrapped(request: httpx2.Request) -> httpx2.Response:
            calls["all"] += 1
            if calls["all"] % 5 == 0:
                return httpx2.Response(503, json={"detail": "busy"})
            if calls["all"] % 11 == 0:
                raise httpx2.ConnectError("refused", request=request)
            return handle(request)

        return wrapped

    h = Harness(BUSY, wrap=flaky, retries=0)
    h.run_for(100 + SETTINGS.expire_after, every=1.0)
    assert_counts_match_truth(h)
    assert h.value("letta_exporter_api_requests_total", {"endpoint": "/v1/runs/", "code": "503"}) > 0


def test_first_start_counts_nothing_that_already_existed() -> None:
    h = Harness(Scenario(seed=3, runs_per_second=0.0, history=300))
    h.run_for(5)
    assert h.value("letta_runs_created_total") == 0
    assert sum(h.finished_by_status().values()) == 0
    assert h.value("letta_exporter_tracked_runs") <= 300


def test_backfill_counts_runs_created_within_the_window() -> None:
    scenario = Scenario(seed=3, runs_per_second=0.0, history=300, history_span_s=3000.0)
    h = Harness(scenario, settings=replace(SETTINGS, backfill=600.0))
    h.poll()
    truth = h.sim.truth()
    window = [r for r in truth["terminal"] if r["created_at"] >= h.boot - 600.0]
    assert 0 < len(window) < 300
    assert h.value("letta_runs_created_total") == len(window)
    assert sum(h.finished_by_status().values()) == len(window)


def test_never_finishing_runs_are_stuck_then_expired_once() -> None:
    zombies = Scenario(
        seed=5, runs_per_second=1.0, max_runs=10, completed=0, failed=0, cancelled=0, flip=0, zombie=1.0, lagging=0
    )
    h = Harness(zombies)
    h.run_for(12)
    assert h.value("letta_runs_stuck", {"status": "created"}) + h.value("letta_runs_stuck", {"status": "running"}) == 0
    h.run_for(20)
    stuck = h.value("letta_runs_stuck", {"status": "created"}) + h.value("letta_runs_stuck", {"status": "running"})
    assert 0 < stuck <= 10
    h.run_for(60)
    assert h.finished_by_status() == Counter({"expired": 10})
    h.run_for(60)  # Letta still lists them as active: never counted again
    assert h.finished_by_status() == Counter({"expired": 10})
    assert h.value("letta_runs_created_total") == 10


def test_cancelled_then_completed_runs_count_once_and_the_change_is_recorded() -> None:
    flips = Scenario(
        seed=9, runs_per_second=2.0, max_runs=30, completed=0, failed=0, cancelled=0, flip=1.0, zombie=0, lagging=0
    )
    h = Harness(flips)
    h.run_for(120, every=0.5)
    assert sum(h.finished_by_status().values()) == 30
    changed = sum(n for before, after, n in h.changes() if (before, after) == ("cancelled", "completed"))
    assert changed == h.finished_by_status()["cancelled"] > 0
    assert_counts_match_truth(h)


def test_steady_state_requests_per_poll_do_not_grow_with_history() -> None:
    def requests_for(history: int) -> Counter[str]:
        h = Harness(replace(BUSY, history=history, history_span_s=86400.0, max_runs=None))
        h.run_for(30)  # warm up: bootstrap and the first finished runs
        before = Counter(h.sim.requests)
        h.run_for(40)
        return Counter(h.sim.requests) - before

    small, large = requests_for(100), requests_for(10_000)
    assert sum(small.values()) > 0
    assert small == large
    per_poll = sum(large.values()) / 40
    assert per_poll < 30, large


def test_a_run_that_ends_after_it_expired_is_moved_not_counted_again() -> None:
    """Expired young (expire_after shorter than the re-read window), then finished: the listing
    still shows it, and it must not look new."""
    h = Harness(
        replace(BUSY, duration_scale=5.0, max_runs=60), settings=replace(SETTINGS, expire_after=3.0), stuck_after=1.0
    )
    h.run_for(120)
    assert sum(n for before, _, n in h.changes() if before == "expired") > 0
    assert_counts_match_truth(h)


def test_a_status_that_lags_longer_than_finished_runs_are_kept_is_not_counted_again() -> None:
    """Letta lists a run as active (status running, stop reason end_turn) long after it ended; once
    the tracker has forgotten it, the active listing must not make it look new (found by fuzzing)."""
    lagging = replace(BUSY, lagging=0.5, zombie=0.05, duration_scale=20.0, max_runs=300)
    h = Harness(lagging, settings=replace(SETTINGS, expire_after=250.0), stuck_after=100.0)
    h.run_for(450)  # new runs move the watermark on, so lagging runs get forgotten while still listed
    assert any(r["outcome"] == "lagging" for r in counted_truth(h.sim.truth(), h.boot))
    assert_counts_match_truth(h)
