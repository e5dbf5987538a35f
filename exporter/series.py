"""Named counter and histogram series with capped labels, the state-store rows they are saved as,
and their `/metrics` families: what the run ledger and the GenAI instruments are made of.

Values live here rather than in prometheus_client instruments because they are committed in the
same state-store transaction that marks runs counted, and restored from it after a restart.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.samples import Exemplar

from exporter.types import OTHER, Clock

Row = tuple[str, tuple[str, ...], object]


@dataclass(frozen=True)
class Family:
    name: str
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] | None = None  # None: a counter
    capped: tuple[str, ...] = ()  # labels whose values come from data: folded to "other" past the cap
    per_agent: bool = False  # gains an agent_id label with --agent-labels


@dataclass
class _Histogram:
    counts: list[float]  # per bucket, not cumulative; the last one is +Inf
    sum: float = 0.0
    exemplars: list[Exemplar | None] = field(default_factory=list)

    def state(self) -> dict[str, object]:
        return {"counts": self.counts, "sum": self.sum}


class Series:
    """Named series, thread-safe: the poll loops write, the HTTP server collects."""

    def __init__(
        self,
        families: Mapping[str, Family],
        labels: Mapping[str, tuple[str, ...]] | None = None,
        *,
        max_series: int = 2000,
        on_drop: Callable[[str], None] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.families = dict(families)
        self.labels = dict(labels) if labels is not None else {name: f.labels for name, f in families.items()}
        self._lock = threading.Lock()
        self._counters: dict[tuple[str, tuple[str, ...]], float] = {}
        self._histograms: dict[tuple[str, tuple[str, ...]], _Histogram] = {}
        self._series_count: dict[str, int] = {}
        self._dirty: set[tuple[str, tuple[str, ...]]] = set()
        self._max_series = max_series
        self._on_drop = on_drop or (lambda _metric: None)
        self._clock = clock

    def _admit(
        self, name: str, labels: tuple[str, ...], store: Iterable[tuple[str, tuple[str, ...]]]
    ) -> tuple[str, ...]:
        """The labels to store under: past the series cap, data-derived labels fold to "other"."""
        family = self.families[name]
        if (name, labels) in store or not family.capped:
            return labels
        if self._series_count.get(name, 0) < self._max_series:
            self._series_count[name] = self._series_count.get(name, 0) + 1
            return labels
        self._on_drop(name)
        return tuple(OTHER if n in family.capped else v for n, v in zip(self.labels[name], labels, strict=True))

    def inc(self, name: str, labels: tuple[str, ...], amount: float = 1.0) -> None:
        with self._lock:
            key = (name, self._admit(name, labels, self._counters))
            self._counters[key] = self._counters.get(key, 0.0) + amount
            self._dirty.add(key)

    def _histogram(self, name: str, labels: tuple[str, ...]) -> _Histogram:
        key = (name, self._admit(name, labels, self._histograms))
        if key not in self._histograms:
            size = len(self.families[name].buckets or ()) + 1
            self._histograms[key] = _Histogram([0.0] * size, 0.0, [None] * size)
        self._dirty.add(key)
        return self._histograms[key]

    def observe(self, name: str, labels: tuple[str, ...], value: float, trace_id: str | None = None) -> None:
        buckets = self.families[name].buckets or ()
        with self._lock:
            histogram = self._histogram(name, labels)
            index = next((i for i, bound in enumerate(buckets) if value <= bound), len(buckets))
            histogram.counts[index] += 1
            histogram.sum += value
            if trace_id:
                when = self._clock() if self._clock else None
                histogram.exemplars[index] = Exemplar({"trace_id": trace_id}, value, when)

    def take_dirty(self) -> list[Row]:
        """Rows changed since the last call, for the state store's transaction."""
        with self._lock:
            rows: list[Row] = []
            for key in sorted(self._dirty):
                name, labels = key
                if key in self._counters:
                    rows.append((name, labels, self._counters[key]))
                else:
                    rows.append((name, labels, self._histograms[key].state()))
            self._dirty.clear()
            return rows

    def restore(self, rows: Iterable[Row]) -> list[tuple[str, tuple[str, ...]]]:
        """Saved series back; a series whose label set changed since (e.g. --agent-labels toggled,
        a bucket layout changed) starts afresh rather than being read under the wrong labels.
        Returns the series restored."""
        restored = []
        with self._lock:
            for name, labels, value in rows:
                if name not in self.families or len(labels) != len(self.labels[name]):
                    continue  # another's, or stored under other labels
                key = (name, labels)
                if isinstance(value, dict):
                    counts = [float(c) for c in value.get("counts", [])]
                    if len(counts) != len(self.families[name].buckets or ()) + 1:
                        continue
                    self._histograms[key] = _Histogram(counts, float(value.get("sum", 0.0)), [None] * len(counts))
                elif isinstance(value, int | float):
                    self._counters[key] = float(value)
                else:
                    continue
                restored.append(key)
            self._series_count = dict(Counter(name for name, _ in (*self._counters, *self._histograms)))
        return restored

    def value(self, name: str, labels: tuple[str, ...] = ()) -> float | None:
        """A counter's value or a histogram's count, for `check` output and tests."""
        with self._lock:
            if (name, labels) in self._counters:
                return self._counters[(name, labels)]
            histogram = self._histograms.get((name, labels))
            return sum(histogram.counts) if histogram else None

    def collect(self) -> Iterator[Metric]:
        """Built under the lock, yielded after it: a slow rendering must not hold up counting."""
        with self._lock:
            families = list(self._families())
        yield from families

    def _families(self) -> Iterator[Metric]:
        for name, family in self.families.items():
            if family.buckets is None:
                counter = CounterMetricFamily(name, family.help, labels=self.labels[name])
                for (metric, labels), total in self._counters.items():
                    if metric == name:
                        counter.add_metric(labels, total)
                yield counter
                continue
            histogram = HistogramMetricFamily(name, family.help, labels=self.labels[name])
            for (metric, labels), state in self._histograms.items():
                if metric != name:
                    continue
                cumulative, buckets = 0.0, []
                bounds = [*(repr(float(b)) for b in family.buckets), "+Inf"]
                for bound, count, exemplar in zip(bounds, state.counts, state.exemplars, strict=True):
                    cumulative += count
                    buckets.append((bound, cumulative, exemplar) if exemplar else (bound, cumulative))
                histogram.add_metric(labels, buckets, state.sum)
            yield histogram
