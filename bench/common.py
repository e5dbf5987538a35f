"""What every bench section shares: the fake clock, pre-rendered simulator answers, a request meter,
the exporter wired in-process, and the `Figure` each section reports.

Figures are ratios or values measured within one run (machines are noisy), so these helpers only
measure; each section decides what is compared with what.
"""

from __future__ import annotations

import asyncio
import os
import platform
import re
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
from prometheus_client import CollectorRegistry

from exporter.app import letta_loop
from exporter.letta import LettaClient, LettaSettings
from exporter.loop import PollLoop
from exporter.metrics import ExporterMetrics
from exporter.otlp import SpanDelivery
from exporter.simulator.clock import no_sleep
from exporter.state import StateStore

ROOT = Path(__file__).resolve().parent.parent
LETTA_URL = "http://letta.bench"
Handler = Callable[[httpx2.Request], httpx2.Response]
_STARTED = time.monotonic()
_IDS = re.compile(r"/(run|step|agent)-[0-9a-f-]{36}")


def progress(message: str) -> None:
    """Long phases say what they are doing on stderr; stdout carries only results."""
    print(f"[bench {time.monotonic() - _STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


def template(path: str) -> str:
    """A request path as its route template, e.g. /v1/runs/{run_id}/steps."""
    return _IDS.sub(lambda m: f"/{{{m.group(1)}_id}}", path)


class Replay:
    """Simulator answers rendered once, then served from memory: keeps the simulator's own cost out
    of timed passes. The fake clock must stand still, so that an answer never goes stale. Misses
    (a URL not rendered yet) go to the simulator; their time is recorded so that it can be subtracted."""

    def __init__(self, handle: Handler) -> None:
        self._handle = handle
        self._answers: dict[tuple[str, str], tuple[int, list[tuple[str, str]], bytes]] = {}
        self.misses = 0
        self.miss_seconds = 0.0

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        key = (request.method, str(request.url))
        answer = self._answers.get(key)
        if answer is None:
            started = time.perf_counter()
            response = self._handle(request)
            answer = (response.status_code, list(response.headers.multi_items()), response.content)
            self._answers[key] = answer
            self.misses += 1
            self.miss_seconds += time.perf_counter() - started
        return httpx2.Response(answer[0], headers=answer[1], content=answer[2])


class Meter:
    """Requests and response-body bytes by route template, in front of any handler."""

    def __init__(self, handle: Handler) -> None:
        self._handle = handle
        self.requests: Counter[str] = Counter()
        self.bytes: Counter[str] = Counter()

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        response = self._handle(request)
        route = template(request.url.path)
        self.requests[route] += 1
        self.bytes[route] += len(response.content)
        return response

    def totals(self) -> tuple[int, int]:
        return sum(self.requests.values()), sum(self.bytes.values())


@dataclass
class Exporter:
    """The pieces `exporter.app.run` wires together, in-process against one handler."""

    metrics: ExporterMetrics
    client: LettaClient
    store: StateStore
    loop: PollLoop
    delivery: SpanDelivery | None = None

    def poll(self) -> bool:
        return asyncio.run(self.loop.poll())

    def close(self) -> None:
        if self.delivery is not None:
            self.delivery.close()
        asyncio.run(self.client.aclose())
        self.store.close()


def make_exporter(
    handle: Handler,
    clock: Callable[[], float],
    settings: LettaSettings,
    state_path: str = ":memory:",
    metrics: ExporterMetrics | None = None,
    spans: Callable[[StateStore, ExporterMetrics], SpanDelivery] | None = None,
) -> Exporter:
    metrics = metrics or ExporterMetrics()
    client = LettaClient(LETTA_URL, metrics, transport=httpx2.MockTransport(handle), sleep=no_sleep)
    store = StateStore(state_path)
    delivery = spans(store, metrics) if spans else None
    if delivery is not None:
        delivery.start()
    loop = letta_loop(client, store, metrics, settings, spans=delivery, clock=clock)
    return Exporter(metrics, client, store, loop, delivery)


def total(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """Sum of the samples called `name` whose labels include `labels`."""
    return sum(
        sample.value
        for metric in registry.collect()
        for sample in metric.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def by_label(registry: CollectorRegistry, name: str, label: str) -> Counter[str]:
    """Counter samples called `name` (whole counts), summed by one label's value."""
    out: Counter[str] = Counter()
    for metric in registry.collect():
        for sample in metric.samples:
            if sample.name == name:
                out[sample.labels[label]] += int(sample.value)
    return out


@dataclass(frozen=True)
class Target:
    op: str  # ">=" or "<="
    value: float

    def met(self, value: float) -> bool:
        return value >= self.value if self.op == ">=" else value <= self.value

    def __str__(self) -> str:
        return f"{'≥' if self.op == '>=' else '≤'} {self.value:g}"


@dataclass
class Figure:
    """One row of the table and one entry of the JSON: a value, its unit, its target (None: shown
    for information), and the measured numbers it was computed from."""

    key: str
    label: str
    value: float
    unit: str
    target: Target | None
    basis: str
    detail: dict[str, Any] = field(default_factory=dict)
    better: str = ""  # "higher" or "lower"; from the target when there is one

    def __post_init__(self) -> None:
        if not self.better:
            assert self.target is not None, f"{self.key}: say which way is better"
            self.better = "higher" if self.target.op == ">=" else "lower"

    @property
    def passed(self) -> bool | None:
        return None if self.target is None else self.target.met(self.value)

    def shown(self) -> str:
        return show(self.value, self.unit)

    def json(self) -> dict[str, Any]:
        target = None if self.target is None else {"op": self.target.op, "value": self.target.value}
        return {
            "label": self.label,
            "value": round(self.value, 6),
            "unit": self.unit,
            "target": target,
            "better": self.better,
            "pass": self.passed,
            "basis": self.basis,
            "detail": self.detail,
        }


def show(value: float, unit: str) -> str:
    if unit == "x":
        return f"{value:,.0f}x" if value >= 100 else f"{value:.1f}x"
    if unit == "ratio":
        return f"{value:.2f}"
    if unit == "%":
        return f"{value:+.1f} %"
    if unit in ("ms", "MB"):
        return f"{value:.1f} {unit}"
    if unit == "s":
        return f"{value:.2f} s"
    return f"{value:.2f} {unit}".strip()


def quantile(values: list[float], q: float) -> float:
    """Nearest-rank quantile (no interpolation: every reported latency was observed)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.999999) - 1))]


def rss_mb() -> tuple[float, float]:
    """(VmRSS, VmHWM) of this process in MB (Linux /proc)."""
    fields: dict[str, float] = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(rest.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        cpu = next(
            (
                line.split(":", 1)[1].strip()
                for line in cpuinfo.read_text().splitlines()
                if line.startswith("model name")
            ),
            cpu,
        )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "system": f"{platform.system()} {platform.release()} {platform.machine()}",
    }
