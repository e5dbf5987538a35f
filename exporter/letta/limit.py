"""How many requests to Letta may be in flight: found by probing, like TCP's congestion window.

A fixed concurrency is wrong both ways: 4 requests in flight against a Letta 100 ms away cap the
exporter at ~40 requests/s (~11 finished runs/s), and 32 against a small self-hosted server can
overload it. `AdaptiveLimit` is AIMD with slow start — the limit doubles each round trip until
the first sign of trouble, then grows by one per round trip, and a quarter of that near the limit
where trouble last began (CUBIC's plateau: most time is spent just under a server's capacity). It
halves on 5xx and timeouts, drops to 70 % on a 429 (a rate limit is no failure of the server), at
most once per round trip so that one burst of errors is one signal, and backs off by 10 % when
latency rises well above the best seen (the server queueing); all bounded by `--max-concurrency`. AIMD rather than a
gradient limiter: Letta gives few clean latency signals (steps and list pages differ tenfold in
size), and halving on an explicit 429 is what a rate-limited API asks for. A `Retry-After` also
holds back every new request until it has passed, so a rate limit is met with silence, not a storm.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

PLATEAU = 0.85  # within this share of the limit where trouble last began, growth slows down
LATENCY_RISE = 3.0  # a round trip this many times the best recent one counts as congestion
LATENCY_FLOOR = 0.01  # seconds: below this no round trip counts as congestion (timer noise)
BEST_DECAY = 1.01  # per sample: the best latency drifts up, so a slower server is relearnt


class AdaptiveLimit:
    def __init__(
        self,
        maximum: int,
        initial: int = 8,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.maximum = maximum
        self._limit = float(min(initial, maximum))
        self._in_flight = 0
        self._slow_start = True
        self._ceiling = float(maximum)  # the limit at the last sign of trouble
        self._best: float | None = None
        self._last_decrease = -float("inf")
        self._paused_until = 0.0
        self._clock = clock
        self._sleep = sleep
        self._waiting: deque[asyncio.Future[None]] = deque()  # first come, first served

    @property
    def limit(self) -> int:
        return max(1, int(self._limit))

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one request slot for the duration of a request. A free slot costs no lock and no
        task switch (the event loop runs one coroutine at a time); a full limit queues the request."""
        wait = self._paused_until - self._clock()
        if wait > 0:
            await self._sleep(wait)
        if self._waiting or self._in_flight >= self.limit:
            handed = asyncio.get_running_loop().create_future()
            self._waiting.append(handed)
            try:
                await handed  # resolved with the slot already counted for us
            except asyncio.CancelledError:
                if handed.done() and not handed.cancelled():
                    self._release()  # handed a slot just as we were cancelled: pass it on
                raise
        else:
            self._in_flight += 1
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        self._in_flight -= 1
        while self._waiting and self._in_flight < self.limit:  # as many as may start: not every waiter
            handed = self._waiting.popleft()
            if not handed.done():
                self._in_flight += 1
                handed.set_result(None)

    def succeeded(self, seconds: float) -> None:
        """A good answer after `seconds`: grow, unless latency says the server is queueing."""
        best = self._best = seconds if self._best is None else min(self._best * BEST_DECAY, seconds)
        if seconds > LATENCY_RISE * best and seconds > LATENCY_FLOOR:
            self._decrease(seconds, factor=0.9)
            return
        if self._slow_start:
            step = 1.0  # +1 per answer: doubles per round trip
        else:
            step = 1 / self._limit  # +1 per round trip
            if self._limit >= PLATEAU * self._ceiling:
                step /= 4
        self._limit = min(self.maximum, self._limit + step)
        # a grown limit admits waiters when this request releases its slot

    def overloaded(self, seconds: float, retry_after: float | None = None, rate_limited: bool = False) -> None:
        """A 429 (`rate_limited`), a 5xx or a timeout: back off, and honour `Retry-After` for every request."""
        if retry_after:
            self._paused_until = max(self._paused_until, self._clock() + retry_after)
        self._decrease(seconds, factor=0.7 if rate_limited else 0.5)

    def _decrease(self, seconds: float, factor: float) -> None:
        now = self._clock()
        if now - self._last_decrease < max(seconds, self._best or 0.0):
            return  # the same round trip's errors: one signal
        self._last_decrease = now
        self._slow_start = False
        self._ceiling = self._limit
        self._limit = max(1.0, self._limit * factor)
