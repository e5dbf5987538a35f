"""The in-process harness: a simulator and the exporter's poll loop on one fake clock, and the
ground-truth comparisons the tracker, fault and fuzz tests share. No sockets, no sleeps."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import httpx2

from exporter.app import letta_loop
from exporter.letta import LettaClient, LettaSettings
from exporter.loop import PollLoop
from exporter.metrics import ExporterMetrics
from exporter.otlp import SpanDelivery
from exporter.simulator import Scenario, SimulatedLetta
from exporter.simulator.clock import FakeClock, no_sleep
from exporter.state import StateStore

SETTINGS = LettaSettings(expire_after=60.0, first_recheck=1.0, recheck_window=120.0)
STUCK_AFTER = 20.0
Handler = Callable[[httpx2.Request], httpx2.Response]


class Harness:
    """A simulator, a tracker and its state file, all on one fake clock."""

    def __init__(
        self,
        scenario: Scenario,
        state_path: str = ":memory:",
        settings: LettaSettings = SETTINGS,
        stuck_after: float = STUCK_AFTER,
        wrap: Callable[[Handler], Handler] | None = None,
        retries: int = 3,
        server_clock_offset: float = 0.0,
        metrics: Callable[[], ExporterMetrics] = ExporterMetrics,
    ) -> None:
        self.clock = FakeClock()
        self.sim = SimulatedLetta(scenario, clock=lambda: self.clock.now + server_clock_offset)
        self.handler = wrap(self.sim.handle) if wrap else self.sim.handle
        self.state_path = state_path
        self.settings = settings
        self.stuck_after = stuck_after
        self.retries = retries
        self.new_metrics = metrics
        self.boot = self.sim.clock()  # on the simulator's clock, like the ground truth
        self.restart()

    def restart(self) -> None:
        """A new process: fresh metrics and client, the same state file (or none)."""
        self.metrics = self.new_metrics()
        self.client = LettaClient(
            "http://letta.test",
            self.metrics,
            transport=httpx2.MockTransport(self.handler),
            sleep=no_sleep,
            retries=self.retries,
            clock=self.clock,
        )
        self.store = StateStore(self.state_path)
        self.loop = self.make_loop()

    def make_loop(self, spans: SpanDelivery | None = None) -> PollLoop:
        return letta_loop(
            self.client,
            self.store,
            self.metrics,
            replace(self.settings, agent_names=spans is not None),
            stuck_after=self.stuck_after,
            spans=spans,
            clock=self.clock,
        )

    def poll(self) -> bool:
        bootstrapped, now = self.bootstrapped, self.sim.clock()
        ok = asyncio.run(self.loop.poll())
        if not bootstrapped and self.bootstrapped:
            self.boot = now  # a first poll that failed (faults) moves the start of counting
        return ok

    @property
    def bootstrapped(self) -> bool:
        return self.loop.lifecycle.watermark is not None

    def run_for(self, seconds: float, every: float = 1.0) -> None:
        end = self.clock.now + seconds
        while self.clock.now < end:
            self.poll()
            self.clock.now += every

    def value(self, name: str, labels: dict[str, str] | None = None) -> float:
        return self.metrics.registry.get_sample_value(name, labels or {}) or 0.0

    def finished_by_status(self) -> Counter[str]:
        totals: Counter[str] = Counter()
        for metric in self.metrics.registry.collect():
            for sample in metric.samples:
                if sample.name == "letta_runs_finished_total":
                    totals[sample.labels["status"]] += int(sample.value)
        return totals

    def settled_by_status(self) -> Counter[str]:
        """Counted runs by status, each moved to its latest status by the status-change counter."""
        finished = self.finished_by_status()
        for before, after, n in self.changes():
            finished[before] -= n
            finished[after] += n
        return +finished

    def changes(self) -> list[tuple[str, str, int]]:
        return [
            (s.labels["from"], s.labels["to"], int(s.value))
            for m in self.metrics.registry.collect()
            for s in m.samples
            if s.name == "letta_run_terminal_status_changes_total" and s.value
        ]


def counted_truth(truth: dict[str, Any], boot: float) -> list[dict[str, Any]]:
    """Runs the exporter must count: those that finished after it started."""
    return [r for r in truth["terminal"] if not r["historical"] and r["first_terminal_at"] > boot]


def final_status_counts(truth: dict[str, Any], boot: float) -> Counter[str]:
    """Current status of every counted run; never-finishing runs count as expired."""
    counts = Counter(
        r["status"] if r["status"] != "running" else r["first_terminal_status"] for r in counted_truth(truth, boot)
    )
    counts["expired"] += sum(1 for r in truth["active"] if r["zombie"])
    return counts


def assert_counts_match_truth(h: Harness, exclude: frozenset[str] = frozenset()) -> None:
    """Every run (but `exclude`d ones) counted once: first terminal state, later changes moved."""
    truth = h.sim.truth()
    kept = {
        **truth,
        "terminal": [r for r in truth["terminal"] if r["id"] not in exclude],
        "active": [r for r in truth["active"] if r["id"] not in exclude],
    }
    assert h.settled_by_status() == +final_status_counts(kept, h.boot)
    created = sum(1 for r in kept["terminal"] + kept["active"] if not r.get("historical") and r["created_at"] > h.boot)
    assert h.value("letta_runs_created_total") == created  # an excluded run is one the exporter cannot see


BUSY = Scenario(seed=7, agents=4, runs_per_second=3.0, max_runs=240, history=40, duration_scale=1.0)
