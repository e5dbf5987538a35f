"""Scrape latency: `/metrics` from the real `MetricsServer` with ~10 000 series while ingest runs flat out.

The exporter side runs in this process as `app.run` arranges it: the server's threads beside a
poller that never sleeps (back-to-back backfill polls of pre-rendered simulator answers, every
one counted into the same registry), publishing the `/metrics` renderings after each poll
(`MetricsServer.publish`, the snapshot max age `app.run` uses). Synthetic models add label sets
until the exposition has ~10 000 series. The scrapers run in a child process, so their own work does not compete for the
exporter's GIL; each sends what Prometheus sends (OpenMetrics preferred, gzip) and times the
whole response. First one scraper with no ingest (idle), then an HA pair of scrapers at once under
ingest, each pausing only 0.25 s between scrapes (not 15 s) to gather enough samples. Also
reported: what publishing costs each poll, and how much the scrapes slow ingest down (runs/s while
scraped vs one pass alone).

    python -m bench.scrape [--series 10000] [--seconds 30] [--scrapers 2]
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import subprocess
import sys
import threading
import time
from typing import Any

import httpx2
from prometheus_client import generate_latest

from bench import ingest
from bench.common import LETTA_URL, ROOT, Figure, Target, make_exporter, progress, quantile
from exporter.app import SNAPSHOT_MAX_AGE
from exporter.letta import records
from exporter.metrics import ExporterMetrics
from exporter.model import FinishedRun, StepMetrics
from exporter.server import MetricsServer, PollStatus

# Prometheus 3's scrape Accept header (scrape_protocols default) and its gzip
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,"
    "application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,"
    "text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
)
INGEST_RUNS = 3000
PAUSE = 0.25  # between one scraper's scrapes
INTERVAL = 15.0  # --poll-interval (only sets the snapshot max age: the poller here never sleeps)


def series(metrics: ExporterMetrics) -> int:
    return sum(1 for line in generate_latest(metrics.registry).splitlines() if line and not line.startswith(b"#"))


def synthetic(i: int) -> FinishedRun:
    """A finished run on a model of its own: every step status, token type and timing phase."""
    model, provider = f"bench-model-{i:04d}", f"bench-provider-{i % 7}"
    shapes = [("success", None), ("success", "end_turn"), ("failed", "llm_api_error")]
    steps = tuple(
        records.STEP(
            {
                "id": f"step-{i}-{j}",
                "model": model,
                "provider_name": provider,
                "status": status,
                "stop_reason": stop,
                "prompt_tokens": 1000,
                "completion_tokens": 50,
                "cached_input_tokens": 10,
                "cache_write_tokens": 5,
                "reasoning_tokens": 3,
                "trace_id": hashlib.md5(f"{i}".encode()).hexdigest(),
            }
        )
        for j, (status, stop) in enumerate(shapes)
    )
    timings = {s.id: StepMetrics(llm_request_ns=10**8, tool_execution_ns=10**7, step_ns=2 * 10**8) for s in steps}
    run = records.RUN({"id": f"run-{i}", "status": "failed", "created_at": "2026-11-22T12:31:38Z"})
    return FinishedRun(run=run, status="failed", steps=steps, step_metrics=timings)


def seed(metrics: ExporterMetrics, target: int) -> int:
    """Add synthetic models until the exposition has about `target` series; returns the count."""
    i, count = 0, series(metrics)
    while count < target:
        for _ in range(max(1, min(50, (target - count) // 60))):
            metrics.ledger.record(synthetic(i))
            i += 1
        count = series(metrics)
    return count


def scrapers(url: str, count: int, seconds: float) -> dict[str, Any]:
    """In the child: `count` threads scraping `url` for `seconds`; latencies in ms."""
    latencies: list[float] = []
    sizes: list[int] = []
    errors = [0]
    deadline = time.monotonic() + seconds

    def scrape() -> None:
        headers = {"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip"}
        with httpx2.Client(timeout=30, headers=headers) as http:
            while time.monotonic() < deadline:
                started = time.perf_counter()
                try:
                    response = http.get(url)
                    response.raise_for_status()
                    body = response.content
                except httpx2.HTTPError:
                    errors[0] += 1
                    continue
                latencies.append((time.perf_counter() - started) * 1000)
                sizes.append(len(body))
                time.sleep(PAUSE)

    threads = [threading.Thread(target=scrape) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"latencies_ms": latencies, "mean_bytes": sum(sizes) / max(1, len(sizes)), "errors": errors[0]}


def run_scrapers(url: str, count: int, seconds: float) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.scrape", "--client", url, "--scrapers", str(count), "--seconds", str(seconds)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    ).stdout
    result: dict[str, Any] = json.loads(out)
    assert result["errors"] == 0 and result["latencies_ms"], result
    return result


def measure(target_series: int, seconds: float, count: int) -> list[Figure]:
    _, clock, replay, expected = ingest.prepare(INGEST_RUNS)
    metrics = ExporterMetrics()
    stop = threading.Event()
    passes: list[float] = []
    publishing: list[float] = []
    server = MetricsServer(
        metrics.registry,
        PollStatus(poll_interval=INTERVAL),
        LETTA_URL,
        "127.0.0.1",
        0,
        snapshot_max_age=max(SNAPSHOT_MAX_AGE, 2 * INTERVAL),
    )

    def poll_flat_out() -> None:
        while not stop.is_set():
            exporter = make_exporter(replay, clock, ingest.SETTINGS, metrics=metrics)
            started = time.perf_counter()
            assert exporter.poll(), exporter.loop.last_error
            passes.append(time.perf_counter() - started)
            started = time.perf_counter()
            server.publish()  # as app.run does after each poll
            publishing.append(time.perf_counter() - started)
            exporter.close()

    server.start()
    url = f"http://127.0.0.1:{server.port}/metrics"
    try:
        progress("scrape: one ingest pass, then synthetic models up to the series target")
        alone = make_exporter(replay, clock, ingest.SETTINGS, metrics=metrics)
        started = time.perf_counter()
        assert alone.poll(), alone.loop.last_error
        alone_rate = expected[0] / (time.perf_counter() - started)
        alone.close()
        count_series = seed(metrics, target_series)
        progress(f"scrape: {count_series:,} series; idle: 1 scraper for {seconds / 4:g} s")
        idle = run_scrapers(url, 1, seconds / 4)
        progress(f"scrape: {count} scrapers for {seconds:g} s while ingest polls back to back")
        poller = threading.Thread(target=poll_flat_out, name="ingest")
        poller.start()
        loaded = run_scrapers(url, count, seconds)
        stop.set()
        poller.join()
        count_series = series(metrics)
    finally:
        server.close()
        gc.unfreeze()  # ingest.prepare froze the pre-rendered answers
    idle_ms, loaded_ms = idle["latencies_ms"], loaded["latencies_ms"]
    rate = expected[0] * len(passes) / sum(passes) if passes else 0.0
    detail = {
        "series": count_series,
        "scrapers": count,
        "pause_s": PAUSE,
        "seconds": seconds,
        "scrapes": len(loaded_ms),
        "mean_response_bytes": round(loaded["mean_bytes"]),
        "idle_p50_ms": quantile(idle_ms, 0.5),
        "loaded_p50_ms": quantile(loaded_ms, 0.5),
        "loaded_p99_ms": quantile(loaded_ms, 0.99),
        "loaded_max_ms": max(loaded_ms),
        "ingest_passes": len(passes),
        "ingest_runs_per_s_while_scraped": round(rate, 1),
        "ingest_runs_per_s_alone": round(alone_rate, 1),
        "publish_p50_ms": quantile(publishing, 0.5) * 1000 if publishing else None,
    }
    where = (
        f"{count_series:,} series, {count} scrapers, ingest {rate:,.0f} runs/s while scraped ({alone_rate:,.0f} alone)"
    )
    return [
        Figure(
            "scrape_p50_ms",
            "scrape latency p50 under ingest",
            detail["loaded_p50_ms"],
            "ms",
            None,
            f"{where}; idle p50 {detail['idle_p50_ms']:.1f} ms",
            detail,
            "lower",
        ),
        Figure(
            "scrape_p99_ms",
            "scrape latency p99 under ingest",
            detail["loaded_p99_ms"],
            "ms",
            Target("<=", 100),
            f"max {detail['loaded_max_ms']:.1f} ms; {len(loaded_ms)} scrapes of "
            f"{loaded['mean_bytes'] / 1e3:,.0f} kB (OpenMetrics, sent gzipped); publishing after each poll "
            f"{detail['publish_p50_ms'] or 0:.0f} ms",
            detail,
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--scrapers", type=int, default=2)
    parser.add_argument("--client", metavar="URL", help="be the scraper process: scrape URL, print JSON")
    args = parser.parse_args()
    if args.client:
        print(json.dumps(scrapers(args.client, args.scrapers, args.seconds)))
        return
    for figure in measure(args.series, args.seconds, args.scrapers):
        print(f"{figure.label}: {figure.shown()} (target {figure.target}) — {figure.basis}")


if __name__ == "__main__":
    main()
