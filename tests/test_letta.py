"""The Letta client over httpx2.MockTransport: auth, retries, error kinds and cursor-agnostic paging."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2
import pytest

from exporter.letta import LettaClient, LettaError
from exporter.metrics import ExporterMetrics
from exporter.simulator.clock import FakeClock

Handler = Callable[[httpx2.Request], httpx2.Response]


def make(handler: Handler, **kwargs: Any) -> tuple[LettaClient, ExporterMetrics, list[float]]:
    metrics = ExporterMetrics()
    delays: list[float] = []
    clock = FakeClock(time.time())  # moved by the sleeps: a Retry-After has passed once slept

    async def sleep(seconds: float) -> None:
        delays.append(seconds)
        clock.now += seconds

    client = LettaClient(
        "http://letta.test",
        metrics,
        transport=httpx2.MockTransport(handler),
        sleep=sleep,
        jitter=lambda: 1.0,
        clock=clock,
        **kwargs,
    )
    return client, metrics, delays


def requests_total(metrics: ExporterMetrics, endpoint: str, code: str) -> float:
    value = metrics.registry.get_sample_value("letta_exporter_api_requests_total", {"endpoint": endpoint, "code": code})
    return value or 0.0


def test_auth_and_project_headers() -> None:
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(200, json={"version": "0.16.8", "status": "ok"})

    client, metrics, _ = make(handler, api_key="sk-let-123", project="prod")
    assert asyncio.run(client.health())["version"] == "0.16.8"
    assert seen[0].headers["Authorization"] == "Bearer sk-let-123"
    assert seen[0].headers["X-Project"] == "prod"
    assert seen[0].headers["User-Agent"].startswith("letta-exporter/")
    assert requests_total(metrics, "/v1/health/", "200") == 1
    assert "X-Project-Id" not in seen[0].headers  # a slug is not an id


@pytest.mark.parametrize(
    "project", ["project-3f0c6a52-1a7e-4c55-9d2b-8f8e0c1d2a3b", "3F0C6A52-1A7E-4C55-9D2B-8F8E0C1D2A3B"]
)
def test_a_project_id_is_also_sent_as_x_project_id(project: str) -> None:
    seen: list[httpx2.Request] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(200, json={"version": "0.16.8"})

    client, _, _ = make(handler, project=project)
    asyncio.run(client.health())
    assert seen[0].headers["X-Project"] == seen[0].headers["X-Project-Id"] == project


def test_retries_5xx_and_429_honouring_retry_after_then_succeeds() -> None:
    answers = [httpx2.Response(503), httpx2.Response(429, headers={"Retry-After": "7"}), httpx2.Response(200, json=[])]

    def handler(request: httpx2.Request) -> httpx2.Response:
        return answers.pop(0)

    client, metrics, delays = make(handler, backoff=0.5, max_backoff=30)
    assert asyncio.run(client.get_list("/v1/runs/", "/v1/runs/")) == []
    assert delays == [0.5, 7.0]  # attempt 0 backoff, then the server's longer Retry-After
    assert requests_total(metrics, "/v1/runs/", "503") == 1
    assert requests_total(metrics, "/v1/runs/", "429") == 1
    assert requests_total(metrics, "/v1/runs/", "200") == 1


def test_retry_after_as_http_date_and_beyond_max_backoff_gives_up_instead_of_retrying_early() -> None:
    later = (datetime.now(UTC) + timedelta(hours=1)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    client, _, delays = make(lambda r: httpx2.Response(429, headers={"Retry-After": later}), max_backoff=30)
    with pytest.raises(LettaError) as caught:
        asyncio.run(client.get("/v1/runs/", "/v1/runs/"))
    assert caught.value.status == 429 and delays == []


def test_backoff_grows_exponentially_and_stops_after_the_retry_budget() -> None:
    calls: list[int] = []

    def handler(request: httpx2.Request) -> httpx2.Response:
        calls.append(1)
        raise httpx2.ConnectError("refused", request=request)

    client, metrics, delays = make(handler, retries=3, backoff=1.0, max_backoff=3.0)
    with pytest.raises(LettaError) as caught:
        asyncio.run(client.get("/v1/runs/", "/v1/runs/"))
    assert caught.value.kind == "connection" and len(calls) == 4
    assert delays == [1.0, 2.0, 3.0]
    assert requests_total(metrics, "/v1/runs/", "error") == 4


def test_timeouts_are_retried_and_labelled() -> None:
    def handler(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ReadTimeout("slow", request=request)

    client, metrics, _ = make(handler, retries=1)
    with pytest.raises(LettaError) as caught:
        asyncio.run(client.get("/v1/runs/", "/v1/runs/"))
    assert caught.value.kind == "timeout"
    assert requests_total(metrics, "/v1/runs/", "timeout") == 2


@pytest.mark.parametrize("status", [400, 401, 404, 422])
def test_client_errors_are_not_retried(status: int) -> None:
    client, metrics, delays = make(lambda r: httpx2.Response(status, json={"detail": "nope"}))
    with pytest.raises(LettaError) as caught:
        asyncio.run(client.get("/v1/runs/{run_id}", "/v1/runs/run-1"))
    assert (caught.value.status, caught.value.kind, delays) == (status, f"http_{status}", [])
    assert "nope" in str(caught.value)
    assert requests_total(metrics, "/v1/runs/{run_id}", str(status)) == 1


@pytest.mark.parametrize(
    ("body", "kind"), [(b"{not json", "malformed_json"), (b'{"a": 1}', "not_a_list"), (b"<html>", "malformed_json")]
)
def test_bodies_that_are_not_what_was_asked_for(body: bytes, kind: str) -> None:
    client, _, _ = make(lambda r: httpx2.Response(200, content=body))
    with pytest.raises(LettaError) as caught:
        asyncio.run(client.get_list("/v1/runs/", "/v1/runs/"))
    assert caught.value.kind == kind


def runs(count: int) -> list[dict[str, Any]]:
    """Runs newest first, one second apart."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    return [
        {"id": f"run-{i:04d}", "status": "completed", "created_at": (start + timedelta(seconds=i)).isoformat()}
        for i in reversed(range(count))
    ]


def runs_server(data: list[dict[str, Any]], older_cursor: str | None) -> tuple[Handler, list[dict[str, str]]]:
    """A /v1/runs/ whose `older_cursor` pages to older runs; the other cursor to newer; unknown ids ignored."""
    log: list[dict[str, str]] = []
    ids = [r["id"] for r in data]

    def handler(request: httpx2.Request) -> httpx2.Response:
        params = dict(request.url.params)
        log.append(params)
        limit = int(params.get("limit", 100))
        cursor_name = next((c for c in ("before", "after") if c in params), None)
        start = 0
        if cursor_name is not None and params[cursor_name] in ids:
            at = ids.index(params[cursor_name])
            if cursor_name == older_cursor:
                start = at + 1
            else:
                return httpx2.Response(200, json=data[max(0, at - limit) : at])
        return httpx2.Response(200, json=data[start : start + limit])

    return handler, log


async def collect(client: LettaClient, page_size: int) -> list[str]:
    return [item["id"] async for item in client.runs_newest_first(page_size)]


@pytest.mark.parametrize("older_cursor", ["before", "after"])  # 0.14+ and 0.12-0.13 semantics
def test_paging_learns_the_cursor_direction_and_reads_every_run_once(older_cursor: str) -> None:
    data = runs(25)
    handler, log = runs_server(data, older_cursor)
    client, metrics, _ = make(handler)
    assert asyncio.run(collect(client, 10)) == [r["id"] for r in data]
    assert metrics.registry.get_sample_value("letta_exporter_parse_errors_total", {"kind": "cursor_not_advancing"}) == 0
    cursors_used: list[str | None] = [next((c for c in ("before", "after") if c in p), None) for p in log]
    assert cursors_used.count(older_cursor) == 2
    # a second crawl already knows the direction: no probing requests
    log.clear()
    assert len(asyncio.run(collect(client, 10))) == 25
    assert len(log) == 3


def test_a_cursor_the_server_ignores_ends_the_crawl_and_is_reported() -> None:
    data = runs(30)

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, json=data[:10])  # every cursor silently ignored: first page again

    client, metrics, _ = make(handler)
    assert asyncio.run(collect(client, 10)) == [r["id"] for r in data[:10]]
    assert metrics.registry.get_sample_value("letta_exporter_parse_errors_total", {"kind": "cursor_not_advancing"}) == 1


def test_run_steps_pages_forward_in_execution_order() -> None:
    steps = [{"id": f"step-{i}", "run_id": "run-1"} for i in range(7)]

    def handler(request: httpx2.Request) -> httpx2.Response:
        assert request.url.path == "/v1/runs/run-1/steps" and request.url.params["order"] == "asc"
        after = request.url.params.get("after")
        start = 0 if after is None else int(after.split("-")[1]) + 1
        return httpx2.Response(200, content=json.dumps(steps[start : start + 3]))

    client, _, _ = make(handler)
    assert [s["id"] for s in asyncio.run(client.run_steps("run-1", page_size=3))] == [s["id"] for s in steps]
