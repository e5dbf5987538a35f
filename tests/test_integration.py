"""The real `letta-exporter` process against the simulator process, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import re
import signal
import sqlite3
from pathlib import Path

import httpx2
import pytest

from tests.support import (
    FAST,
    Process,
    exporter_cmd,
    running,
    scrape,
    settled,
    start_exporter,
    start_simulator,
    total,
    wait_until,
)

pytestmark = pytest.mark.integration


def test_exporter_counts_every_run_of_a_live_simulator_exactly_once() -> None:
    sim, sim_url = start_simulator(
        "--seed", "11", "--runs-per-second", "20", "--max-runs", "150", "--duration-scale", "0.1"
    )
    try:
        exporter, url = start_exporter(sim_url, *FAST, "--state-path", ":memory:")
        try:
            wait_until(lambda: settled(sim_url, url, 150), timeout=60, what="counters equal to the ground truth")
            samples = scrape(url)
            assert samples[("letta_up", ())] == 1
            assert total(samples, "letta_steps_total") > 150
            assert total(samples, "letta_exporter_api_requests_total", code="200") > 0
            assert httpx2.get(f"{url}/readyz").status_code == 200
            assert httpx2.get(f"{url}/healthz").text == "ok\n"
            assert "letta-exporter" in httpx2.get(f"{url}/").text
            openmetrics = httpx2.get(f"{url}/metrics", headers={"Accept": "application/openmetrics-text"})
            assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
            assert "# {trace_id=" in openmetrics.text and openmetrics.text.endswith("# EOF\n")
        finally:
            assert exporter.stop(signal.SIGTERM) == 0
        assert "Traceback" not in exporter.text()
    finally:
        sim.stop()


def test_sigterm_saves_state_and_exits_cleanly(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    sim, sim_url = start_simulator("--runs-per-second", "10", "--duration-scale", "0.1")
    try:
        exporter, url = start_exporter(sim_url, "--poll-interval", "200ms", "--state-path", str(state))
        # runs active at the first poll finish uncounted as created: wait for one created since
        wait_until(
            lambda: min(
                total(scrape(url), "letta_runs_finished_total"), total(scrape(url), "letta_runs_created_total")
            ),
            what="runs created and finished",
        )
        assert exporter.stop(signal.SIGTERM) == 0
        assert "Traceback" not in exporter.text()
        assert '"message": "letta-exporter stopped"' in exporter.text()
        with sqlite3.connect(state) as db:
            saved = db.execute("SELECT value FROM series WHERE metric = 'letta_runs_created'").fetchone()
        assert saved is not None and float(saved[0]) > 0
    finally:
        sim.stop()


def test_unreachable_letta_keeps_serving_and_reports_not_ready() -> None:
    exporter, url = start_exporter("http://127.0.0.1:9", "--poll-interval", "200ms", "--state-path", ":memory:")

    def not_ready() -> httpx2.Response | None:
        response = httpx2.get(f"{url}/readyz")
        return response if response.status_code == 503 and "ConnectError" in response.text else None

    try:
        ready = wait_until(not_ready, what="readyz to name the failure")
        assert ready.text.startswith("not ready: /v1/runs/: ConnectError")
        samples = scrape(url)
        assert samples[("letta_up", ())] == 0
        assert total(samples, "letta_exporter_api_requests_total", code="error") >= 4  # the retries, counted
    finally:
        assert exporter.stop() == 0


def test_invalid_configuration_fails_at_start_with_one_clear_line() -> None:
    with running(exporter_cmd("run", "--poll-interval", "often")) as process:
        assert process.proc.wait(30) == 2
        expected = "--poll-interval (from --poll-interval): 'often' is not a duration (use e.g. 500ms, 15s, 5m, 24h)"
        assert process.text().strip() == f"letta-exporter: {expected}"


def test_corrupt_state_file_is_reported_and_can_be_reset(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    state.write_bytes(b"this is not sqlite" * 100)
    with running(exporter_cmd("run", "--state-path", str(state), "--letta-url", "http://127.0.0.1:9")) as process:
        assert process.proc.wait(30) == 2
        assert "unreadable or corrupt" in process.text() and "--reset-state" in process.text()
    exporter, url = start_exporter("http://127.0.0.1:9", "--state-path", str(state), "--reset-state")
    try:
        assert httpx2.get(f"{url}/healthz").status_code == 200
    finally:
        exporter.stop()


def test_check_reports_what_the_server_shows() -> None:
    sim, sim_url = start_simulator("--runs-per-second", "20", "--duration-scale", "0.05", "--history", "20")
    try:
        with running(exporter_cmd("check", "--letta-url", sim_url, "--letta-api-key", "sk-let-do-not-print")) as ok:
            assert ok.proc.wait(30) == 0, ok.text()
        out = ok.text()
        assert "Letta 0.16.8" in out and "result      : OK" in out and "trace_id on" in out
        assert re.search(r"cost        : priced \d+", out), out  # the simulated models are all in the table
        assert "sk-let-do-not-print" not in out
    finally:
        sim.stop()
    with running(exporter_cmd("check", "--letta-url", "http://127.0.0.1:9")) as failing:
        assert failing.proc.wait(60) == 1
    assert "PROBLEM" in failing.text()


def test_demo_runs_with_no_configuration(tmp_path: Path) -> None:
    state = str(tmp_path / "demo.db")
    demo = Process(
        exporter_cmd("demo", "--listen-address", "127.0.0.1:0", "--log-format", "json", "--state-path", state)
    )
    try:
        url = demo.wait_for_line(r"metrics\s+: (http://\S+)/metrics").group(1)
        wait_until(lambda: total(scrape(url), "letta_runs_finished_total") > 0, timeout=30, what="demo runs")
    finally:
        assert demo.stop(signal.SIGINT) == 0
    assert "Traceback" not in demo.text()
