"""behest's Redis Stream into the ingest sink, through a consumer group (docs/event-sources.md §1).

Exactly once: a batch is acknowledged only after the sink committed it. A crash in between leaves it
pending; this consumer reads its own pending entries first after every (re)connect, and the sink drops
what it already holds as duplicates.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import time
from typing import cast
from urllib.parse import urlsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from exporter.events.ingest import Sink
from exporter.metrics import ExporterMetrics

log = logging.getLogger(__name__)

TRANSPORT = "redis"
FIELD = b"event"
# An entry without a usable `event` field (a trimmed pending entry has no fields at all) is handed on as
# a JSON object of no known format: the sink rejects and counts it, and it is acknowledged like the rest.
# Not an empty line, which a line reader may skip as padding, and so never count.
UNREADABLE = b"{}"
FIRST_BACKOFF = 0.25  # seconds, doubled per consecutive failure up to max_backoff
CLAIM_IDLE_MS = 60_000  # another consumer's entry pending this long: its reader died (a replaced pod)
CLAIM_EVERY = 60.0  # seconds between looks for such entries

Entries = list[tuple[bytes, dict[bytes, bytes]]]


def redact(url: str) -> str:
    """The URL as it may be logged: no password, no query (redis-py also takes `?password=`)."""
    parts = urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    user, colon, _ = userinfo.partition(":")
    return f"{parts.scheme}://{user}{':***' if colon else ''}{at}{host}{parts.path}"


class RedisReader:
    """Reads `stream` as consumer `consumer` of `group` into `sink`, one batch at a time; run() once
    (it closes the client). `consumer` must outlive restarts: only its own pending entries are reread."""

    def __init__(
        self,
        url: str,
        sink: Sink,
        metrics: ExporterMetrics,
        *,
        stream: str = "behest:events",
        group: str = "letta-exporter",
        consumer: str | None = None,
        batch: int = 500,
        block_ms: int = 1000,
        max_backoff: float = 30.0,
    ) -> None:
        self.url, self.sink, self.metrics = url, sink, metrics
        self.stream, self.group, self.consumer = stream, group, consumer or socket.gethostname()
        self.batch, self.block_ms, self.max_backoff = batch, block_ms, max_backoff
        self._failures = 0
        # Made here so that a malformed URL fails at start-up. redis-py's own retries are off: run() is
        # the one place that retries, counts and backs off. The socket timeout only bounds a read from a
        # server that hangs (BLOCK ends by itself). legacy_responses=False: XREADGROUP answers
        # {stream: [(id, fields)]} whatever the protocol.
        self._client = Redis.from_url(
            url,
            retry=Retry(NoBackoff(), 0),
            socket_connect_timeout=5,
            socket_timeout=block_ms / 1000 + 5,
            legacy_responses=False,
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Read until `stop` is set (then return within one read or one batch) and close the connection.
        Never raises for Redis faults: they are counted, logged once per outage and retried."""
        try:
            while not stop.is_set():
                try:
                    await self._create_group()
                    await self._consume(stop)
                except RedisError as exc:
                    if str(exc).startswith("NOGROUP"):  # stream or group deleted while running
                        self.metrics.event_source_errors.labels(TRANSPORT).inc()
                        log.warning("redis: consumer group gone; re-creating it", extra=self._where())
                        continue
                    await self._failed(exc, stop)
                except Exception as exc:  # the sink's (its disk, a bug): nothing acknowledged, so redelivered
                    await self._failed(exc, stop)
        finally:
            await self._client.aclose()

    async def _create_group(self) -> None:
        """At the stream's end (`$`): history before the first start is not counted, as with Letta."""
        try:
            await self._client.xgroup_create(self.stream, self.group, "$", mkstream=True)
        except RedisError as exc:
            if not str(exc).startswith("BUSYGROUP"):
                raise

    async def _consume(self, stop: asyncio.Event) -> None:
        """This consumer's pending entries first (id `0` onwards, unblocked), then new ones (`>`)."""
        cursor: bytes | str = b"0"
        next_claim = 0.0
        while not stop.is_set():
            if cursor == ">" and time.monotonic() >= next_claim:
                next_claim = time.monotonic() + CLAIM_EVERY
                if await self._claim_abandoned():
                    cursor = b"0"  # now ours: read as our own pending entries
            pending = cursor != ">"
            response = await self._client.xreadgroup(
                self.group,
                self.consumer,
                {self.stream: cursor},
                count=self.batch,
                block=None if pending else self.block_ms,
            )
            if self._failures:
                log.info("redis: reading the event stream again", extra={"failed_attempts": self._failures})
                self._failures = 0
            entries = next(iter(cast(dict[bytes, Entries], response).values()), [])
            if not entries:
                cursor = ">"
                continue
            lines = [
                value if isinstance(value := fields.get(FIELD), bytes) and value else UNREADABLE
                for _, fields in entries
            ]
            await asyncio.to_thread(self.sink.accept, lines, TRANSPORT)  # blocks until committed
            await self._client.xack(self.stream, self.group, *(entry_id for entry_id, _ in entries))
            if pending:
                cursor = entries[-1][0]

    async def _claim_abandoned(self) -> int:
        """Take over entries another consumer left pending for CLAIM_IDLE_MS: under a Deployment a
        restarted exporter has a new name, and the old one's pending entries would wait forever."""
        claimed, start = 0, b"0-0"
        while True:
            answer = await self._client.xautoclaim(
                self.stream, self.group, self.consumer, CLAIM_IDLE_MS, start, count=self.batch
            )  # [next start, [(id, fields)], [deleted ids]]: justid answers without the next start
            start, entries = cast(tuple[bytes, Entries], (answer[0], answer[1]))
            claimed += len(entries)
            if start == b"0-0":
                break
        if claimed:
            log.info("redis: took over entries an earlier consumer left pending", extra={"entries": claimed})
        return claimed

    async def _failed(self, exc: Exception, stop: asyncio.Event) -> None:
        self.metrics.event_source_errors.labels(TRANSPORT).inc()
        self._failures += 1
        if self._failures == 1:
            log.warning(
                "redis event source failed; retrying with backoff",
                extra={**self._where(), "error": f"{type(exc).__name__}: {exc}"},
                exc_info=not isinstance(exc, RedisError),  # a sink fault: its traceback is the clue
            )
        delay = min(self.max_backoff, FIRST_BACKOFF * 2 ** min(self._failures - 1, 16))
        with contextlib.suppress(TimeoutError):  # full jitter's upper half: readers do not retry in step
            await asyncio.wait_for(stop.wait(), delay * random.uniform(0.5, 1.0))

    def _where(self) -> dict[str, str]:
        return {"url": redact(self.url), "stream": self.stream, "group": self.group, "consumer": self.consumer}
