"""OTLP metric pushes: the cost of one push against the `/metrics` rendering of the same registry,
and memory through a collector outage against the size of one snapshot, measured in the same run.

The registry holds `--runs` finished runs over many models (thousands of series). A push is
`Serialiser.serialise` plus the SDK's protobuf encoding (what the exporter sends); the baseline
is `generate_latest`, what a scrape costs. Then a push thread whose collector is down is offered a
new snapshot `--offers` times: traced memory (tracemalloc) must stay at about one snapshot.

    python -m bench.metrics_push [--runs 5000] [--offers 300]
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from collections.abc import Sequence

from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.resources import Resource
from prometheus_client.exposition import generate_latest

from bench.common import Figure, progress
from exporter.metrics import ExporterMetrics
from exporter.model import FinishedRun
from exporter.otlp_metrics import MetricsPush, Serialiser
from exporter.semconv import GenAiInstruments, otlp_names
from tests.samples import finished_sample


class Down(MetricExporter):
    """A collector that is away: every export fails at once."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: object) -> MetricExportResult:
        self.calls += 1
        return MetricExportResult.FAILURE

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: object) -> None:
        return None


def _registry(runs: int) -> ExporterMetrics:
    metrics = ExporterMetrics(genai=GenAiInstruments())
    base = finished_sample()
    for i in range(runs):
        steps = tuple(s.model_copy(update={"model": f"model-{i % 500}", "id": f"{s.id}-{i}"}) for s in base.steps)
        timings = {steps[0].id: next(iter(base.step_metrics.values()))}
        metrics.ledger.record(FinishedRun(run=base.run, status=base.status, steps=steps, step_metrics=timings))
    return metrics


def _best(repeat: int, action: object) -> float:
    assert callable(action)
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - started)
    return best


def measure(runs: int, offers: int, repeat: int = 5) -> list[Figure]:
    progress(f"metrics push: {runs:,} runs over 500 models")
    metrics = _registry(runs)
    registry = metrics.registry
    genai = metrics.genai
    assert genai is not None
    serialiser = Serialiser(Resource({"service.name": "bench"}), start_ns=0, names=otlp_names)
    families = [*registry.collect(), *genai.collect()]
    series = sum(len(f.samples) for f in families)
    scrape = _best(repeat, lambda: generate_latest(registry))
    push = _best(repeat, lambda: encode_metrics(serialiser.serialise([*registry.collect(), *genai.collect()], 0)))
    progress(f"metrics push: {offers} snapshots offered to a collector that is down")
    down = Down()
    pusher = MetricsPush(down, serialiser, metrics.metric_exports_failed, interval=0.0)
    pusher.start()
    tracemalloc.start()
    snapshot_started = tracemalloc.get_traced_memory()[0]
    one = [*registry.collect(), *genai.collect()]
    one_snapshot = tracemalloc.get_traced_memory()[0] - snapshot_started
    del one
    baseline = tracemalloc.get_traced_memory()[0]
    for _ in range(offers):
        pusher.offer([*registry.collect(), *genai.collect()])
    _, peak = tracemalloc.get_traced_memory()
    held = tracemalloc.get_traced_memory()[0] - baseline
    tracemalloc.stop()
    pusher.close()
    detail = {"runs": runs, "series": series, "offers": offers, "failed_pushes": down.calls}
    return [
        Figure(
            "metrics_push_vs_scrape",
            "OTLP metric push (serialise + encode) ÷ /metrics rendering",
            push / scrape,
            "ratio",
            None,
            f"{push * 1e3:.1f} vs {scrape * 1e3:.1f} ms for {series:,} samples, best of {repeat}",
            {**detail, "push_s": push, "scrape_s": scrape},
            "lower",
        ),
        Figure(
            "metrics_push_outage_memory",
            "memory held through a collector outage ÷ one snapshot",
            max(held, 0) / one_snapshot,
            "ratio",
            None,
            f"{max(held, 0) / 1e6:.1f} MB held (peak {(peak - baseline) / 1e6:.1f} MB) after {offers} snapshots "
            f"of {one_snapshot / 1e6:.1f} MB, {down.calls} failed pushes",
            {**detail, "held_bytes": held, "peak_bytes": peak - baseline, "snapshot_bytes": one_snapshot},
            "lower",
        ),
    ]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=5000)
    parser.add_argument("--offers", type=int, default=300)
    args = parser.parse_args(argv)
    for figure in measure(args.runs, args.offers):
        print(f"{figure.label}: {figure.value:.3f} ({figure.basis})")


if __name__ == "__main__":
    main()
