"""Scale: peak memory against backlog size, a burst of spans, finished runs per second against latency.

Every figure runs the exporter as users do — `letta-exporter run` in a process of its own — against
the simulator served over real HTTP on 127.0.0.1 from another process, so neither shares a heap.
- **backlog**: a `--backfill` over N finished runs (1k / 20k / 100k; step timings off, so the
  request count stays proportional to runs); peak RSS is the kernel's VmHWM of the exporter. The
  baseline is the smallest backlog's peak: flat memory means the ratio stays near 1.
- **burst**: a 5 000-run backfill with OTLP on, to a lean receiver process; every run's spans must
  arrive, none dropped, with the in-memory queue at its default (2 048 runs).
- **latency**: finished runs per second (step timings on) while every answer is held back 0, 50,
  100 or 200 ms; the baseline, measured at the same latency, is `--max-concurrency 4`, what the
  fixed concurrency of 4 allowed before the limit adapted.

    python -m bench.scale [--sizes 1000,20000,100000] [--latencies 0,50,100,200]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

from bench import otlp_sink
from bench.common import Figure, Target, progress
from tests.support import Samples, memory_mb, scrape, start_exporter, start_simulator, total, wait_until

BURST = 5000
RUNS_AT_LATENCY = 3000
BASELINE_RUNS_AT_LATENCY = 400  # the fixed limit is ~10x slower: fewer runs keep its pass short


@contextmanager
def simulated_letta(*args: str) -> Iterator[str]:
    sim, url = start_simulator("--runs-per-second", "0", "--seed", "61", *args)
    try:
        yield url
    finally:
        sim.stop()


def backfill(letta: str, runs: int, *args: str, env: dict[str, str] | None = None) -> tuple[float, float]:
    """Seconds until the exporter counted all `runs`, and its peak RSS in MB."""
    with tempfile.TemporaryDirectory() as tmp:
        started = time.monotonic()
        exporter, url = start_exporter(
            letta, "--state-path", f"{tmp}/state.db", "--backfill", "25h", "--poll-interval", "1s", *args, env=env
        )
        try:
            last = [0.0]

            def counted() -> bool:
                now = total(scrape(url), "letta_runs_created_total")
                if now != last[0]:
                    progress(f"scale: {now:,.0f} of {runs:,} runs counted")
                    last[0] = now
                return now >= runs

            wait_until(counted, timeout=3600, what=f"{runs} runs counted")
            return time.monotonic() - started, memory_mb(exporter.proc.pid, "VmHWM")
        finally:
            exporter.stop()


def backlog(sizes: list[int]) -> list[Figure]:
    peaks: dict[int, float] = {}
    rates: dict[int, float] = {}
    for size in sizes:
        progress(f"scale: backfill of {size:,} runs")
        with simulated_letta("--history", str(size), "--history-span", "86400") as letta:
            seconds, peaks[size] = backfill(letta, size, "--no-step-timings")
        rates[size] = size / seconds
    base, largest = sizes[0], sizes[-1]
    detail = {"peak_rss_mb": peaks, "runs_per_s": rates}
    figures = [
        Figure(
            f"backlog_peak_rss_mb_{size}",
            f"peak RSS, backfill of {size:,} runs",
            peaks[size],
            "MB",
            Target("<=", 120) if size == largest else None,
            f"VmHWM of the exporter process; {rates[size]:,.0f} runs/s",
            detail,
            "lower",
        )
        for size in sizes
    ]
    figures.append(
        Figure(
            "backlog_peak_rss_ratio",
            f"peak RSS ratio, {largest:,} ÷ {base:,} runs",
            peaks[largest] / peaks[base],
            "ratio",
            None,
            f"{peaks[largest]:.1f} MB ÷ {peaks[base]:.1f} MB",
            detail,
            "lower",
        )
    )
    return figures


def burst() -> list[Figure]:
    progress(f"scale: a {BURST:,}-run backfill with OTLP spans")
    with simulated_letta("--history", str(BURST)) as letta, otlp_sink.running() as sink:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": sink.url, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}
        with tempfile.TemporaryDirectory() as tmp:
            exporter, url = start_exporter(
                letta, "--state-path", f"{tmp}/s.db", "--backfill", "2h", "--no-step-timings", env=env
            )
            try:
                wait_until(lambda: total(scrape(url), "letta_runs_created_total") >= BURST, timeout=600, what="burst")

                def all_delivered() -> Samples | None:
                    samples = scrape(url)
                    exported = samples[("letta_exporter_spans_exported_total", ())]
                    settled = exported + total(samples, "letta_exporter_spans_dropped_total") >= spans_expected(samples)
                    return samples if settled and exported == sink.received()[0] else None

                samples = wait_until(all_delivered, timeout=600, what="every span delivered")
            finally:
                exporter.stop()
    delivered = samples[("letta_exporter_spans_exported_total", ())]
    dropped = total(samples, "letta_exporter_spans_dropped_total")
    return [
        Figure(
            "burst_spans_dropped",
            f"spans dropped, {BURST:,}-run burst, healthy collector",
            dropped,
            "spans",
            Target("<=", 0),
            f"{delivered:,.0f} spans delivered for {BURST:,} runs; in-memory queue 2,048 runs",
            {"delivered": delivered, "dropped": dropped, "runs": BURST},
            "lower",
        )
    ]


def spans_expected(samples: Samples) -> float:
    """One run span per run plus one chat span per step (no tool spans without step timings)."""
    runs = total(samples, "letta_runs_finished_total")
    steps = total(samples, "letta_steps_total")
    return runs + steps


def latency(latencies_ms: list[int]) -> list[Figure]:
    figures = []
    for ms in latencies_ms:
        rates = {}
        for name, runs, args in (
            ("adaptive", RUNS_AT_LATENCY, ()),
            ("fixed 4", BASELINE_RUNS_AT_LATENCY, ("--max-concurrency", "4")),
        ):
            progress(f"scale: {ms} ms latency, {name}: {runs:,} runs")
            with simulated_letta("--history", str(runs), "--latency", str(ms / 1000)) as letta:
                seconds, _ = backfill(letta, runs, *args)
            rates[name] = runs / seconds
        figures.append(
            Figure(
                f"runs_per_s_at_{ms}ms",
                f"finished runs/s at {ms} ms latency (step timings on)",
                rates["adaptive"],
                "runs/s",
                Target(">=", 100) if ms == 100 else None,
                f"default settings; {rates['fixed 4']:,.1f} runs/s with --max-concurrency 4 "
                f"({rates['adaptive'] / rates['fixed 4']:.1f}x)",
                {"latency_ms": ms, "runs_per_s": rates},
                "higher",
            )
        )
    return figures


def measure(sizes: list[int], latencies_ms: list[int]) -> list[Figure]:
    return [*backlog(sizes), *burst(), *latency(latencies_ms)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,20000,100000")
    parser.add_argument("--latencies", default="0,50,100,200")
    args = parser.parse_args()
    figures = measure([int(n) for n in args.sizes.split(",")], [int(n) for n in args.latencies.split(",")])
    print(json.dumps({f.key: f.json() for f in figures}, indent=2))


if __name__ == "__main__":
    main()
