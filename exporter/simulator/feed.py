"""Generated event streams posted as time passes, like agent-runtime hosts would: the demo's feed."""

from __future__ import annotations

import logging
import threading
import time

import httpx2

from exporter.simulator.events import FORMATS, EventScenario, EventStream, generate
from exporter.types import EVENT_RUNTIMES, EventRuntime

log = logging.getLogger(__name__)
RUNS_PER_ROUND = 2000  # generated ahead at a time: a bounded amount of lines in memory


class EventFeed:
    """Posts each runtime's lines to `POST /v1/events` once their arrival time has come."""

    def __init__(self, url: str, token: str, runs_per_second: float = 0.5, seed: int = 1) -> None:
        self._url, self._token = f"{url}/v1/events", token
        self._rate, self._seed = runs_per_second, seed
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="event-feed", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _stream(self, runtime: EventRuntime, start: float, round_: int) -> EventStream:
        scenario = EventScenario(
            runtime,
            seed=self._seed * 1000 + round_,
            runs=RUNS_PER_ROUND,
            start=start,
            runs_per_second=self._rate,
            formats=FORMATS[runtime],  # every line format of the runtime
        )
        return generate(scenario)

    def _run(self) -> None:
        since = time.time()
        streams = {rt: self._stream(rt, since, 0) for rt in EVENT_RUNTIMES}
        rounds = dict.fromkeys(streams, 0)
        headers = {"Authorization": f"Bearer {self._token}", "Content-Type": "application/x-ndjson"}
        with httpx2.Client(timeout=10) as client:
            while not self._stop.wait(1.0):
                now = time.time()
                for runtime, stream in streams.items():
                    lines = stream.due(since, now)
                    if lines:
                        try:
                            client.post(self._url, content=b"\n".join(lines), headers=headers)
                        except httpx2.HTTPError as exc:
                            log.warning("demo event feed could not post", extra={"error": str(exc)})
                    if stream.lines and stream.lines[-1].at <= now:  # this round is over: the next one
                        rounds[runtime] += 1
                        streams[runtime] = self._stream(runtime, now, rounds[runtime])
                since = now
