"""The HTTP client library: httpx 0.28 against httpx2 2.16 (its maintained continuation), same work.

Both drive the same request mix as the exporter's ingest — list pages, a run's steps, step
metrics — against the simulator served over real HTTP on 127.0.0.1 from another process, with
32 requests in flight and JSON decoding of every answer. The figure is CPU seconds per request in
this process (the simulator's cost is in its own), best of `repeat`, as a ratio httpx2 ÷ httpx.

    python -m bench.http_client [--requests 6000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import time
from types import ModuleType
from typing import Any

import httpx2

from bench.common import Figure, progress
from tests.support import start_simulator

CONCURRENCY = 32


async def _drive(library: ModuleType, url: str, paths: list[str]) -> float:
    client: Any = library.AsyncClient(
        base_url=url, limits=library.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    )
    queue = list(reversed(paths))

    async def worker() -> None:
        while queue:
            response = await client.get(queue.pop())
            response.json()

    started = time.process_time()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    cpu = time.process_time() - started
    await client.aclose()
    return cpu


def request_mix(url: str, requests: int) -> list[str]:
    """Paths as the exporter asks them, over the simulator's runs and steps."""
    runs = httpx2.get(f"{url}/v1/runs/", params={"limit": 1000}).json()
    paths: list[str] = []
    while len(paths) < requests:
        for run in runs:
            paths += ["/v1/runs/?limit=100&order=desc", f"/v1/runs/{run['id']}/steps"]
            steps = httpx2.get(f"{url}/v1/runs/{run['id']}/steps").json()
            paths += [f"/v1/steps/{step['id']}/metrics" for step in steps if step["status"] != "pending"]
            if len(paths) >= requests:
                break
    return paths[:requests]


def measure(requests: int, repeat: int) -> list[Figure]:
    sim, url = start_simulator("--history", "2000", "--runs-per-second", "0", "--seed", "71")
    try:
        paths = request_mix(url, requests)
        best: dict[str, float] = {}
        for name in ("httpx", "httpx2"):
            library = importlib.import_module(name)
            runs = []
            for _ in range(repeat):
                runs.append(asyncio.run(_drive(library, url, paths)))
                progress(f"http client: {name} {runs[-1]:.2f} CPU s for {len(paths):,} requests")
            best[name] = min(runs)
    finally:
        sim.stop()
    per_request = {name: seconds / len(paths) * 1e6 for name, seconds in best.items()}
    return [
        Figure(
            "http_client_cpu_ratio",
            "HTTP client CPU per request, httpx2 ÷ httpx",
            best["httpx2"] / best["httpx"],
            "ratio",
            None,
            f"httpx {per_request['httpx']:.0f} µs vs httpx2 {per_request['httpx2']:.0f} µs of CPU per request; "
            f"{len(paths):,} requests, {CONCURRENCY} in flight, best of {repeat}",
            {"cpu_us_per_request": per_request, "requests": len(paths), "repeat": repeat},
            "lower",
        )
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    for figure in measure(args.requests, args.repeat):
        print(f"{figure.label}: {figure.shown()} ({figure.basis})")


if __name__ == "__main__":
    main()
