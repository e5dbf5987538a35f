"""Which agents get their own `agent_id` label value, and `letta_agent_info` for their names.

The label is the agent's id, never its name: a rename changes only `letta_agent_info`, so no
counter series splits. The set of labelled agents is bounded — the allowlist (ids or names), or
else the first `max_agents` seen — and it is rebuilt after a restart from the counter series the
ledger restores, so the same agents keep their series. Every other agent is `other`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence

from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from exporter.types import NONE, OTHER


class AgentLabels:
    """Thread-safe: the poll loop labels and learns names, the HTTP server collects."""

    def __init__(self, allowlist: Sequence[str] = (), max_agents: int = 50) -> None:
        self._lock = threading.Lock()
        self._allowlist = frozenset(allowlist)
        self._max_agents = max_agents
        self._labelled: set[str] = set()
        self._names: dict[str, str] = {}

    def learn(self, names: Mapping[str, str]) -> None:
        """The current id → name of agents (a listing, or names carried by events)."""
        with self._lock:
            self._names.update(names)

    def restore(self, agent_ids: Iterable[str]) -> None:
        """Agents that had series before a restart keep them (even past a shrunk --max-agents)."""
        with self._lock:
            self._labelled.update(a for a in agent_ids if a not in (OTHER, NONE))

    def label(self, agent_id: str | None) -> tuple[str, bool]:
        """The label value for a run of `agent_id`, and whether it was folded into `other`."""
        if not agent_id:
            return NONE, False
        with self._lock:
            if agent_id in self._labelled:
                return agent_id, False
            if self._allowlist:
                admitted = agent_id in self._allowlist or self._names.get(agent_id) in self._allowlist
            else:
                admitted = len(self._labelled) < self._max_agents
            if admitted:
                self._labelled.add(agent_id)
                return agent_id, False
            return OTHER, True

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "letta_agent_info",
            "1 for every labelled agent; joins names onto agent_id.",
            labels=["agent_id", "agent_name"],
        )
        with self._lock:
            for agent_id in sorted(self._labelled):
                info.add_metric([agent_id, self._names.get(agent_id, agent_id)], 1)
        yield info
