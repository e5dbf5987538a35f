"""Shared fixtures. `stack`: simulator → exporter → a real Prometheus, started once per test session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.stack import Stack, letta_stack
from tests.support import tool


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The simulator, the exporter and a real Prometheus (Debian's package, from scripts/install-tools.sh)."""
    prometheus = tool("prometheus")
    if prometheus is None:
        pytest.skip("prometheus is not installed: run `make tools` (scripts/install-tools.sh)")
    with letta_stack(tmp_path_factory.mktemp("prometheus"), prometheus) as running:
        yield running
