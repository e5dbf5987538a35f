"""The live stack: simulator and event-posting hosts → exporter → a real Prometheus evaluating the
alert rules, on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import NamedTuple

import httpx2

from exporter.simulator.feed import EventFeed
from tests.support import ROOT, Process, free_port, start_exporter, start_simulator, wait_until

JOB = "letta-exporter"  # the job name the alert rules select on
RULES_FILE = ROOT / "alerts" / "letta-exporter.rules.yml"
# Simulated traffic with every kind of run, a server that reports ttft_ns for half of them, and
# an HTTP 500 every 40 requests (the exporter retries: counts stay exact, the error panel has data).
SIMULATOR_ARGS = (
    "--runs-per-second",
    "10",
    "--duration-scale",
    "0.1",
    "--history",
    "50",
    "--ttft",
    "0.5",
    "--error-every",
    "40",
)
# Short stuck/expire windows so that the simulator's never-finishing runs become stuck, then expired;
# per-agent labels and tool metrics so that the by-agent and tools panels have data.
EXPORTER_ARGS = (
    "--poll-interval",
    "500ms",
    "--state-path",
    ":memory:",
    "--stuck-after",
    "2s",
    "--expire-after",
    "4s",
    "--agent-labels",
    "--tool-metrics",
)
# behest and agent-sdk hosts posting events (some bad lines, unknown types and resent bodies), silent
# runs expiring after 3 s idle; and a Redis that is down, so the event-source error panel has data.
INGEST_TOKEN = "live-stack-ingest-token"
EVENT_ARGS = (
    "--ingest-token",
    INGEST_TOKEN,
    "--event-settle",
    "500ms",
    "--event-idle-expire-after",
    "3s",
)


class Stack(NamedTuple):
    prometheus_url: str
    exporter_url: str
    simulator_url: str
    job: str
    rules_file: Path


@contextmanager
def letta_stack(workdir: Path, prometheus: str) -> Iterator[Stack]:
    """Simulator → exporter → Prometheus (scraping and evaluating the alert rules every second, exemplar
    storage on), all on 127.0.0.1; yields once Prometheus is ready, stops all three on exit."""
    with ExitStack() as cleanup:
        sim, sim_url = start_simulator(*SIMULATOR_ARGS)
        cleanup.callback(sim.stop)
        down = f"redis://127.0.0.1:{free_port()}/0"
        exporter, exporter_url = start_exporter(sim_url, *EXPORTER_ARGS, *EVENT_ARGS, "--redis-url", down)
        cleanup.callback(exporter.stop)
        feed = EventFeed(exporter_url, INGEST_TOKEN, runs_per_second=4, seed=7, noisy=True)
        feed.start()
        cleanup.callback(feed.close)
        port = free_port()
        config = workdir / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            f"rule_files: ['{RULES_FILE}']\n"
            "scrape_configs:\n"
            f"  - job_name: {JOB}\n    static_configs: [{{targets: ['{exporter_url.removeprefix('http://')}']}}]\n"
        )
        server = Process(
            [
                prometheus,
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--enable-feature=exemplar-storage",
                "--log.level=warn",
            ]
        )
        cleanup.callback(server.stop)
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            if server.proc.poll() is not None:
                raise AssertionError(f"prometheus exited with {server.proc.returncode}:\n{server.text()[-3000:]}")
            return httpx2.get(f"{url}/-/ready", timeout=2).status_code == 200

        wait_until(ready, timeout=30, what="prometheus ready")
        yield Stack(url, exporter_url, sim_url, JOB, RULES_FILE)
