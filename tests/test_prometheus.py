"""A real Prometheus (Debian's package, installed by scripts/install-tools.sh) scrapes the exporter."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import Process, start_exporter, start_simulator, tool, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.prometheus]

PROMETHEUS, PROMTOOL = tool("prometheus"), tool("promtool")
if PROMETHEUS is None or PROMTOOL is None:
    pytest.skip(
        "prometheus/promtool not installed: run `make tools` (scripts/install-tools.sh)", allow_module_level=True
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """Simulator → exporter → Prometheus (scraping every second, exemplar storage on)."""
    tmp: Path = tmp_path_factory.mktemp("prometheus")
    sim, sim_url = start_simulator("--runs-per-second", "10", "--duration-scale", "0.1", "--history", "50")
    exporter, exporter_url = start_exporter(sim_url, "--poll-interval", "500ms", "--state-path", ":memory:")
    port = free_port()
    (tmp / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: letta-exporter\n    static_configs: [{{targets: ['{exporter_url[7:]}']}}]\n"
    )
    prometheus = Process([
        str(PROMETHEUS), f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}", "--enable-feature=exemplar-storage", "--log.level=warn",
    ])  # fmt: skip
    try:
        yield f"http://127.0.0.1:{port}", exporter_url
    finally:
        prometheus.stop()
        exporter.stop()
        sim.stop()


def query(prometheus_url: str, promql: str) -> list[dict[str, object]]:
    body = httpx.get(f"{prometheus_url}/api/v1/query", params={"query": promql}, timeout=5).json()
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def test_prometheus_scrapes_the_exporter_and_sees_runs_finish(stack: tuple[str, str]) -> None:
    prometheus_url, _ = stack
    up = wait_until(lambda: query(prometheus_url, 'up{job="letta-exporter"} == 1'), timeout=60, what="target up")
    assert len(up) == 1
    finished = wait_until(
        lambda: query(prometheus_url, 'sum(letta_runs_finished_total{status="completed"}) > 0'),
        timeout=60,
        what="completed runs in Prometheus",
    )
    assert float(finished[0]["value"][1]) > 0  # type: ignore[index]
    assert query(prometheus_url, "letta_up") and query(prometheus_url, "letta_exporter_build_info")
    rate = wait_until(
        lambda: query(prometheus_url, "sum(rate(letta_runs_finished_total[5s])) > 0"), timeout=60, what="a rate"
    )
    assert float(rate[0]["value"][1]) > 0  # type: ignore[index]


def test_prometheus_stores_trace_id_exemplars(stack: tuple[str, str]) -> None:
    prometheus_url, _ = stack

    def exemplars() -> list[dict[str, object]]:
        body = httpx.get(
            f"{prometheus_url}/api/v1/query_exemplars",
            params={"query": "letta_run_duration_seconds_bucket", "start": "0", "end": "4000000000"},
            timeout=5,
        ).json()
        return [e for series in body["data"] for e in series["exemplars"]]

    found = wait_until(exemplars, timeout=60, what="exemplars")
    assert all(len(e["labels"]["trace_id"]) == 32 for e in found)  # type: ignore[index]


def test_promtool_accepts_the_exposition(stack: tuple[str, str]) -> None:
    _, exporter_url = stack
    text = httpx.get(f"{exporter_url}/metrics").text
    assert "letta_runs_finished_total" in text
    check = subprocess.run([str(PROMTOOL), "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
