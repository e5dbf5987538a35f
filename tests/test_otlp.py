"""The exporter process sends spans to a real OTLP receiver (gRPC and HTTP) — what arrives is checked."""

from __future__ import annotations

import os
import random
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import httpx2
import pytest

from tests.otlp_receiver import ReceivedSpan, Receiver
from tests.support import (
    FAST,
    Process,
    Samples,
    free_port,
    scrape,
    settled,
    spans_exported_caught_up,
    start_exporter,
    start_simulator,
    total,
    wait_until,
)

pytestmark = pytest.mark.integration


def start_exporter_with_otlp(sim_url: str, env: dict[str, str], *args: str) -> tuple[Process, str]:
    return start_exporter(sim_url, *FAST, *args, env={"OTEL_EXPORTER_OTLP_TIMEOUT": "2", **env})


def otlp_env(protocol: str, port: int) -> dict[str, str]:
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}", "OTEL_EXPORTER_OTLP_PROTOCOL": protocol}


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


def is_run_span(span: ReceivedSpan) -> bool:
    return span.name.startswith("invoke_agent")


def run_spans(spans: list[ReceivedSpan]) -> dict[str, ReceivedSpan]:
    return {str(s.attributes["letta.run.id"]): s for s in spans if is_run_span(s)}


def ready(url: str) -> bool:
    return httpx2.get(f"{url}/readyz").status_code == 200


def counted_runs(url: str) -> float:
    return total(scrape(url), "letta_runs_finished_total")


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_every_counted_run_arrives_as_one_trace_fragment_in_lettas_trace(receiver: Receiver, protocol: str) -> None:
    port = receiver.start_grpc() if protocol == "grpc" else receiver.start_http()
    sim, sim_url = start_simulator(
        "--seed", "31", "--runs-per-second", "15", "--max-runs", "60", "--duration-scale", "0.1"
    )
    try:
        exporter, url = start_exporter_with_otlp(sim_url, otlp_env(protocol, port), "--state-path", ":memory:")
        try:
            wait_until(lambda: counted_runs(url) == 60, timeout=60, what="60 counted runs")
            wait_until(lambda: len(run_spans(receiver.snapshot())) == 60, timeout=30, what="60 run spans")
            samples = spans_exported_caught_up(url, len(receiver.snapshot()))
        finally:
            assert exporter.stop() == 0
    finally:
        sim.stop()
    spans = receiver.snapshot()
    assert len({s.span_id for s in spans}) == len(spans)  # nothing sent twice
    assert samples[("letta_exporter_spans_exported_total", ())] == len(spans)
    assert samples[("letta_exporter_spans_dropped_total", ())] == 0
    by_parent: dict[str, list[ReceivedSpan]] = defaultdict(list)
    for span in spans:
        by_parent[span.parent_span_id].append(span)
    for run_span in run_spans(spans).values():
        assert run_span.service_name == "letta-exporter" and run_span.parent_span_id == ""
        assert run_span.attributes["gen_ai.operation.name"] == "invoke_agent"
        assert run_span.attributes["letta.run.status"] in ("completed", "failed", "cancelled", "expired")
        children = by_parent[run_span.span_id]
        assert all(c.name.startswith("chat ") and c.kind == 3 for c in children)  # SPAN_KIND_CLIENT
        assert all(c.trace_id == run_span.trace_id for c in children)
        assert run_span.end >= run_span.start


def test_trace_ids_equal_the_steps_trace_ids(receiver: Receiver) -> None:
    port = receiver.start_http()
    sim, sim_url = start_simulator(
        "--seed", "32", "--runs-per-second", "15", "--max-runs", "30", "--duration-scale", "0.1"
    )
    try:
        exporter, _ = start_exporter_with_otlp(sim_url, otlp_env("http/protobuf", port), "--state-path", ":memory:")
        try:
            wait_until(lambda: len(run_spans(receiver.snapshot())) == 30, timeout=60, what="30 run spans")
            with httpx2.Client(base_url=sim_url) as client:
                for run_id, span in run_spans(receiver.snapshot()).items():
                    steps = client.get(f"/v1/runs/{run_id}/steps").json()
                    letta_ids = {s["trace_id"] for s in steps if s["trace_id"]}
                    if letta_ids:
                        assert letta_ids == {span.trace_id}, run_id
        finally:
            exporter.stop()
    finally:
        sim.stop()


def test_a_collector_outage_loses_nothing_within_the_pending_bound_and_counts_the_rest(receiver: Receiver) -> None:
    """Ten runs wait in memory, twenty more in the state file; past thirty the oldest waiting drop.
    Over HTTP: a gRPC channel's own reconnect backoff after a long outage would only add waiting."""
    port = free_port()  # the collector is down at first
    sim, sim_url = start_simulator(
        "--seed", "33", "--runs-per-second", "20", "--max-runs", "50", "--duration-scale", "0.05"
    )
    try:
        exporter, url = start_exporter_with_otlp(
            sim_url,
            otlp_env("http/protobuf", port),
            *("--state-path", ":memory:", "--otlp-queue-size", "10", "--otlp-max-pending", "30"),
        )
        try:
            wait_until(lambda: counted_runs(url) == 50, timeout=60, what="all runs counted during the outage")
            wait_until(
                lambda: scrape(url)[("letta_exporter_spans_dropped_total", ())] > 0,
                timeout=60,
                what="the runs past the bound dropped while the collector is down",
            )
            dropped = scrape(url)[("letta_exporter_spans_dropped_total", ())]
            assert receiver.snapshot() == []
            receiver.start_http(port)  # the collector comes back
            # at least the thirty left at the last trim arrive; on a slow machine runs committed after
            # that trim (the collector back before the next failure) arrive too
            wait_until(lambda: len(run_spans(receiver.snapshot())) >= 30, timeout=120, what="the waiting runs")

            def delivered() -> tuple[Samples, list[ReceivedSpan]] | None:
                samples, arrived = scrape(url), receiver.snapshot()
                exported = samples[("letta_exporter_spans_exported_total", ())]
                return (samples, arrived) if exported == len(arrived) else None

            samples, spans = wait_until(delivered, what="delivery caught up")
        finally:
            exporter.stop()
    finally:
        sim.stop()
    assert 30 <= len(run_spans(spans)) < 50  # the bound was kept, and the rest dropped
    assert samples[("letta_exporter_spans_exported_total", ())] == len(spans)
    assert samples[("letta_exporter_spans_dropped_total", ())] >= dropped  # a later trim may drop more


def test_crash_loop_of_kill_9_neither_loses_nor_repeats_a_run_or_a_marked_span(
    receiver: Receiver, tmp_path: Path
) -> None:
    """CRASH_CYCLES (default 20) `kill -9`s at random points while runs keep finishing. Afterwards
    the counters equal the ground truth, every run arrived as spans, and a run whose spans were
    confirmed and marked (no longer pending in the state file) at a kill never arrives again."""
    cycles = int(os.environ.get("CRASH_CYCLES", "20"))
    port = receiver.start_grpc()
    state = tmp_path / "state.db"
    rng = random.Random(5)
    runs = 300
    sim, sim_url = start_simulator(
        "--seed", "34", "--runs-per-second", "6", "--max-runs", str(runs), "--duration-scale", "0.1"
    )
    marked: dict[str, int] = {}  # run id -> how often it had arrived when it was seen marked
    try:
        for _ in range(cycles):
            exporter, url = start_exporter_with_otlp(sim_url, otlp_env("grpc", port), "--state-path", str(state))
            wait_until(partial(ready, url), what="a first poll")
            exporter.kill_after(rng.uniform(0.0, 1.2))
            with sqlite3.connect(state) as db:
                pending = {row[0] for row in db.execute("SELECT run_id FROM exports")}
            arrived = Counter(str(s.attributes["letta.run.id"]) for s in receiver.snapshot() if is_run_span(s))
            marked.update({run: n for run, n in arrived.items() if run not in pending and run not in marked})
        exporter, url = start_exporter_with_otlp(sim_url, otlp_env("grpc", port), "--state-path", str(state))
        try:
            wait_until(lambda: settled(sim_url, url, runs), timeout=90, what="counters equal to the ground truth")
            wait_until(lambda: len(run_spans(receiver.snapshot())) == counted_runs(url), what="a span for each run")
        finally:
            exporter.stop()
    finally:
        sim.stop()
    spans = receiver.snapshot()
    arrived = Counter(str(s.attributes["letta.run.id"]) for s in spans if is_run_span(s))
    assert marked and {run: arrived[run] for run in marked} == marked  # nothing marked was ever sent again
    # a kill between delivery and its mark re-sends that batch: with identical ids and content
    for span_id in {s.span_id for s in spans}:
        assert len({(s.trace_id, s.name, s.start, s.end) for s in spans if s.span_id == span_id}) == 1
