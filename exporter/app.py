"""Wires the pieces together and runs the poll loop until asked to stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx2

from exporter import semconv, webconfig
from exporter.agents import AgentLabels
from exporter.config import Settings
from exporter.events.http import EventsEndpoint
from exporter.events.ingest import Ingest
from exporter.events.redis import RedisReader
from exporter.events.source import EventSource
from exporter.letta import LettaClient, LettaPoller, LettaSettings
from exporter.lifecycle import RunLifecycle
from exporter.loop import PollLoop
from exporter.metrics import ExporterMetrics
from exporter.otlp import SpanDelivery, exporter_from_env
from exporter.otlp_metrics import MetricsPush, Serialiser, interval_from_env, metric_exporter_from_env
from exporter.pricing import PriceTable
from exporter.semconv import GenAiInstruments
from exporter.server import MetricsServer, PollStatus
from exporter.spans import default_resource
from exporter.state import SavedState, StateStore
from exporter.types import EVENT_RUNTIMES, Clock

log = logging.getLogger(__name__)
EVENT_SWEEP_EVERY = 1.0  # seconds between looks at the stored events (a cheap query)
SNAPSHOT_MAX_AGE = 30.0  # seconds (at least two poll intervals) a /metrics rendering is served during a long poll


def letta_settings(settings: Settings, spans: bool) -> LettaSettings:
    return LettaSettings(
        page_size=settings.page_size,
        expire_after=settings.expire_after,
        backfill=settings.backfill,
        max_catchup=settings.max_catchup,
        step_timings=settings.step_timings,
        first_recheck=settings.poll_interval,
        agent_names=spans,
        tool_metrics=settings.tool_metrics,
    )


def letta_loop(
    client: LettaClient,
    store: StateStore,
    metrics: ExporterMetrics,
    settings: LettaSettings,
    *,
    stuck_after: float = 900.0,
    spans: SpanDelivery | None = None,
    clock: Clock = time.time,
    on_checkpoint: Callable[[], None] = lambda: None,
    saved: SavedState | None = None,
) -> PollLoop:
    """The poll loop over Letta, resumed from the state file (`saved`, if read already): its runs,
    watermark and counter values."""
    saved = saved or store.load()
    metrics.ledger.restore(saved.series)
    lifecycle = RunLifecycle({k: r for k, r in saved.runs.items() if ":" not in k}, saved.watermark)
    poller = LettaPoller(client, lifecycle, metrics, settings, clock=clock)
    return PollLoop(
        poller,
        lifecycle,
        store,
        metrics,
        stuck_after=stuck_after,
        spans=spans,
        clock=clock,
        on_checkpoint=on_checkpoint,
    )


def event_loops(
    store: StateStore,
    metrics: ExporterMetrics,
    settings: Settings,
    *,
    spans: SpanDelivery | None = None,
    clock: Clock = time.time,
    on_checkpoint: Callable[[], None] = lambda: None,
    saved: SavedState | None = None,
) -> list[PollLoop]:
    """One poll loop per event runtime over the events stored for it, resumed from the state file
    (`saved`, if read already)."""
    saved = saved or store.load()
    loops = []
    for runtime in EVENT_RUNTIMES:
        family = metrics.runtimes.get(runtime) or metrics.add_runtime(runtime)
        family.ledger.restore(saved.series)
        lifecycle = RunLifecycle({k: r for k, r in saved.runs.items() if k.startswith(runtime + ":")})
        source = EventSource(
            runtime,
            store,
            lifecycle,
            metrics,
            settle=settings.event_settle,
            idle_expire=settings.event_idle_expire_after,
            clock=clock,
        )
        loops.append(
            PollLoop(
                source,
                lifecycle,
                store,
                metrics,
                stuck_after=settings.stuck_after,
                spans=spans if runtime in settings.event_spans else None,
                clock=clock,
                on_checkpoint=on_checkpoint,
                runtime=family,
            )
        )
    return loops


def make_metrics(settings: Settings, genai: bool = False) -> ExporterMetrics:
    """The registry with the breakdowns the settings ask for (the price table is read here);
    `genai`: count the GenAI instruments (pushed over OTLP), served too with --semconv-metrics."""
    agents = AgentLabels(settings.agent_allowlist, settings.max_agents) if settings.agent_labels else None
    prices = PriceTable.load(Path(settings.price_table) if settings.price_table else None) if settings.cost else None
    instruments = GenAiInstruments() if genai or settings.semconv_metrics else None
    metrics = ExporterMetrics(agents=agents, prices=prices, tools=settings.tool_metrics, genai=instruments)
    if instruments is not None and settings.semconv_metrics:
        metrics.registry.register(instruments)
    return metrics


def make_client(
    settings: Settings, metrics: ExporterMetrics, transport: httpx2.AsyncBaseTransport | None = None
) -> LettaClient:
    return LettaClient(
        settings.letta_url,
        metrics,
        api_key=settings.letta_api_key,
        project=settings.letta_project,
        timeout=settings.request_timeout,
        max_backoff=min(30.0, settings.poll_interval),
        transport=transport,
        max_concurrency=settings.max_concurrency,
    )


async def run(settings: Settings, on_ready: Callable[[int], None] | None = None) -> None:
    """Serve and poll until SIGTERM/SIGINT; state is committed before returning."""
    if settings.reset_state and settings.state_path != ":memory:":
        for suffix in ("", "-wal", "-shm"):
            Path(settings.state_path + suffix).unlink(missing_ok=True)
    # everything that can be misconfigured is checked before anything starts
    span_exporter = exporter_from_env()
    pushed = metric_exporter_from_env()
    push_every = interval_from_env() if pushed is not None else 0.0
    web = webconfig.load(settings.web_config_file) if settings.web_config_file else None
    store = StateStore(settings.state_path)
    metrics = make_metrics(settings, genai=pushed is not None)
    client = make_client(settings, metrics)
    delivery = None
    if span_exporter is not None:
        delivery = SpanDelivery(
            span_exporter,
            store,
            metrics,
            default_resource(),
            max_queued_runs=settings.otlp_queue_size,
            max_pending_runs=settings.otlp_max_pending,
        )
        delivery.start()
    metrics_push = None
    if pushed is not None:
        metric_exporter, delta = pushed
        start_ns = int(store.first_started() * 1e9)
        serialiser = Serialiser(default_resource(), start_ns=start_ns, delta=delta, names=semconv.otlp_names)
        hidden = metrics.genai if metrics.genai is not None and not settings.semconv_metrics else None
        metrics_push = MetricsPush(
            metric_exporter,
            serialiser,
            metrics.metric_exports_failed,
            interval=push_every,
            extra=hidden.collect if hidden is not None else tuple,  # the GenAI instruments /metrics does not show
        )
    status = PollStatus(poll_interval=settings.poll_interval)
    host, port = settings.listen_host_port
    snapshot_max_age = max(SNAPSHOT_MAX_AGE, 2 * settings.poll_interval)
    ingest = Ingest(store, metrics)
    endpoint = (
        EventsEndpoint(ingest, settings.ingest_token, settings.ingest_max_bytes) if settings.ingest_token else None
    )
    server = MetricsServer(
        metrics.registry,
        status,
        settings.letta_url if settings.letta else "(not polled)",
        host,
        port,
        web=web,
        snapshot_max_age=snapshot_max_age,
        events=endpoint,
        push=metrics_push,
    )
    loops: list[tuple[PollLoop, float]] = []
    saved = store.load()  # once: every loop resumes from its part
    if settings.events:
        every = min(settings.poll_interval, EVENT_SWEEP_EVERY)
        loops += [(loop, every) for loop in event_loops(store, metrics, settings, spans=delivery, saved=saved)]
    if settings.letta:
        letta = letta_loop(
            client,
            store,
            metrics,
            letta_settings(settings, spans=delivery is not None),
            stuck_after=settings.stuck_after,
            spans=delivery,
            on_checkpoint=server.publish,
            saved=saved,
        )
        loops.insert(0, (letta, settings.poll_interval))
    if metrics_push is not None:  # the loops restored the counts: what the last process pushed
        metrics_push.prime(list(metrics.registry.collect()))
        metrics_push.start()
    server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info(
        "letta-exporter started",
        extra={
            "letta_url": settings.letta_url if settings.letta else None,
            "events": [way for way, on in (("http", endpoint), ("redis", settings.redis_url)) if on],
            "listen": f"{host}:{server.port}",
            "state": settings.state_path,
        },
    )
    if on_ready is not None:
        on_ready(server.port)
    tasks = [
        asyncio.create_task(_drive(poll, every, stop, status if i == 0 else None, server))
        for i, (poll, every) in enumerate(loops)
    ]
    if settings.redis_url:
        reader = RedisReader(
            settings.redis_url, ingest, metrics, stream=settings.redis_stream, group=settings.redis_group
        )
        tasks.append(asyncio.create_task(reader.run(stop)))
    try:
        await stop.wait()
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        for task in tasks:
            task.cancel()
        server.close()
        await client.aclose()
        if delivery is not None:
            delivery.close(flush_timeout=5.0)
        if metrics_push is not None:
            server.publish(final=True)  # the final values, pushed once more on the way out
            metrics_push.close()
        store.close()
        log.info("letta-exporter stopped", extra={"polls": status.polls})


async def _drive(
    poll_loop: PollLoop, interval: float, stop: asyncio.Event, status: PollStatus | None, server: MetricsServer
) -> None:
    """Poll every `interval` until `stop`; `status` (the first loop's) is what /readyz reports."""
    while not stop.is_set():
        started = time.monotonic()
        poll = asyncio.create_task(poll_loop.poll())
        waiter = asyncio.create_task(stop.wait())
        await asyncio.wait({poll, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if not poll.done():
            poll.cancel()  # the loop commits what it finished before the cancellation
        waiter.cancel()
        try:
            ok = await poll
        except asyncio.CancelledError:
            break
        except Exception:
            log.exception("poll crashed; continuing with the next one")
            ok = False
        if status is not None:
            status.polls += 1
            if ok:
                status.last_success, status.last_error = time.time(), None
            else:
                status.last_error = poll_loop.last_error or "poll failed"
        await asyncio.to_thread(server.publish)
        remaining = interval - (time.monotonic() - started)
        if remaining > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), remaining)
