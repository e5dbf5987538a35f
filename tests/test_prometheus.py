"""A real Prometheus (Debian's package, installed by scripts/install-tools.sh) scrapes the exporter.

The `stack` fixture (simulator → exporter → Prometheus, once per session) is in conftest.py."""

from __future__ import annotations

import subprocess
from typing import Any

import httpx2
import pytest

from tests.stack import Stack
from tests.support import tool, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.prometheus]

PROMETHEUS, PROMTOOL = tool("prometheus"), tool("promtool")
if PROMETHEUS is None or PROMTOOL is None:
    pytest.skip(
        "prometheus/promtool not installed: run `make tools` (scripts/install-tools.sh)", allow_module_level=True
    )


def query(prometheus_url: str, promql: str) -> list[dict[str, Any]]:
    body = httpx2.get(f"{prometheus_url}/api/v1/query", params={"query": promql}, timeout=5).json()
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def test_prometheus_scrapes_the_exporter_and_sees_runs_finish(stack: Stack) -> None:
    prometheus_url = stack.prometheus_url
    up = wait_until(lambda: query(prometheus_url, 'up{job="letta-exporter"} == 1'), timeout=60, what="target up")
    assert len(up) == 1
    finished = wait_until(
        lambda: query(prometheus_url, 'sum(letta_runs_finished_total{status="completed"}) > 0'),
        timeout=60,
        what="completed runs in Prometheus",
    )
    assert float(finished[0]["value"][1]) > 0
    assert query(prometheus_url, "letta_up") and query(prometheus_url, "letta_exporter_build_info")
    rate = wait_until(
        lambda: query(prometheus_url, "sum(rate(letta_runs_finished_total[5s])) > 0"), timeout=60, what="a rate"
    )
    assert float(rate[0]["value"][1]) > 0


def test_prometheus_stores_trace_id_exemplars(stack: Stack) -> None:
    prometheus_url = stack.prometheus_url

    def exemplars() -> list[dict[str, Any]]:
        body = httpx2.get(
            f"{prometheus_url}/api/v1/query_exemplars",
            params={"query": "letta_run_duration_seconds_bucket", "start": "0", "end": "4000000000"},
            timeout=5,
        ).json()
        return [e for series in body["data"] for e in series["exemplars"]]

    found = wait_until(exemplars, timeout=60, what="exemplars")
    assert all(len(e["labels"]["trace_id"]) == 32 for e in found)


def test_promtool_accepts_the_exposition(stack: Stack) -> None:
    exporter_url = stack.exporter_url
    text = httpx2.get(f"{exporter_url}/metrics").text
    assert "letta_runs_finished_total" in text
    check = subprocess.run([str(PROMTOOL), "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
