"""Generated event streams posted as time passes, like agent-runtime hosts would: the demo's feed,
and the live monitoring stack's (with `noisy` hosts: bad lines, unknown types, resent bodies)."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

import httpx2

from exporter.simulator.events import FORMATS, EventScenario, EventStream, generate
from exporter.types import EVENT_RUNTIMES, EventRuntime

log = logging.getLogger(__name__)
RUNS_PER_ROUND = 2000  # generated ahead at a time: a bounded amount of lines in memory
RESEND_AFTER = 5.0  # seconds: a noisy host posts one body in ten again, after its runs were counted


class EventFeed:
    """Posts each runtime's lines to `POST /v1/events` once their arrival time has come."""

    def __init__(
        self, url: str, token: str, runs_per_second: float = 0.5, seed: int = 1, *, noisy: bool = False
    ) -> None:
        self._url, self._token = f"{url}/v1/events", token
        self._rate, self._seed, self._noisy = runs_per_second, seed, noisy
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="event-feed", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _stream(self, runtime: EventRuntime, start: float, round_: int) -> EventStream:
        noise = RUNS_PER_ROUND // 20 if self._noisy else 0
        scenario = EventScenario(
            runtime,
            seed=self._seed * 1000 + round_,
            runs=RUNS_PER_ROUND,
            start=start,
            runs_per_second=self._rate,
            formats=FORMATS[runtime],  # every line format of the runtime
            malformed=noise,
            unknown_types=noise // 2,
            duplicates=0.02 if self._noisy else 0.0,
        )
        return generate(scenario)

    def _run(self) -> None:
        since = time.time()
        streams = {rt: self._stream(rt, since, 0) for rt in EVENT_RUNTIMES}
        rounds = dict.fromkeys(streams, 0)
        resends: deque[tuple[float, bytes]] = deque()
        headers = {"Authorization": f"Bearer {self._token}", "Content-Type": "application/x-ndjson"}
        with httpx2.Client(timeout=10) as client:
            while not self._stop.wait(1.0):
                now = time.time()
                bodies = [b"\n".join(lines) for lines in (s.due(since, now) for s in streams.values()) if lines]
                while resends and resends[0][0] <= now:
                    bodies.append(resends.popleft()[1])
                for number, body in enumerate(bodies):
                    try:
                        client.post(self._url, content=body, headers=headers)
                    except httpx2.HTTPError as exc:
                        log.warning("event feed could not post", extra={"error": str(exc)})
                    if self._noisy and (rounds["behest"] + int(now) + number) % 10 == 0:
                        resends.append((now + RESEND_AFTER, body))
                for runtime, stream in streams.items():
                    if stream.lines and stream.lines[-1].at <= now:  # this round is over: the next one
                        rounds[runtime] += 1
                        streams[runtime] = self._stream(runtime, now, rounds[runtime])
                since = now
