"""An in-process simulated Letta for the simulator's own tests: its fake clock and an httpx client."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx2

from exporter.simulator import OUTCOMES, Scenario, SimulatedLetta
from exporter.simulator.clock import START, FakeClock

T0 = START


class Sim:
    """A simulator, its fake clock and an in-process httpx client."""

    def __init__(self, scenario: Scenario) -> None:
        self.clock = FakeClock()
        self.sim = SimulatedLetta(scenario, clock=self.clock)
        self.client = httpx2.Client(transport=httpx2.MockTransport(self.sim.handle), base_url="http://letta")

    def get(self, path: str, **params: Any) -> Any:
        response = self.client.get(path, params=params)
        assert response.status_code == 200, (path, response.status_code, response.text)
        return response.json()

    def runs(self, **params: Any) -> list[dict[str, Any]]:
        return list(self.get("/v1/runs/", limit=1000, **params))

    def steps(self, run_id: str) -> list[dict[str, Any]]:
        return list(self.get(f"/v1/runs/{run_id}/steps", order="asc"))

    def messages(self, run_id: str, **params: Any) -> list[dict[str, Any]]:
        return list(self.get(f"/v1/runs/{run_id}/messages", **({"limit": 1000} | params)))

    def terminal(self) -> list[dict[str, Any]]:
        return list(self.sim.truth()["terminal"])


@contextmanager
def factory() -> Iterator[Callable[..., Sim]]:
    """`make(**scenario)` → a new Sim; every client is closed on exit (the tests' `make` fixture)."""
    made: list[Sim] = []

    def make(**kwargs: Any) -> Sim:
        made.append(Sim(Scenario(**kwargs)))
        return made[-1]

    try:
        yield make
    finally:
        for sim in made:
            sim.client.close()


def only(outcome: str) -> dict[str, float]:
    return {name: float(name == outcome) for name in OUTCOMES}
