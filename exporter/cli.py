"""`letta-exporter run | demo | check`."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import secrets
import sys
from collections import Counter
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from exporter import __version__, app, config, logs
from exporter.letta import LettaError, records
from exporter.metrics import ExporterMetrics
from exporter.otlp import OtlpConfigError
from exporter.pricing import PriceTable
from exporter.state import StateError

DEMO_STATE = "letta-exporter-demo.db"
M = TypeVar("M", bound=BaseModel)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="letta-exporter", description="Prometheus metrics and OTLP spans for Letta agent servers."
    )
    parser.add_argument("--version", action="version", version=f"letta-exporter {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, text in (
        ("run", "poll a Letta server and serve /metrics (the default)"),
        ("demo", "start a simulated Letta server and run the exporter against it; no configuration needed"),
        ("check", "connect once, print what the server shows, exit non-zero on problems"),
    ):
        sub = commands.add_parser(name, help=text, description=text)
        config.add_arguments(sub)
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version")):
        argv = ["run", *argv]
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            code = _demo(args)
        else:
            settings = config.load(args)
            logs.configure(settings.log_level, settings.log_format)
            code = asyncio.run(_check(settings)) if args.command == "check" else _run(settings)
    except (config.ConfigError, StateError, OtlpConfigError) as exc:
        print(f"letta-exporter: {exc}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


def _run(settings: config.Settings) -> int:
    asyncio.run(app.run(settings))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from exporter.simulator import Scenario, SimulatedLetta, serve
    from exporter.simulator.feed import EventFeed

    environ = {k: v for k, v in os.environ.items() if k not in ("LETTA_BASE_URL", "LETTA_API_KEY")}
    defaults = {
        "listen_address": "127.0.0.1:9813",
        "poll_interval": "2s",
        "state_path": DEMO_STATE,
        "stuck_after": "20s",
        "expire_after": "60s",
        "agent_labels": "true",
        "tool_metrics": "true",
        "ingest_token": secrets.token_urlsafe(16),  # behest and agent-sdk runs come in as events
        "event_idle_expire_after": "60s",
        "event_settle": "3s",
    }
    for name, value in defaults.items():
        if getattr(args, name) is None and config.ENV_PREFIX + name.upper() not in environ:
            setattr(args, name, value)
    settings = config.load(args, environ)
    if settings.state_path == DEMO_STATE:
        for suffix in ("", "-wal", "-shm"):  # a new simulated server each time: old state means nothing
            Path(DEMO_STATE + suffix).unlink(missing_ok=True)
    logs.configure(settings.log_level, settings.log_format)
    simulator = serve(SimulatedLetta(Scenario(seed=int.from_bytes(os.urandom(4)), history=500, runs_per_second=1.5)))
    settings = dataclasses.replace(settings, letta_url=simulator.url)
    feeds: list[EventFeed] = []

    def ready(port: int) -> None:
        host = settings.listen_host_port[0]
        shown = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
        if settings.ingest_token:
            feeds.append(EventFeed(f"http://{shown}:{port}", settings.ingest_token, seed=int.from_bytes(os.urandom(2))))
            feeds[0].start()
        print(
            f"\nletta-exporter demo\n"
            f"  simulated Letta API : {simulator.url}/v1/runs/  (ground truth: {simulator.url}/_sim/truth)\n"
            f"  metrics             : http://{shown}:{port}/metrics\n"
            f"  behest, agent-sdk   : simulated hosts posting events to http://{shown}:{port}/v1/events "
            f"(behest_*, agent_sdk_*)\n"
            f"  status page         : http://{shown}:{port}/\n"
            f"  state               : {settings.state_path}\n"
            f"Runs finish every second or so; stuck runs show after {settings.stuck_after:g}s, "
            f"expired ones after {settings.expire_after:g}s. Ctrl-C stops.\n",
            flush=True,
        )

    try:
        asyncio.run(app.run(settings, on_ready=ready))
    finally:
        for feed in feeds:
            feed.close()
        simulator.close()
    return 0


async def _check(settings: config.Settings) -> int:
    """A human-readable probe of the server, for setting the exporter up; never prints a secret."""
    metrics = ExporterMetrics()
    client = app.make_client(settings, metrics)
    problems: list[str] = []

    def parse(reader: records.Reader[M], raw: Any) -> M | None:
        found: records.Problems = []
        try:
            parsed = reader(raw, found)
        except records.InvalidRecord as exc:
            problems.append(f"{reader.model.__name__} not understood: {exc}")
            return None
        problems.extend(f"{reader.model.__name__} {raw.get('id')}: {p}" for p in found)
        return parsed

    try:
        health = await client.health()
        print(f"server      : {settings.letta_url} (Letta {health.get('version', 'unknown version')})")
        raw_runs = await client.get_list("/v1/runs/", "/v1/runs/", {"order": "desc", "limit": 100})
        runs = [r for r in (parse(records.RUN, raw) for raw in raw_runs) if r is not None]
        by_status = Counter(r.status for r in runs)
        print(f"runs        : newest {len(runs)}: " + (", ".join(f"{k}={v}" for k, v in by_status.items()) or "none"))
        populated = {
            f: sum(getattr(r, f) is not None for r in runs) for f in ("stop_reason", "ttft_ns", "total_duration_ns")
        }
        print("run fields  : " + ", ".join(f"{k} {v}/{len(runs)}" for k, v in populated.items()))
        finished = next((r for r in runs if r.terminal), None)
        if finished is None:
            print("steps       : no finished run to inspect yet")
        else:
            steps = [s for s in (parse(records.STEP, raw) for raw in await client.run_steps(finished.id)) if s]
            traced = sum(s.trace_id is not None for s in steps)
            models = sorted({f"{s.provider}/{s.model}" for s in steps})
            print(
                f"steps       : {len(steps)} in {finished.id} ({', '.join(models) or 'no model'}); "
                f"trace_id on {traced}/{len(steps)}"
                + ("" if traced else " (Letta tracing is off: spans get derived trace ids)")
            )
            if settings.cost:
                prices = PriceTable.load(Path(settings.price_table) if settings.price_table else None)
                priced = Counter(
                    str(p) if isinstance(p, str) else "priced"
                    for p in (prices.price(s, finished.created_at) for s in steps)
                )
                print("cost        : " + (", ".join(f"{k} {v}" for k, v in sorted(priced.items())) or "no steps"))
            if steps and settings.step_timings:
                timing = await client.step_metrics(steps[0].id)
                shown = ", ".join(f"{k}={timing.get(k)}" for k in ("llm_request_ns", "tool_execution_ns", "step_ns"))
                print(f"step timing : {shown}")
    except LettaError as exc:
        hint = " (set --letta-api-key / LETTA_API_KEY)" if exc.status in (401, 403) else ""
        problems.append(f"{exc}{hint}")
    finally:
        await client.aclose()
    for problem in problems:
        print(f"PROBLEM     : {problem}")
    print("result      : " + ("OK" if not problems else f"{len(problems)} problem(s)"))
    return 1 if problems else 0
