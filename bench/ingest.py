"""Ingest: the exporter counting (and exporting) a whole history vs a loop that only fetches and parses it.

Both sides read the same runs and steps of one simulator with the same requests: run-list pages,
each run's steps, each finished step's timings (the exporter's default --step-timings). The
baseline is the floor any poller pays (httpx2, JSON, Letta records read into pydantic models) with no
counting, no state and no spans. The exporter is `PollLoop.poll` with --backfill covering the whole history,
so its first poll counts every run, committing to a state file; the second variant also delivers
OTLP spans to a receiver in another process and is timed until every span was confirmed.

Answers are pre-rendered (`bench.common.Replay`), so the simulator's own cost is on neither side;
the few answers not pre-rendered (the exporter's active-run and agent listings) are served by the
simulator and their time subtracted. Both sides run with the pre-rendered answers frozen out of
the garbage collector (`gc.freeze`), as they would not exist in a real process.

    python -m bench.ingest [--runs 20000] [--repeat 2] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import pstats
import re
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx2
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

from bench import otlp_sink
from bench.common import LETTA_URL, ROOT, Figure, Handler, Replay, Target, make_exporter, progress, total
from exporter.letta import LettaSettings, records
from exporter.metrics import ExporterMetrics
from exporter.otlp import SpanDelivery
from exporter.simulator import Scenario, SimulatedLetta
from exporter.simulator.clock import FakeClock
from exporter.spans import default_resource
from exporter.state import StateStore

HISTORY_SPAN = 86400.0
PAGE_SIZE = 100  # the exporter's default --page-size; the baseline pages the same way


def scenario(runs: int) -> Scenario:
    return Scenario(seed=11, agents=8, runs_per_second=0.0, history=runs, history_span_s=HISTORY_SPAN)


SETTINGS = LettaSettings(page_size=PAGE_SIZE, backfill=HISTORY_SPAN + 3600.0)


def plain(handle: Handler) -> tuple[int, int]:
    """The floor: fetch every page, parse every run, step and step timing; count nothing.
    Same URLs as the exporter's (parameters in the same order), so the same answers."""
    runs = steps = 0
    with httpx2.Client(base_url=LETTA_URL, transport=httpx2.MockTransport(handle)) as http:
        params: dict[str, str | int] = {"order": "desc", "limit": PAGE_SIZE}
        ids: list[str] = []
        while True:
            page = http.get("/v1/runs/", params=params).json()
            ids.extend(records.RUN(raw).id for raw in page)
            if len(page) < PAGE_SIZE:
                break
            params = {**params, "before": page[-1]["id"]}
        for run_id in ids:
            listed = http.get(f"/v1/runs/{run_id}/steps", params={"order": "asc", "limit": PAGE_SIZE}).json()
            for step in (records.STEP(raw) for raw in listed):
                steps += 1
                if step.status != "pending":
                    records.STEP_METRICS(http.get(f"/v1/steps/{step.id}/metrics").json())
        runs = len(ids)
    return runs, steps


@dataclass
class Pass:
    seconds: float  # the simulator's time for answers not pre-rendered already subtracted
    runs: int
    steps: int
    requests: int
    spans: int = 0


def exporter_pass(
    replay: Replay,
    clock: FakeClock,
    workdir: Path,
    sink: otlp_sink.Sink | None = None,
    profiler: cProfile.Profile | None = None,
) -> Pass:
    """One backfill poll of a fresh exporter (new state file) over the whole history."""

    def delivery_to_sink(store: StateStore, metrics: ExporterMetrics) -> SpanDelivery:
        # One poll hands over the whole history at once: with the default bound (--otlp-queue-size
        # 2048 runs) the spans of every run beyond it would be dropped, collector healthy or not.
        assert sink is not None
        return SpanDelivery(
            OTLPSpanExporter(endpoint=f"{sink.url}/v1/traces"),
            store,
            metrics,
            default_resource(),
            max_queued_runs=10**7,
        )

    state = str(workdir / f"state-{uuid.uuid4().hex}.db")
    exporter = make_exporter(replay, clock, SETTINGS, state, spans=delivery_to_sink if sink else None)
    delivery = exporter.delivery
    before = (replay.miss_seconds, sink.received()[0] if sink else 0)
    gc.collect()
    started = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    assert exporter.poll(), exporter.loop.last_error
    if delivery is not None:
        assert delivery.wait_idle(600), "spans not delivered within 600 s"
    if profiler is not None:
        profiler.disable()
    elapsed = time.perf_counter() - started - (replay.miss_seconds - before[0])
    registry = exporter.metrics.registry
    result = Pass(
        seconds=elapsed,
        runs=int(total(registry, "letta_runs_finished_total")),
        steps=int(total(registry, "letta_steps_total")),
        requests=int(total(registry, "letta_exporter_api_requests_total")),
    )
    if delivery is not None and sink is not None:
        result.spans = sink.received()[0] - before[1]
        exported = total(registry, "letta_exporter_spans_exported_total")
        dropped = total(registry, "letta_exporter_spans_dropped_total")
        assert result.spans == exported and dropped == 0, (result.spans, exported, dropped)
    exporter.close()
    return result


def prepare(runs: int) -> tuple[SimulatedLetta, FakeClock, Replay, tuple[int, int]]:
    """The simulator, its answers rendered once (by a first baseline pass) and the expected totals."""
    clock = FakeClock()
    progress(f"ingest: planning {runs:,} runs of history")
    sim = SimulatedLetta(scenario(runs), clock=clock)
    truth = sim.truth()["terminal"]
    expected = (len(truth), sum(r["steps"] for r in truth))
    replay = Replay(sim.handle)
    progress(f"ingest: rendering the simulator's answers ({expected[0]:,} runs, {expected[1]:,} steps)")
    assert plain(replay) == expected
    gc.collect()
    gc.freeze()
    return sim, clock, replay, expected


def measure(runs: int, repeat: int) -> list[Figure]:
    _, clock, replay, expected = prepare(runs)
    rendered = replay.misses
    try:
        best = timed(clock, replay, expected, repeat)
    finally:
        gc.unfreeze()
    result = figures(best, expected, repeat)
    for figure in result:  # served by the simulator during timed passes, its time subtracted
        figure.detail["answers_not_prerendered"] = replay.misses - rendered
    return result


def timed(clock: FakeClock, replay: Replay, expected: tuple[int, int], repeat: int) -> dict[str, Pass]:
    """Baseline, exporter, exporter with spans, `repeat` times interleaved; the best of each."""
    best: dict[str, Pass] = {}
    with tempfile.TemporaryDirectory() as tmp, otlp_sink.running() as sink:
        for attempt in range(1, repeat + 1):
            progress(f"ingest {attempt}/{repeat}: baseline loop")
            gc.collect()
            started = time.perf_counter()
            assert plain(replay) == expected
            passes = {"plain": Pass(time.perf_counter() - started, *expected, requests=0)}
            progress(f"ingest {attempt}/{repeat}: exporter, no spans")
            passes["exporter"] = exporter_pass(replay, clock, Path(tmp))
            progress(f"ingest {attempt}/{repeat}: exporter with OTLP spans")
            passes["spans"] = exporter_pass(replay, clock, Path(tmp), sink)
            for name, result in passes.items():
                assert (result.runs, result.steps) == expected, (name, result, expected)
                if name not in best or result.seconds < best[name].seconds:
                    best[name] = result
            progress("ingest: " + ", ".join(f"{k} {v.seconds:.2f} s" for k, v in passes.items()))
    return best


def figures(best: dict[str, Pass], expected: tuple[int, int], repeat: int) -> list[Figure]:
    plain_s = best["plain"].seconds
    common = {
        "runs": expected[0],
        "steps": expected[1],
        "requests": best["exporter"].requests,
        "repeat": repeat,
        "baseline_s": round(plain_s, 3),
    }
    where = f"{expected[0]:,} runs / {expected[1]:,} steps / {best['exporter'].requests:,} requests"
    exporter_s, spans_s = best["exporter"].seconds, best["spans"].seconds
    return [
        Figure(
            "ingest_ratio",
            "ingest ratio (baseline ÷ exporter)",
            plain_s / exporter_s,
            "ratio",
            Target(">=", 0.5),
            f"baseline {plain_s:.2f} s ÷ exporter {exporter_s:.2f} s; {where}; best of {repeat}",
            {**common, "exporter_s": round(exporter_s, 3), "runs_per_s": round(expected[0] / exporter_s, 1)},
        ),
        Figure(
            "ingest_ratio_spans",
            "ingest ratio with OTLP spans",
            plain_s / spans_s,
            "ratio",
            Target(">=", 0.3),
            f"baseline {plain_s:.2f} s ÷ exporter+OTLP {spans_s:.2f} s ({best['spans'].spans:,} spans confirmed)",
            {
                **common,
                "exporter_s": round(spans_s, 3),
                "spans": best["spans"].spans,
                "runs_per_s": round(expected[0] / spans_s, 1),
            },
        ),
    ]


def profile(runs: int, top: int = 25) -> str:
    """cProfile of one exporter pass (no spans): the top functions by cumulative and by own time."""
    _, clock, replay, _ = prepare(runs)
    profiler = cProfile.Profile()
    with tempfile.TemporaryDirectory() as tmp:
        progress("ingest: profiling one exporter pass")
        try:
            result = exporter_pass(replay, clock, Path(tmp), profiler=profiler)
        finally:
            gc.unfreeze()
    out = io.StringIO()
    out.write(
        f"# cProfile, one exporter pass: {result.runs:,} runs, {result.steps:,} steps, {result.requests:,} "
        f"requests, {result.seconds:.2f} s (profiled)\n"
    )
    for order in ("cumulative", "tottime"):
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats(order).print_stats(top)
    own: Counter[str] = Counter()
    for (path, _, function), (_, _, self_time, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        own[_package(path, function)] += self_time
    everything = sum(own.values())
    out.write("# self time by package or module\n")
    for name, seconds in own.most_common(15):
        out.write(f"{seconds:8.2f} s {seconds / everything:6.1%}  {name}\n")
    return out.getvalue()


def _package(path: str, function: str) -> str:
    """Where a profiled function lives: a site-package, an exporter module, a stdlib module, a builtin."""
    if path == "~":  # C code: "<method 'x' of 'module.Type' objects>" or "<built-in method module.x>"
        found = re.search(r"of '([\w.]+)' objects|built-in method ([\w.]+)\.\w+>", function)
        owner = (found.group(1) or found.group(2)) if found else "?"
        return f"C: {owner.split('.')[0] if '.' in owner else owner}"
    if "site-packages/" in path:
        return path.split("site-packages/")[1].split("/")[0]
    if f"{ROOT}/" in path:
        return path.removeprefix(f"{ROOT}/")
    return "stdlib " + Path(path).parent.name if Path(path).parent.name != "python3.11" else "stdlib " + Path(path).stem


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--profile", action="store_true", help="print a cProfile of one exporter pass instead")
    args = parser.parse_args()
    if args.profile:
        print(profile(args.runs))
        return
    for figure in measure(args.runs, args.repeat):
        print(f"{figure.label}: {figure.shown()} (target {figure.target}) — {figure.basis}")


if __name__ == "__main__":
    main()
