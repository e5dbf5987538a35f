"""The e2e tier: the exporter against real Letta servers (installed by tests/e2e/letta_server/install.sh).

Skipped, with the command that installs them, when a target's Letta is not installed; with
LETTA_E2E_REQUIRED=1 (CI) a missing install fails instead, so a green run cannot hide a skipped tier.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.e2e.letta_server.stack import LettaStack, Target

TARGETS = (Target("0.16.8", postgres=True), Target("0.11.7", postgres=False))
MARKER = "e2e: against a real Letta server (make test-e2e installs it into .tools/; skipped when not installed)"


def pytest_configure(config: pytest.Config) -> None:
    # --strict-markers: register it here until pyproject.toml's markers list has it.
    if not any(str(line).startswith("e2e:") for line in config.getini("markers")):
        config.addinivalue_line("markers", MARKER)


@pytest.fixture(params=TARGETS, ids=[f"letta-{t.version}" for t in TARGETS])
def letta(request: pytest.FixtureRequest) -> Iterator[LettaStack]:
    """PostgreSQL (0.12+) and the fake LLM started, Letta not yet; everything stopped afterwards."""
    target: Target = request.param
    if why := target.missing():
        if os.environ.get("LETTA_E2E_REQUIRED") == "1":
            pytest.fail(why, pytrace=False)
        pytest.skip(why)
    stack = LettaStack(target)
    try:
        stack.start()
        yield stack
    finally:
        stack.close()
