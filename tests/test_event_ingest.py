"""Generated behest and agent-sdk streams through a real exporter process: over HTTP (resends,
gzip, reordered and malformed lines) and through a real Redis with a `kill -9` mid-stream —
every run counted exactly once, as the generator's ground truth says."""

from __future__ import annotations

import gzip
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
import redis

from exporter.simulator.events import EventScenario, EventStream, EventTruth, generate
from tests.otlp_receiver import ReceivedSpan, Receiver
from tests.support import Process, Samples, redis_server, scrape, start_event_exporter, total, wait_until

TOKEN = "ingest-secret-token"
PREFIX = {"behest": "behest", "agent_sdk": "agent_sdk"}
FAST = ("--event-settle", "2s", "--event-idle-expire-after", "5s", "--poll-interval", "1s")


def start(state: Path, *args: str, env: dict[str, str] | None = None) -> tuple[Process, str]:
    return start_event_exporter(state, *FAST, *args, env=env)


@pytest.fixture
def exporter(tmp_path: Path) -> Iterator[tuple[Process, str]]:
    process, url = start(tmp_path / "state.db", "--ingest-token", TOKEN)
    try:
        yield process, url
    finally:
        process.stop(signal.SIGKILL)


def post(url: str, body: bytes, *, token: str | None = TOKEN, zipped: bool = False) -> httpx2.Response:
    headers = {"Content-Type": "application/x-ndjson"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if zipped:
        body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
    return httpx2.post(f"{url}/v1/events", content=body, headers=headers, timeout=30)


def counted(samples: Samples, prefix: str) -> float:
    return total(samples, f"{prefix}_runs_finished_total")


def assert_matches(samples: Samples, prefix: str, truth: EventTruth) -> None:
    """Every family against the ground truth, series by series."""
    for (status, stop), n in truth.runs.items():
        assert total(samples, f"{prefix}_runs_finished_total", status=status, stop_reason=stop) == n, (status, stop)
    assert counted(samples, prefix) == truth.created
    assert total(samples, f"{prefix}_runs_created_total") == truth.created
    for (status, stop, model, provider), n in truth.steps.items():
        got = total(samples, f"{prefix}_steps_total", status=status, stop_reason=stop, model=model, provider=provider)
        assert got == n, (status, stop, model, provider)
    assert total(samples, f"{prefix}_steps_total") == sum(truth.steps.values())
    for (kind, model, provider), n in truth.tokens.items():
        assert total(samples, f"{prefix}_step_tokens_total", type=kind, model=model, provider=provider) == n
    assert total(samples, f"{prefix}_step_tokens_total") == sum(truth.tokens.values())
    for (tool, status), n in truth.tool_calls.items():
        assert total(samples, f"{prefix}_tool_calls_total", tool=tool, status=status) == n, (tool, status)
    assert total(samples, f"{prefix}_tool_calls_total") == sum(truth.tool_calls.values())
    if prefix == "behest":
        for (model, provider), n in truth.usage_missing.items():
            assert total(samples, "behest_steps_usage_missing_total", model=model, provider=provider) == n


def all_counted(url: str, streams: dict[str, EventStream]) -> Samples | None:
    samples = scrape(url)
    done = all(counted(samples, PREFIX[rt]) >= s.truth.created for rt, s in streams.items())
    return samples if done else None


def test_generated_streams_over_http_count_every_run_once(exporter: tuple[Process, str]) -> None:
    _process, url = exporter
    streams = {
        "behest": generate(
            EventScenario(
                "behest",
                seed=7,
                runs=300,
                formats=("bare", "envelope"),
                duplicates=0.05,
                reorder_s=2.0,
                malformed=9,
                unknown_types=4,
            )
        ),
        "agent_sdk": generate(
            EventScenario(
                "agent_sdk",
                seed=8,
                runs=300,
                formats=("v0.4", "v0.9"),
                duplicates=0.05,
                reorder_s=2.0,
                malformed=6,
                unknown_types=3,
            )
        ),
    }
    lines = sorted((line for s in streams.values() for line in s.lines), key=lambda line: line.at)
    accepted = duplicate = rejected = ignored = resent_rejected = 0
    chunks = [lines[i : i + 700] for i in range(0, len(lines), 700)]
    for number, chunk in enumerate(chunks):
        body = b"\n".join(line.data for line in chunk) + b"\n"
        answer = post(url, body, zipped=number % 2 == 1).json()
        accepted, duplicate = accepted + answer["accepted"], duplicate + answer["duplicate"]
        rejected, ignored = rejected + answer["rejected"], ignored + answer["ignored"]
        if number == 1:
            again = post(url, body).json()  # a resend: nothing new
            assert (again["accepted"], again["duplicate"]) == (0, answer["accepted"] + answer["duplicate"])
            resent_rejected = again["rejected"]
    truth = [s.truth for s in streams.values()]
    assert rejected == sum(t.malformed_lines for t in truth)
    assert ignored == sum(t.unknown_lines for t in truth)
    assert accepted == sum(t.valid_lines for t in truth)
    samples = wait_until(lambda: all_counted(url, streams), timeout=60, what="every generated run counted")
    for runtime, stream in streams.items():
        assert_matches(samples, PREFIX[runtime], stream.truth)
    assert total(samples, "letta_exporter_events_total", result="rejected") == rejected + resent_rejected
    assert total(samples, "letta_exporter_late_events_total") == 0


def test_the_endpoint_refuses_what_it_should(exporter: tuple[Process, str], tmp_path: Path) -> None:
    _process, url = exporter
    assert post(url, b"{}\n", token=None).status_code == 401
    assert post(url, b"{}\n", token="wrong").status_code == 401
    assert post(url, b"\x1f\x8b broken", token=TOKEN).status_code == 200  # not declared gzip: one bad line
    broken = httpx2.post(
        f"{url}/v1/events",
        content=b"\x1f\x8b\x08 broken",
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Encoding": "gzip"},
    )
    assert broken.status_code == 400 and "cannot be read" in broken.json()["error"]
    bomb = gzip.compress(b"\n" * (17 * 1024 * 1024))  # 17 MiB of newlines in ~17 kB
    too_big = post(url, bomb, zipped=False, token=TOKEN)
    assert too_big.status_code == 200  # not declared gzip: a single bad line
    declared = httpx2.post(
        f"{url}/v1/events", content=bomb, headers={"Authorization": f"Bearer {TOKEN}", "Content-Encoding": "gzip"}
    )
    assert declared.status_code == 413 and "--ingest-max-bytes" in declared.json()["error"]
    assert httpx2.get(f"{url}/v1/events", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 405
    chunked = httpx2.post(f"{url}/v1/events", content=iter([b"{}\n"]), headers={"Authorization": f"Bearer {TOKEN}"})
    assert chunked.status_code == 411  # a streamed body without Content-Length: refused, not read as empty
    off, off_url = start(tmp_path / "off.db", "--redis-url", "redis://127.0.0.1:1/0")
    try:
        assert post(off_url, b"{}\n").status_code == 404  # no --ingest-token: the endpoint is off
    finally:
        off.stop(signal.SIGKILL)


def test_redis_stream_survives_kill_9_mid_stream(tmp_path: Path) -> None:
    stream = generate(EventScenario("behest", seed=11, runs=600, duplicates=0.03, reorder_s=1.0, malformed=5))
    state = tmp_path / "state.db"
    with redis_server() as redis_url:
        client = redis.Redis.from_url(redis_url)
        process, url = start(state, "--redis-url", redis_url)
        try:
            pipe = client.pipeline(transaction=False)
            for line in stream.lines:
                pipe.xadd("behest:events", {"event": line.data})
            pipe.execute()

            def some_in() -> bool:
                return total(scrape(url), "letta_exporter_events_total", transport="redis") > len(stream.lines) / 4

            wait_until(some_in, timeout=60, what="a quarter of the stream consumed")
        finally:
            process.stop(signal.SIGKILL)  # mid-stream: some entries committed, some not yet acknowledged
        process, url = start(state, "--redis-url", redis_url)
        try:
            samples = wait_until(lambda: all_counted(url, {"behest": stream}), timeout=90, what="every run counted")
            assert_matches(samples, "behest", stream.truth)
            pending = client.xpending("behest:events", "letta-exporter")
            assert pending["pending"] == 0
        finally:
            process.stop()


def test_spans_per_run_only_for_the_runtimes_asked(tmp_path: Path) -> None:
    receiver = Receiver()
    port = receiver.start_http()
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}
    process, url = start(tmp_path / "state.db", "--ingest-token", TOKEN, "--event-spans", "behest", env=env)
    try:
        streams = {rt: generate(EventScenario(rt, seed=5, runs=40, silent=0.0)) for rt in ("behest", "agent_sdk")}
        for stream in streams.values():
            assert post(url, stream.body()).status_code == 200
        wait_until(lambda: all_counted(url, streams), timeout=60, what="every run counted")

        def run_spans() -> list[ReceivedSpan] | None:
            found = [s for s in receiver.snapshot() if s.name.startswith("invoke_agent")]
            return found if len(found) >= 40 else None

        runs = wait_until(run_spans, timeout=30, what="40 run spans")
    finally:
        process.stop(signal.SIGKILL)
        receiver.stop()
    assert len(runs) == 40  # none for agent-sdk: --event-spans leaves it out
    assert {str(s.attributes["behest.run.id"]) for s in runs} == set(streams["behest"].truth.run_ids)
    for span in runs:
        assert span.attributes["gen_ai.provider.name"] == "behest"
        assert span.trace_id == str(span.attributes["behest.run.id"]).replace("-", "")  # the run id's own bits
