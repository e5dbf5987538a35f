"""The adaptive request limit: unit rules on a fake clock, then against a rate-limited server that
answers 429 above a fixed rate, over real time (six seconds), through the real client."""

from __future__ import annotations

import asyncio
import time

import httpx2

from exporter.letta import LettaClient
from exporter.letta.limit import AdaptiveLimit
from exporter.metrics import ExporterMetrics
from exporter.simulator.clock import FakeClock, no_sleep


def test_slow_start_doubles_per_round_trip_up_to_the_maximum() -> None:
    limit = AdaptiveLimit(maximum=64, initial=8, clock=FakeClock(), sleep=no_sleep)
    for expected in (16, 32, 64, 64):
        for _ in range(limit.limit):  # one round trip: every slot answers
            limit.succeeded(0.1)
        assert limit.limit == expected


def test_overload_halves_once_per_round_trip_then_growth_is_additive() -> None:
    clock = FakeClock()
    limit = AdaptiveLimit(maximum=64, initial=32, clock=clock, sleep=no_sleep)
    limit.succeeded(0.1)
    for _ in range(5):  # one burst of 5xx in the same round trip: one signal
        limit.overloaded(0.1)
    assert limit.limit == 16
    clock.now += 1.0
    limit.overloaded(0.1, rate_limited=True)  # a 429: 70 %
    assert limit.limit == 11
    for _ in range(11):  # congestion avoidance: +1 per round trip, not doubling
        limit.succeeded(0.1)
    assert limit.limit == 12


def test_growth_slows_near_where_trouble_began() -> None:
    clock = FakeClock()
    limit = AdaptiveLimit(maximum=64, initial=40, clock=clock, sleep=no_sleep)
    limit.succeeded(0.1)
    limit.overloaded(0.1, rate_limited=True)  # trouble at 41: back to 28.7
    answers = 0
    while limit.limit < 35:  # 85 % of 41: +1 per round trip (a limit's worth of answers)
        limit.succeeded(0.1)
        answers += 1
    assert 180 <= answers <= 230
    answers = 0
    while limit.limit < 36:  # above it: a quarter of that
        limit.succeeded(0.1)
        answers += 1
    assert 4 * 35 * 0.9 <= answers <= 4 * 36


def test_latency_rising_well_above_the_best_seen_backs_off() -> None:
    clock = FakeClock()
    limit = AdaptiveLimit(maximum=64, initial=20, clock=clock, sleep=no_sleep)
    limit.succeeded(0.1)
    clock.now += 1.0
    limit.succeeded(0.5)  # the server queues: 5x the best round trip
    assert limit.limit == 18  # 21 * 0.9


def test_retry_after_holds_back_every_new_request() -> None:
    clock = FakeClock()
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.now += seconds

    limit = AdaptiveLimit(maximum=8, clock=clock, sleep=sleep)
    limit.overloaded(0.05, retry_after=2.0)

    async def request() -> None:
        async with limit.slot():
            pass

    asyncio.run(request())
    assert slept == [2.0]
    asyncio.run(request())
    assert slept == [2.0]  # passed: no further wait


def test_a_rate_limited_server_is_held_just_under_its_rate_without_a_storm_of_429s() -> None:
    """Letta behind a gateway allowing RATE requests/s (token bucket), 100 ms away: the client must
    find the rate from the 429s alone and neither hammer it nor starve."""
    rate, burst, latency, seconds = 200.0, 20.0, 0.1, 6.0
    tokens, refilled = burst, time.monotonic()
    answers = {"ok": 0, "429": 0, "429 after the first second": 0}
    started = time.monotonic()

    async def gateway(request: httpx2.Request) -> httpx2.Response:
        nonlocal tokens, refilled
        await asyncio.sleep(latency)
        now = time.monotonic()
        tokens, refilled = min(burst, tokens + (now - refilled) * rate), now
        if tokens < 1:
            answers["429"] += 1
            answers["429 after the first second"] += now - started > 1.0
            return httpx2.Response(429, json={"detail": "rate limited"}, headers={"Retry-After": "0.05"})
        tokens -= 1
        answers["ok"] += 1
        return httpx2.Response(200, json={"id": "run-1"})

    async def drive() -> float:
        client = LettaClient("http://letta.test", ExporterMetrics(), transport=httpx2.MockTransport(gateway))
        started = time.monotonic()

        async def worker() -> None:
            while time.monotonic() - started < seconds:
                await client.get("/v1/runs/{run_id}", "/v1/runs/run-1")

        await asyncio.gather(*(worker() for _ in range(100)))  # far more demand than the rate allows
        elapsed = time.monotonic() - started
        await client.aclose()
        return elapsed

    elapsed = asyncio.run(drive())
    achieved = answers["ok"] / elapsed
    assert 0.7 * rate <= achieved <= 1.05 * rate + burst / elapsed, answers
    # slow start overshoots once; after that, a few probes, not a storm
    assert answers["429 after the first second"] <= 0.03 * answers["ok"], answers
    assert answers["429"] <= 0.08 * answers["ok"], answers
