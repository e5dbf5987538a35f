"""exporter/events/redis.py against a real redis-server: every entry reaches the sink before it is
acknowledged, none stays pending, and faults are counted, logged without credentials and outlived."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis

from exporter.events import redis as redis_reader
from exporter.events.ingest import IngestResult
from exporter.events.redis import RedisReader, redact
from exporter.metrics import ExporterMetrics
from tests.support import free_port, redis_server, wait_until

pytestmark = pytest.mark.integration

STREAM, GROUP, CONSUMER = "behest:events", "letta-exporter", "exporter-0"


def event(n: int) -> bytes:
    body = {"run_id": f"run-{n}", "session_id": "s", "provider": "anthropic", "model": "m"}
    return json.dumps({"RunStarted": {**body, "timestamp": f"2026-06-26T09:00:0{n}.858110195Z"}}).encode()


class Crash(BaseException):
    """The process dying right after the sink committed, before XACK."""


class MemorySink:
    """Commits lines into a list (a line seen before is a duplicate, `{}` is rejected); thread-safe."""

    def __init__(self, crash_once: bool = False) -> None:
        self.lock = threading.Lock()
        self.batches: list[list[bytes]] = []
        self.results: list[IngestResult] = []
        self.crash_once = crash_once

    def accept(self, lines: list[bytes], transport: str) -> IngestResult:
        assert transport == "redis"
        with self.lock:
            seen = {line for batch in self.batches for line in batch}
            result = IngestResult()
            for line in lines:
                if line == b"{}":
                    result.rejected += 1
                elif line in seen:
                    result.duplicate += 1
                else:
                    result.accepted += 1
            self.batches.append(list(lines))
            self.results.append(result)
            if self.crash_once:
                self.crash_once = False
                raise Crash
        return result

    def lines(self) -> list[bytes]:
        with self.lock:
            return [line for batch in self.batches for line in batch]


class Background:
    """A reader's run() on an event loop of its own thread, so that the test thread can wait_until."""

    def __init__(self, reader: RedisReader) -> None:
        self.loop = asyncio.new_event_loop()
        self.stop = asyncio.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, args=(reader,), daemon=True)
        self.thread.start()

    def _main(self, reader: RedisReader) -> None:
        try:
            self.loop.run_until_complete(reader.run(self.stop))
        except BaseException as exc:
            self.error = exc
        finally:
            self.loop.close()

    def close(self, timeout: float = 5.0) -> float:
        """Sets stop; how long run() took to return."""
        started = time.monotonic()
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "run() did not return after stop"
        return time.monotonic() - started


@contextmanager
def reading(url: str, sink: MemorySink, metrics: ExporterMetrics | None = None, **kw: Any) -> Iterator[Background]:
    reader = RedisReader(url, sink, metrics or ExporterMetrics(), consumer=CONSUMER, block_ms=100, **kw)
    background = Background(reader)
    try:
        yield background
    finally:
        background.close()


def client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)


def group_ready(r: redis.Redis) -> bool:
    try:
        return any(g["name"] == GROUP.encode() for g in r.xinfo_groups(STREAM))
    except redis.ResponseError:  # no stream yet
        return False


def pending(r: redis.Redis) -> int:
    return int(r.xpending(STREAM, GROUP)["pending"])


def errors(metrics: ExporterMetrics) -> float:
    return metrics.registry.get_sample_value("letta_exporter_event_source_errors_total", {"transport": "redis"}) or 0


def test_new_entries_reach_the_sink_then_are_acknowledged_and_history_is_not_read() -> None:
    sink, metrics = MemorySink(), ExporterMetrics()
    with redis_server() as url:
        r = client(url)
        r.xadd(STREAM, {"event": event(0)})  # before the first start: history, not read (`$`)
        with reading(url, sink, metrics):
            wait_until(lambda: group_ready(r), what="the consumer group")
            for n in range(1, 4):
                r.xadd(STREAM, {"event": event(n)})
            wait_until(lambda: len(sink.lines()) == 3, what="3 lines in the sink")
            wait_until(lambda: pending(r) == 0, what="every entry acknowledged")
    assert sink.lines() == [event(1), event(2), event(3)]
    assert errors(metrics) == 0


def test_unreadable_entries_are_rejected_by_the_sink_and_acknowledged() -> None:
    sink = MemorySink()
    with redis_server() as url, reading(url, sink):
        r = client(url)
        wait_until(lambda: group_ready(r), what="the consumer group")
        r.xadd(STREAM, {"other": b"x"})
        r.xadd(STREAM, {"event": b""})
        r.xadd(STREAM, {"event": event(1)})
        wait_until(lambda: len(sink.lines()) == 3, what="3 lines in the sink")
        wait_until(lambda: pending(r) == 0, what="every entry acknowledged, the bad ones too")
    assert sink.lines() == [b"{}", b"{}", event(1)]
    assert sum(result.rejected for result in sink.results) == 2


def test_a_crash_between_commit_and_ack_redelivers_the_batch_first_after_restart() -> None:
    sink = MemorySink(crash_once=True)
    with redis_server() as url:
        r = client(url)
        with reading(url, sink) as first:
            wait_until(lambda: group_ready(r), what="the consumer group")
            with r.pipeline(transaction=True) as both:  # MULTI: one batch
                both.xadd(STREAM, {"event": event(1)})
                both.xadd(STREAM, {"event": event(2)})
                both.execute()
            wait_until(lambda: not first.thread.is_alive(), what="the reader to crash")
        assert isinstance(first.error, Crash)
        assert sink.batches == [[event(1), event(2)]] and pending(r) == 2  # committed, not acknowledged
        r.xadd(STREAM, {"event": event(3)})
        with reading(url, sink):
            wait_until(lambda: len(sink.lines()) == 5, what="the redelivery and the new entry")
            wait_until(lambda: pending(r) == 0, what="every entry acknowledged")
        assert sink.batches[1:] == [[event(1), event(2)], [event(3)]]  # own pending entries first
        assert sink.results[1].duplicate == 2  # the sink's dedupe, not the reader's


def test_a_pending_entry_trimmed_away_is_rejected_and_acknowledged_not_stuck() -> None:
    sink = MemorySink()
    with redis_server() as url:
        r = client(url)
        r.xgroup_create(STREAM, GROUP, "$", mkstream=True)
        first, second = r.xadd(STREAM, {"event": event(1)}), r.xadd(STREAM, {"event": event(2)})
        r.xreadgroup(GROUP, CONSUMER, {STREAM: ">"})  # delivered to this consumer, never acknowledged
        r.xdel(STREAM, first)
        with reading(url, sink):
            wait_until(lambda: pending(r) == 0, what="the pending entries acknowledged")
        assert sink.batches == [[b"{}", event(2)]]
        assert second


def test_redis_restarted_mid_run_is_counted_logged_once_and_outlived(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="exporter.events.redis")
    sink, metrics = MemorySink(), ExporterMetrics()
    port = free_port()
    with redis_server(port=port) as url, reading(url, sink, metrics) as background:
        r = client(url)
        wait_until(lambda: group_ready(r), what="the consumer group")
        r.xadd(STREAM, {"event": event(1)})
        wait_until(lambda: sink.lines() == [event(1)], what="the first event")
        r.shutdown(nosave=True)  # the server dies under a blocked XREADGROUP
        wait_until(lambda: errors(metrics) >= 2, what="failed reconnects to be counted")
        with redis_server(port=port):  # empty: the group is re-created at the new stream's end
            wait_until(lambda: group_ready(r), what="the consumer group again")
            r.xadd(STREAM, {"event": event(2)})
            wait_until(lambda: sink.lines() == [event(1), event(2)], what="the event after the restart")
            wait_until(lambda: pending(r) == 0, what="acknowledged")
            background.close()  # before this server goes too
    messages = [(rec.levelname, rec.getMessage()) for rec in caplog.records]
    assert messages.count(("WARNING", "redis event source failed; retrying with backoff")) == 1
    assert ("INFO", "redis: reading the event stream again") in messages


def test_a_deleted_group_is_recreated() -> None:
    sink, metrics = MemorySink(), ExporterMetrics()
    with redis_server() as url, reading(url, sink, metrics):
        r = client(url)
        wait_until(lambda: group_ready(r), what="the consumer group")
        r.delete(STREAM)
        wait_until(lambda: errors(metrics) >= 1, what="NOGROUP to be counted")
        wait_until(lambda: group_ready(r), what="the consumer group re-created")
        r.xadd(STREAM, {"event": event(1)})
        wait_until(lambda: sink.lines() == [event(1)], what="the event after re-creation")


def test_stop_is_prompt_while_blocked_and_while_backing_off(monkeypatch: pytest.MonkeyPatch) -> None:
    with redis_server() as url, reading(url, MemorySink()) as blocked:
        wait_until(lambda: group_ready(client(url)), what="the consumer group")
        assert blocked.close() < 0.1 + 0.5  # block_ms, plus slack for a loaded machine
    monkeypatch.setattr(redis_reader, "FIRST_BACKOFF", 10.0)
    metrics = ExporterMetrics()
    with reading(f"redis://127.0.0.1:{free_port()}/0", MemorySink(), metrics) as backing_off:
        wait_until(lambda: errors(metrics) == 1, what="the first failure")
        assert backing_off.close() < 0.5  # not the 5-10 s backoff


@pytest.mark.parametrize("userinfo", ["user:s3cret-pw@", ":s3cret-pw@"])
def test_credentials_are_never_logged(userinfo: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="exporter.events.redis")
    metrics = ExporterMetrics()
    with redis_server("--requirepass", "right-pw") as url:
        wrong = url.replace("//", f"//{userinfo}", 1)
        with reading(wrong, MemorySink(), metrics):
            wait_until(lambda: errors(metrics) >= 1, what="the authentication failure")
    record = next(rec for rec in caplog.records if rec.levelname == "WARNING")
    assert record.__dict__["url"] == wrong.replace("s3cret-pw", "***")
    assert "s3cret-pw" not in caplog.text and all("s3cret-pw" not in str(v) for v in record.__dict__.values())


def test_redact() -> None:
    assert redact("redis://:pw@host:6379/0") == "redis://:***@host:6379/0"
    assert redact("rediss://user:p@ss@host/1?password=pw2") == "rediss://user:***@host/1"
    assert redact("redis://host:6379") == "redis://host:6379"
    assert redact("unix:///run/redis.sock?password=pw") == "unix:///run/redis.sock"


def test_entries_a_vanished_consumer_left_pending_are_taken_over(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(redis_reader, "CLAIM_IDLE_MS", 200)
    with redis_server() as url:
        r = client(url)
        r.xgroup_create(STREAM, GROUP, "$", mkstream=True)
        r.xadd(STREAM, {"event": event(1)})
        r.xadd(STREAM, {"event": event(2)})
        r.xreadgroup(GROUP, "old-pod-7f9c", {STREAM: ">"})  # read, never acknowledged: that pod is gone
        wait_until(
            lambda: all(int(e["time_since_delivered"]) >= 200 for e in r.xpending_range(STREAM, GROUP, "-", "+", 10)),
            what="the entries idle past CLAIM_IDLE_MS",
        )
        sink = MemorySink()
        with reading(url, sink):
            wait_until(lambda: sink.lines() == [event(1), event(2)], timeout=10, what="the old pod's entries")
            wait_until(lambda: pending(r) == 0, timeout=10, what="acknowledged")
