"""Events ingested per second: over HTTP and through Redis, into a real exporter process, against
`json.loads` of the same lines (the floor any reader pays) measured in the same run.

A generated behest stream (bare lines) is posted in bodies of 1000 lines, each answered after
its commit; through Redis, the lines are added to the stream first and the exporter is timed
from start until its `letta_exporter_events_total` has taken every line. The exporter's peak RSS
is read at the end (`VmHWM`), against the number of lines.

    python -m bench.events [--runs 5000]
"""

from __future__ import annotations

import argparse
import json
import signal
import tempfile
import time
from pathlib import Path

import httpx2
import redis

from bench.common import Figure, progress
from exporter.simulator.events import EventScenario, generate
from tests.support import (
    memory_mb,
    redis_server,
    scrape,
    start_event_exporter,
    total,
    wait_until,
)

TOKEN = "bench-token"
BODY_LINES = 1000


def _http(lines: list[bytes], state: Path) -> tuple[float, float]:
    process, url = start_event_exporter(state, "--ingest-token", TOKEN)
    try:
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/x-ndjson"}
        bodies = [b"\n".join(lines[i : i + BODY_LINES]) for i in range(0, len(lines), BODY_LINES)]
        with httpx2.Client(timeout=60) as client:
            started = time.perf_counter()
            accepted = sum(
                client.post(f"{url}/v1/events", content=body, headers=headers).json()["accepted"] for body in bodies
            )
            seconds = time.perf_counter() - started
        assert accepted == len(lines), (accepted, len(lines))
        return len(lines) / seconds, memory_mb(process.proc.pid, "VmHWM")
    finally:
        process.stop(signal.SIGKILL)


def _redis(lines: list[bytes], state: Path) -> tuple[float, float]:
    with redis_server() as url:
        client = redis.Redis.from_url(url)
        client.xgroup_create("behest:events", "letta-exporter", id="0", mkstream=True)  # so the backlog is read
        pipe = client.pipeline(transaction=False)
        for line in lines:
            pipe.xadd("behest:events", {"event": line})
        pipe.execute()
        process, metrics_url = start_event_exporter(state, "--redis-url", url)
        started = time.perf_counter()  # from the start line: the reader starts after it
        try:
            wait_until(
                lambda: total(scrape(metrics_url), "letta_exporter_events_total", transport="redis") >= len(lines),
                timeout=600,
                what="the stream consumed",
            )
            seconds = time.perf_counter() - started
            return len(lines) / seconds, memory_mb(process.proc.pid, "VmHWM")
        finally:
            process.stop(signal.SIGKILL)


def measure(runs: int) -> list[Figure]:
    progress(f"events: generating {runs:,} behest runs")
    stream = generate(EventScenario("behest", seed=3, runs=runs))
    lines = [line.data for line in stream.lines]
    started = time.perf_counter()
    for line in lines:
        json.loads(line)
    floor = len(lines) / (time.perf_counter() - started)
    with tempfile.TemporaryDirectory() as tmp:
        progress(f"events: {len(lines):,} lines over HTTP")
        http, http_rss = _http(lines, Path(tmp) / "http.db")
        progress(f"events: {len(lines):,} lines through Redis")
        through_redis, redis_rss = _redis(lines, Path(tmp) / "redis.db")
    basis = f"{len(lines):,} lines of {runs:,} runs; json.loads alone {floor:,.0f} lines/s"
    detail = {"lines": len(lines), "runs": runs, "floor_lines_per_s": floor}
    return [
        Figure(
            "events_http_per_s",
            "events ingested over HTTP",
            http,
            "events/s",
            None,
            basis,
            {**detail, "ratio_to_floor": http / floor, "peak_rss_mb": http_rss},
            "higher",
        ),
        Figure(
            "events_redis_per_s",
            "events ingested through Redis",
            through_redis,
            "events/s",
            None,
            basis,
            {**detail, "ratio_to_floor": through_redis / floor, "peak_rss_mb": redis_rss},
            "higher",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=5000)
    for figure in measure(parser.parse_args().runs):
        print(f"{figure.label}: {figure.value:,.0f} {figure.unit} ({figure.basis}); {figure.detail}")


if __name__ == "__main__":
    main()
