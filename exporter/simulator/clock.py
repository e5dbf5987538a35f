"""A fake clock for the simulator and the exporter alike: hours of traffic in seconds, deterministically."""

from __future__ import annotations

START = 1_800_000_000.0  # 2027-01-15: an epoch no real run of the tests' lifetime shares


class FakeClock:
    """An `exporter.types.Clock` that moves only when told to."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def no_sleep(seconds: float) -> None:
    """The client's retry back-off without waiting (the simulator answers at once)."""
