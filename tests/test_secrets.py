"""Secrets (Letta API key, basic-auth passwords, ingest token, Redis password) never appear in logs, pages, errors."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import bcrypt
import httpx2
import pytest

from tests.support import (
    exporter_cmd,
    free_port,
    running,
    scrape,
    start_exporter,
    start_simulator,
    total,
    wait_until,
)

pytestmark = pytest.mark.integration

API_KEY = "sk-let-0123456789-NEVER-PRINT-ME"
PASSWORD = "basic-auth-NEVER-PRINT-ME"


@pytest.fixture
def echoing_letta() -> Iterator[str]:
    """A hostile 'Letta' that rejects every request and echoes the credentials back in the error."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"detail": f"bad token {self.headers.get('Authorization')}"}).encode()
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def assert_no_secret(text: str) -> None:
    assert API_KEY not in text and PASSWORD not in text
    assert base64.b64encode(f"prometheus:{PASSWORD}".encode()).decode() not in text


def test_no_secret_in_logs_pages_or_errors_of_a_running_exporter(echoing_letta: str, tmp_path: Path) -> None:
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users:\n  prometheus: '{hashed}'\n")
    auth = {"Authorization": "Basic " + base64.b64encode(f"prometheus:{PASSWORD}".encode()).decode()}
    flags = ["--poll-interval", "200ms", "--state-path", ":memory:", "--web-config-file", str(web)]
    exporter, url = start_exporter(echoing_letta, "--letta-api-key", API_KEY, "--log-level", "debug", *flags)
    try:
        wait_until(
            lambda: total(scrape(url, auth), "letta_exporter_api_requests_total", code="401") >= 2,
            what="rejected polls",
        )
        pages = [httpx2.get(f"{url}{path}", headers=auth, timeout=5).text for path in ("/", "/readyz", "/metrics")]
        assert "bad token Bearer <redacted>" in pages[1]  # the context is kept, the secret is not
        httpx2.get(f"{url}/metrics", headers={"Authorization": "Basic " + base64.b64encode(b"x:y").decode()})
    finally:
        exporter.stop()
    assert_no_secret("\n".join(pages) + exporter.text())
    assert '"level": "debug"' in exporter.text()  # the most verbose logs were checked


def test_no_secret_in_check_output(echoing_letta: str) -> None:
    with running(exporter_cmd("check", "--letta-url", echoing_letta, "--letta-api-key", API_KEY)) as process:
        assert process.proc.wait(60) == 1
    assert "set --letta-api-key / LETTA_API_KEY" in process.text()
    assert_no_secret(process.text())


def test_no_secret_from_the_environment_either() -> None:
    sim, sim_url = start_simulator("--runs-per-second", "5", "--duration-scale", "0.1")
    try:
        with running(exporter_cmd("check", "--letta-url", sim_url), env={"LETTA_API_KEY": API_KEY}) as process:
            assert process.proc.wait(60) == 0
        assert_no_secret(process.text())
        exporter, url = start_exporter(
            sim_url, "--log-level", "debug", "--poll-interval", "200ms", "--state-path", ":memory:"
        )
        try:
            wait_until(lambda: total(scrape(url), "letta_runs_finished_total") > 0, what="finished runs")
        finally:
            exporter.stop()
        assert_no_secret(exporter.text())
    finally:
        sim.stop()


INGEST_TOKEN = "ingest-NEVER-PRINT-ME"
REDIS_PASSWORD = "redis-pw-NEVER-PRINT-ME"


def test_no_ingest_token_or_redis_password_in_logs_pages_or_errors(tmp_path: Path) -> None:
    down = f"redis://user:{REDIS_PASSWORD}@127.0.0.1:{free_port()}/0"  # Redis is down: errors get logged
    flags = ["--no-letta", "--ingest-token", INGEST_TOKEN, "--redis-url", down, "--log-level", "debug"]
    exporter, url = start_exporter("http://127.0.0.1:9", *flags, "--state-path", ":memory:")
    try:
        line = b'{"RunStarted": {"run_id": "r", "timestamp": "' + INGEST_TOKEN.encode() + b'"}}\n'
        assert (
            httpx2.post(f"{url}/v1/events", content=line, headers={"Authorization": "Bearer nope"}).status_code == 401
        )
        answer = httpx2.post(
            f"{url}/v1/events", content=b"{oops\n", headers={"Authorization": f"Bearer {INGEST_TOKEN}"}
        )
        assert answer.json()["rejected"] == 1
        wait_until(
            lambda: total(scrape(url), "letta_exporter_event_source_errors_total", transport="redis") >= 2,
            what="redis errors",
        )
        pages = [httpx2.get(f"{url}{path}", timeout=5).text for path in ("/", "/readyz", "/metrics")]
    finally:
        exporter.stop()
    text = "\n".join(pages) + exporter.text()
    assert INGEST_TOKEN not in text and REDIS_PASSWORD not in text
    assert "user:***@127.0.0.1" in exporter.text()  # the URL is logged, redacted
    with running(exporter_cmd("run", "--no-letta", "--redis-url", f"http://:{REDIS_PASSWORD}@x/0")) as process:
        assert process.proc.wait(30) == 2  # a bad URL: named, its value (a secret) not shown
    assert "--redis-url" in process.text() and REDIS_PASSWORD not in process.text()
