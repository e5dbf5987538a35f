"""`/metrics` pushed as OTLP metrics to a real receiver (gRPC and HTTP, cumulative and delta): every
family, read back through the OpenTelemetry → Prometheus naming, equals the scrape of the same
publish; deltas add up to the totals, through a collector outage too."""

from __future__ import annotations

import signal
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.resources import Resource
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from exporter import semconv
from exporter.exposition import Snapshots
from exporter.metrics import ExporterMetrics
from exporter.otlp import OtlpConfigError
from exporter.otlp_metrics import MetricsPush, Serialiser, interval_from_env, metric_exporter_from_env
from exporter.semconv import GenAiInstruments
from exporter.server import MetricsServer, PollStatus
from tests.otlp_receiver import ReceivedPoint, Receiver
from tests.samples import finished_sample
from tests.support import FAST, Process, scrape, start_exporter, start_simulator, total, wait_until

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
RESOURCE = Resource({"service.name": "letta-exporter"})
START_NS = 1_700_000_000 * 10**9  # when the state file was first used


def exporter_for(protocol: str, port: int) -> MetricExporter:
    env = {
        "OTEL_METRICS_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "1",
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        made = metric_exporter_from_env()
    assert made is not None
    return made[0]


@pytest.fixture(params=["grpc", "http/protobuf"])
def receiver(request: pytest.FixtureRequest) -> Iterator[tuple[Receiver, str]]:
    r = Receiver()
    port = r.start_grpc() if request.param == "grpc" else r.start_http()
    try:
        yield r, f"{request.param}:{port}"
    finally:
        r.stop()


def connect(receiver: tuple[Receiver, str]) -> MetricExporter:
    protocol, port = receiver[1].rsplit(":", 1)
    return exporter_for(protocol, int(port))


def prometheus_view(points: list[ReceivedPoint]) -> Samples:
    """Received points as Prometheus samples, by the OpenTelemetry → Prometheus translation: a
    monotonic sum gains `_total`, a histogram becomes cumulative `_bucket`s, `_count`, `_sum`."""
    out: Samples = {}
    for p in points:
        labels = tuple(sorted((k.replace(".", "_"), str(v)) for k, v in p.attributes))
        name = p.metric.replace(".", "_")
        if p.unit == "s" and not name.endswith("_seconds"):
            name += "_seconds"
        if p.kind == "sum":
            out[(name + ("_total" if p.monotonic else ""), labels)] = p.value
        elif p.kind == "gauge":
            out[(name, labels)] = p.value
        else:
            running = 0.0
            for bound, count in zip([*p.explicit_bounds, float("inf")], p.bucket_counts, strict=True):
                running += count
                le = "+Inf" if bound == float("inf") else repr(float(bound))
                out[(name + "_bucket", tuple(sorted((*labels, ("le", le)))))] = running
            out[(name + "_count", labels)] = float(p.count)
            out[(name + "_sum", labels)] = p.value
    return out


def scraped(families: list[Metric]) -> Samples:
    """The `/metrics` text of the same collection, parsed back; `_created` has no OTLP twin (it is the start time)."""

    class Collected:
        def collect(self) -> Iterator[Metric]:
            return iter(families)

    text = generate_latest(Collected()).decode()
    return {
        (s.name, tuple(sorted((k, v) for k, v in s.labels.items() if v))): s.value  # label="" is no label
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if not s.name.endswith("_created")
    }


def busy_metrics(genai: GenAiInstruments | None = None) -> ExporterMetrics:
    metrics = ExporterMetrics(genai=genai)
    metrics.add_runtime("behest")
    metrics.ledger.record(finished_sample())
    metrics.api_request("/v1/runs/", "200", 0.02)
    return metrics


def last_export(receiver: Receiver) -> list[ReceivedPoint]:
    points = receiver.metric_points()
    return [p for p in points if p.request == points[-1].request]


def test_every_family_pushed_equals_the_scrape_of_the_same_publish(receiver: tuple[Receiver, str]) -> None:
    metrics = busy_metrics()
    families = list(metrics.registry.collect())
    serialiser = Serialiser(RESOURCE, start_ns=START_NS)
    exporter = connect(receiver)
    try:
        assert exporter.export(serialiser.serialise(families, time.time_ns())).name == "SUCCESS"
    finally:
        exporter.shutdown()
    points = receiver[0].metric_points()
    assert prometheus_view(points) == scraped(families)
    pushed = {p.metric for p in points}
    assert {"letta_runs_finished", "behest_runs_finished", "letta_run_duration_seconds", "letta_up"} <= pushed
    by_name = {p.metric: p for p in points}
    assert by_name["letta_runs_finished"].monotonic and by_name["letta_runs_finished"].temporality == 2
    assert by_name["letta_run_duration_seconds"].unit == "s" and by_name["letta_runs_active"].kind == "gauge"
    ledger_start = {p.start for p in points if p.metric == "letta_runs_finished"}
    assert ledger_start == {START_NS}  # the state file's first start: totals restored across restarts
    api = next(p for p in points if p.metric == "letta_exporter_api_requests")
    assert api.start > START_NS  # a process-lifetime counter starts at its own creation
    exemplars = [e for p in points if p.metric == "letta_run_duration_seconds" for e in p.exemplars]
    assert exemplars and all(value > 0 for value, _trace in exemplars)


def test_deltas_add_up_to_the_totals_through_a_failed_export(receiver: tuple[Receiver, str]) -> None:
    metrics = busy_metrics()
    serialiser = Serialiser(RESOURCE, start_ns=START_NS, delta=True)
    exporter = connect(receiver)
    r = receiver[0]

    def push() -> bool:
        families = list(metrics.registry.collect())
        ok = exporter.export(serialiser.serialise(families, time.time_ns())).name == "SUCCESS"
        if ok:
            serialiser.confirm()
        return ok

    try:
        assert push()
        metrics.ledger.record(finished_sample())
        r.failing = True
        assert not push()  # the collector is down: these increments are not lost ...
        r.failing = False
        metrics.ledger.record(finished_sample())
        assert push()  # ... they go out with the next export
    finally:
        exporter.shutdown()
    sums: defaultdict[tuple[str, tuple[tuple[str, str], ...]], float] = defaultdict(float)
    for p in r.metric_points():
        if p.kind == "sum":
            assert p.temporality == 1
            sums[(p.metric + "_total", tuple(sorted(p.attributes)))] += p.value
    final = scraped(list(metrics.registry.collect()))
    finished = {k: v for k, v in sums.items() if k[0] == "letta_runs_finished_total"}
    assert finished and all(final[k] == v for k, v in finished.items())
    assert sum(finished.values()) == 3


def test_an_outage_keeps_one_snapshot_and_counts_the_failures(receiver: tuple[Receiver, str]) -> None:
    metrics = busy_metrics()
    r = receiver[0]
    r.failing = True
    push = MetricsPush(
        connect(receiver), Serialiser(RESOURCE, start_ns=0), metrics.metric_exports_failed, interval=0.05
    )
    push.start()
    try:
        for _ in range(200):  # publishes keep coming while the collector is down
            metrics.ledger.record(finished_sample())
            push.offer(list(metrics.registry.collect()))
            assert push.waiting <= 1
        wait_until(
            lambda: (metrics.registry.get_sample_value("letta_exporter_otlp_metric_exports_failed_total") or 0) >= 2,
            what="failed exports counted",
        )
        r.failing = False
        families = list(metrics.registry.collect())
        push.offer(families)
        wait_until(lambda: r.metric_requests >= 1 and push.waiting == 0, what="an export after the outage")
    finally:
        push.close()
    view = prometheus_view(last_export(r))
    finished = [k for k in view if k[0] == "letta_runs_finished_total"]
    assert finished and all(view[k] == scraped(families)[k] for k in finished)  # cumulative totals whole


def test_the_genai_instruments_go_out_under_the_conventions_names(receiver: tuple[Receiver, str]) -> None:
    genai = GenAiInstruments()
    metrics = busy_metrics(genai)
    metrics.registry.register(genai)  # --semconv-metrics: on /metrics too
    families = list(metrics.registry.collect())
    exporter = connect(receiver)
    try:
        data = Serialiser(RESOURCE, start_ns=START_NS, names=semconv.otlp_names).serialise(families, time.time_ns())
        assert exporter.export(data).name == "SUCCESS"
    finally:
        exporter.shutdown()
    points = receiver[0].metric_points()
    assert prometheus_view(points) == scraped(families)  # the translation gives back the served names
    by_name = {p.metric: p for p in points}
    tokens = [p for p in points if p.metric == "gen_ai.client.token.usage"]
    assert {p.unit for p in tokens} == {"{token}"} and tokens[0].explicit_bounds == semconv.TOKEN_BUCKETS
    steps = finished_sample().steps
    used = {dict(p.attributes)["gen_ai.token.type"]: p.value for p in tokens}
    assert used == {"input": sum(s.input_tokens for s in steps), "output": sum(s.output_tokens for s in steps)}
    attributes = dict(tokens[0].attributes)
    assert attributes["gen_ai.operation.name"] == "chat" and attributes["gen_ai.provider.name"] == "openai"
    assert by_name["gen_ai.invoke_agent.duration"].count == 1
    assert dict(by_name["gen_ai.invoke_agent.duration"].attributes) == {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.provider.name": "letta",  # completed: no error.type
    }
    assert by_name["gen_ai.client.operation.duration"].explicit_bounds == semconv.DURATION_BUCKETS


def test_the_standard_variables_are_validated() -> None:
    assert metric_exporter_from_env({}) is None  # scraping stays the default
    assert metric_exporter_from_env({"OTEL_METRICS_EXPORTER": "none"}) is None
    with pytest.raises(OtlpConfigError, match="TEMPORALITY_PREFERENCE"):
        metric_exporter_from_env(
            {"OTEL_METRICS_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "x"}
        )
    with pytest.raises(OtlpConfigError, match="PROTOCOL"):
        metric_exporter_from_env({"OTEL_METRICS_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "http/json"})
    made = metric_exporter_from_env(
        {"OTEL_METRICS_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "lowmemory"}
    )
    assert made is not None and made[1] is True
    assert interval_from_env({"OTEL_METRIC_EXPORT_INTERVAL": "1500"}) == 1.5
    with pytest.raises(OtlpConfigError, match="INTERVAL"):
        interval_from_env({"OTEL_METRIC_EXPORT_INTERVAL": "soon"})


def test_a_publish_renders_the_collection_it_is_given() -> None:
    """What a publish serves and what it pushes are one collection, even if counting went on since."""
    metrics = busy_metrics()
    snapshots = Snapshots(metrics.registry, max_age=60)
    environ = {"REQUEST_METHOD": "GET", "HTTP_ACCEPT": "text/plain", "QUERY_STRING": ""}

    def served() -> Samples:
        body = b"".join(snapshots(environ, lambda *_: None))
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body.decode())
            for s in family.samples
            if not s.name.endswith("_created")
        }

    served()  # a scraper asked for the text format: publishes render it from now on
    families = list(metrics.registry.collect())
    metrics.ledger.record(finished_sample())  # counted after the collection
    snapshots.publish(families)
    assert served() == scraped(families)
    assert served() != scraped(list(metrics.registry.collect()))


@pytest.mark.integration
@pytest.mark.parametrize(("protocol", "temporality"), [("grpc", "cumulative"), ("http/protobuf", "delta")])
def test_a_running_exporter_pushes_what_it_serves(tmp_path: Path, protocol: str, temporality: str) -> None:
    r = Receiver()
    port = r.start_grpc() if protocol == "grpc" else r.start_http()
    env = {
        "OTEL_METRICS_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": f"http://127.0.0.1:{port}"
        + ("/v1/metrics" if protocol != "grpc" else ""),
        "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": protocol,
        "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": temporality,
        "OTEL_METRIC_EXPORT_INTERVAL": "300",
    }
    sim, sim_url = start_simulator(
        "--seed", "5", "--runs-per-second", "20", "--max-runs", "40", "--duration-scale", "0.05"
    )
    exporter: Process | None = None
    try:
        exporter, url = start_exporter(
            sim_url, *FAST, "--semconv-metrics", "--state-path", str(tmp_path / "s.db"), env=env
        )
        wait_until(lambda: total(scrape(url), "letta_runs_finished_total") >= 40, timeout=60, what="40 runs counted")
        wanted = ("letta_runs_", "letta_step", "letta_run_", "gen_ai_")
        served = {
            (name, tuple((k, v) for k, v in labels if v)): value
            for (name, labels), value in scrape(url).items()
            if name.startswith(wanted) and name.endswith(("_total", "_count", "_sum", "_bucket"))
        }
        want = r.metric_requests + 2  # two more pushes after the last run was counted
        assert r.wait_for_metric_requests(want, timeout=30)
    finally:
        if exporter is not None:
            exporter.stop(signal.SIGTERM)
        sim.stop()
        r.stop()
    points = r.metric_points()
    if temporality == "cumulative":
        view = prometheus_view(last_export(r))
    else:
        view = defaultdict(float)
        for p in points:
            for key, value in prometheus_view([p]).items():
                view[key] += value if p.kind != "gauge" else 0
    assert any(k[0].startswith("gen_ai_client_token_usage") for k in served)
    assert served and all(view.get(k) == pytest.approx(v) for k, v in served.items()), {
        k: (view.get(k), v) for k, v in served.items() if view.get(k) != pytest.approx(v)
    }


class Recording(MetricExporter):
    """A collector that takes everything, for the push timing."""

    def __init__(self) -> None:
        super().__init__()
        self.exports = 0

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: object) -> MetricExportResult:
        self.exports += 1
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: object) -> None:
        return None


def test_publishes_between_pushes_do_not_collect_for_the_push() -> None:
    metrics = busy_metrics()
    collector = Recording()
    push = MetricsPush(collector, Serialiser(RESOURCE, start_ns=START_NS), metrics.metric_exports_failed, interval=60)
    server = MetricsServer(metrics.registry, PollStatus(poll_interval=1), "-", "127.0.0.1", 0, push=push)
    server.start()
    push.start()
    try:
        assert push.wanted()
        server.publish()
        wait_until(lambda: collector.exports == 1, what="the first push")
        assert not push.wanted()  # the next is a minute away: publishes until then only render /metrics
        server.publish()
        assert push.waiting == 0
        server.publish(final=True)  # shutting down: the last values go out whatever the interval
        assert push.waiting == 1
    finally:
        push.close()
        server.close()
    assert collector.exports == 2


def test_deltas_after_a_restart_start_from_the_restored_totals(receiver: tuple[Receiver, str]) -> None:
    restored = busy_metrics()  # a new process whose ledger was restored with a run counted before
    serialiser = Serialiser(RESOURCE, start_ns=START_NS, delta=True)
    serialiser.prime(list(restored.registry.collect()), time.time_ns())
    restored.ledger.record(finished_sample())  # the one run this process counts
    exporter = connect(receiver)
    try:
        data = serialiser.serialise(list(restored.registry.collect()), time.time_ns())
        assert exporter.export(data).name == "SUCCESS"
    finally:
        exporter.shutdown()
    finished = [p for p in receiver[0].metric_points() if p.metric == "letta_runs_finished"]
    assert sum(p.value for p in finished) == 1  # not 2: the restored total went out from the last process


@pytest.mark.integration
def test_deltas_across_a_restart_add_up_to_the_totals(tmp_path: Path) -> None:
    r = Receiver()
    port = r.start_http()
    env = {
        "OTEL_METRICS_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
        "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "delta",
        "OTEL_METRIC_EXPORT_INTERVAL": "300",
    }
    state = str(tmp_path / "s.db")
    sim, sim_url = start_simulator(
        "--seed", "9", "--runs-per-second", "8", "--max-runs", "40", "--duration-scale", "0.05"
    )
    try:
        first, url = start_exporter(sim_url, *FAST, "--state-path", state, env=env)
        try:
            wait_until(lambda: total(scrape(url), "letta_runs_finished_total") >= 10, timeout=60, what="10 runs")
        finally:
            assert first.stop(signal.SIGTERM) == 0  # the last values are pushed on the way out
        second, url = start_exporter(sim_url, *FAST, "--state-path", state, env=env)
        try:
            wait_until(lambda: total(scrape(url), "letta_runs_finished_total") >= 40, timeout=60, what="40 runs")
            pushes = r.metric_requests
            assert r.wait_for_metric_requests(pushes + 2, timeout=30)
        finally:
            second.stop(signal.SIGTERM)
    finally:
        sim.stop()
        r.stop()
    finished = [p for p in r.metric_points() if p.metric == "letta_runs_finished"]
    assert {p.temporality for p in finished} == {1}
    assert sum(p.value for p in finished) == 40  # each run once, neither lost nor re-sent by the restart
