"""The exporter against a real Letta server: its metrics and spans equal what Letta's API says.

Per target (Letta 0.16.8 on PostgreSQL, Letta 0.11.7 on SQLite): start the fake LLM (and postgres),
start Letta without its own tracing, start a "live" exporter, drive the scenario mix, restart
Letta with tracing on (same database, same address), drive the mix again, then read the ground
truth back from the API and start a second, "late" exporter with `--backfill 1h`. Both exporters'
counters must equal the ground truth (the live one saw each async-cancelled run as cancelled before
Letta overwrote it, and counts that overwrite as a status change), and every counted run must
arrive as one span whose trace id is the steps' `trace_id` whenever Letta's tracing was on.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import time
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.driver import (
    BREAKDOWNS,
    Driver,
    Phase,
    Samples,
    agent_names,
    all_runs,
    diff,
    expected_breakdowns,
    expected_samples,
    exported_samples,
    run_messages,
    run_steps,
)
from tests.e2e.letta_server.stack import LettaStack
from tests.otlp_receiver import ReceivedSpan, Receiver
from tests.support import Process, exporter_cmd, scrape, total, wait_until

pytestmark = pytest.mark.e2e

EXPORTER_ARGS = ("--poll-interval", "500ms", "--state-path", ":memory:", "--backfill", "1h", "--log-format", "json")


def start_exporter(letta_url: str, protocol: str | None, port: int = 0, *extra: str) -> tuple[Process, str]:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol or "",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "5",
    }
    command = exporter_cmd("run", "--letta-url", letta_url, "--listen-address", "127.0.0.1:0", *EXPORTER_ARGS, *extra)
    process = Process(command, env=env if protocol else {"OTEL_TRACES_EXPORTER": "none"})
    listen = process.wait_for_line(r'"message": "letta-exporter started".*"listen": "([^"]+)"').group(1)
    return process, f"http://{listen}"


def run_spans(spans: list[ReceivedSpan]) -> dict[str, ReceivedSpan]:
    return {str(s.attributes["letta.run.id"]): s for s in spans if "letta.run.id" in s.attributes}


def wait_equal(
    what: str, expected: Samples | list[Samples], exported: Callable[[], Samples], timeout: float = 90
) -> Samples:
    """Wait until the exporter shows `expected` (or one of several acceptable answers); print both if not."""
    candidates = expected if isinstance(expected, list) else [expected]
    last: dict[str, Samples] = {}

    def check() -> bool:
        last["got"] = exported()
        return last["got"] in candidates

    try:
        wait_until(check, timeout, what)
    except AssertionError as exc:
        got = last.get("got", {})
        closest = min(candidates, key=lambda c: sum(c.get(k) != got.get(k) for k in {*c, *got}))
        raise AssertionError(
            f"{exc} ({len(candidates)} acceptable answers; the closest:)\n{diff(closest, got)}"
        ) from None
    return last["got"]


def live_variants(
    runs: list[dict[str, Any]], steps: dict[str, list[dict[str, Any]]], seen: list[dict[str, Any]]
) -> list[Samples]:
    """What an exporter that counted each of the `seen` runs either at cancel time or at the end may show."""
    final = {r["id"]: r for r in runs}
    variants = []
    for choice in itertools.product((True, False), repeat=len(seen)):
        counted_runs, counted_steps = dict(final), dict(steps)
        changes: Counter[tuple[str, tuple[tuple[str, str], ...]]] = Counter()
        for at_cancel, note in zip(choice, seen, strict=True):
            run_id = note["run"]["id"]
            if not at_cancel:
                continue
            counted_runs[run_id], counted_steps[run_id] = note["run"], note["steps"]
            if note["run"]["status"] != final[run_id]["status"]:
                labels = (("from", note["run"]["status"]), ("to", final[run_id]["status"]))
                changes[("letta_run_terminal_status_changes_total", labels)] += 1
        samples = expected_samples(list(counted_runs.values()), counted_steps)
        variants.append({**samples, **{k: float(v) for k, v in changes.items()}})
    return variants


def test_exporter_equals_lettas_ground_truth(letta: LettaStack) -> None:
    started = time.monotonic()
    timings: dict[str, float] = {}
    with ExitStack() as cleanup:
        receivers = {name: Receiver() for name in ("letta", "live", "late")}
        for receiver in receivers.values():
            cleanup.callback(receiver.stop)
        letta_otlp = receivers["letta"].start_grpc()
        live_otlp = receivers["live"].start_grpc()
        late_otlp = receivers["late"].start_http()

        # ---------------------------------------------------------------- phase A: Letta's tracing off
        letta_url = letta.start_letta()
        timings["letta start"] = time.monotonic() - started
        driver = Driver(letta)
        cleanup.callback(driver.close)
        agent = driver.create_agent("e2e-agent")
        memgpt = driver.create_agent("e2e-memgpt", "memgpt_v2_agent") if driver.modern else None
        live, live_url = start_exporter(letta_url, "grpc", live_otlp)
        cleanup.callback(live.stop)
        phase_a = Phase(tracing=False)
        mark = time.monotonic()
        driver.drive(agent, phase_a, memgpt)
        timings["drive without tracing"] = time.monotonic() - mark

        # ---------------------------------------------------------------- phase B: Letta's tracing on
        mark = time.monotonic()
        letta.stop_letta()
        letta.start_letta(otlp_endpoint=f"http://127.0.0.1:{letta_otlp}")
        timings["letta restart"] = time.monotonic() - mark
        driver = Driver(letta)
        cleanup.callback(driver.close)
        phase_b = Phase(tracing=True)
        mark = time.monotonic()
        driver.drive(agent, phase_b, memgpt)
        timings["drive with tracing"] = time.monotonic() - mark

        # ---------------------------------------------------------------- ground truth
        mark = time.monotonic()
        runs = all_runs(driver.client, driver.modern)
        steps = {run["id"]: run_steps(driver.client, run["id"]) for run in runs}
        driven = {*phase_a.runs.values(), *phase_b.runs.values()}
        assert {r["id"] for r in runs} == driven, "Letta lists exactly the runs the scenarios created"
        expected = expected_samples(runs, steps)
        print_outcomes(letta, (phase_a, phase_b), runs, steps)
        if dump := os.environ.get("LETTA_E2E_DUMP"):  # the raw answers, e.g. to compare with the simulator
            out = Path(dump) / f"letta-{letta.target.version}.json"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps({"runs": runs, "steps": steps, "phases": [phase_a.runs, phase_b.runs]}, indent=1))

        late, late_url = start_exporter(letta_url, "http/protobuf", late_otlp)
        cleanup.callback(late.stop)
        late_got = wait_equal("the late exporter to equal the ground truth", expected, lambda: exported(late_url))

        # The live exporter counted each cancelled run when it first showed `cancelled`, with the steps
        # Letta had then. Letta writes these runs again afterwards: an async-cancelled run is overwritten
        # to completed (the exporter counts a status change, never a recount), and a stream-cancelled
        # run's pending step may later turn failed. Which version the live exporter saw is a race, so
        # every combination of "as seen at cancel time" / "final" is an acceptable answer.
        variants = live_variants(
            runs, steps, [n for p in (phase_a, phase_b) for k, n in p.notes.items() if k.endswith("_seen")]
        )
        live_got = wait_equal(
            "the live exporter to equal the ground truth",
            variants,
            lambda: {**exported(live_url), **status_changes(live_url)},
        )
        timings["ground truth + compare"] = time.monotonic() - mark

        # ---------------------------------------------------------------- agents and tools
        mark = time.monotonic()
        messages = {run["id"]: run_messages(driver.client, run["id"]) for run in runs}
        broken_down = expected_breakdowns(runs, steps, messages, agent_names(driver.client))
        assert any(k[0] == "letta_tool_calls_total" for k in broken_down), "the driver's [tool] runs call tools"
        detailed, detailed_url = start_exporter(letta_url, None, 0, "--agent-labels", "--tool-metrics")
        cleanup.callback(detailed.stop)
        wait_equal(
            "agent labels and tool calls to equal Letta's messages and agents",
            broken_down,
            lambda: {k: v for k, v in scrape(detailed_url).items() if k[0] in BREAKDOWNS and v},
        )
        timings["agents and tools"] = time.monotonic() - mark

        # ---------------------------------------------------------------- spans
        mark = time.monotonic()
        traced = {r["id"]: {s["trace_id"] for s in steps[r["id"]] if s.get("trace_id")} for r in runs}
        for run_id in phase_a.runs.values():
            assert traced[run_id] == set(), f"{run_id}: Letta without tracing gave its steps a trace_id"
        for name, run_id in phase_b.runs.items():
            if steps[run_id]:
                assert len(traced[run_id]) == 1, f"{name} {run_id}: steps' trace ids {traced[run_id]}"
        span_report: dict[str, Any] = {}
        for name in ("live", "late"):
            receiver = receivers[name]

            def all_run_spans(receiver: Receiver = receiver) -> dict[str, ReceivedSpan] | None:
                found = run_spans(receiver.snapshot())
                return found if len(found) >= len(runs) else None

            spans = wait_until(all_run_spans, 60, f"a run span per run from the {name} exporter")
            assert set(spans) == {r["id"] for r in runs}
            for run_id, span in spans.items():
                assert re.fullmatch(r"[0-9a-f]{32}", span.trace_id)
                if traced[run_id]:
                    assert {span.trace_id} == traced[run_id], f"{name}: {run_id} span not in Letta's trace"
                else:
                    assert span.trace_id not in {t for ids in traced.values() for t in ids}
            span_report[name] = {
                "run spans": len(spans),
                "in Letta's trace": sum(1 for rid, sp in spans.items() if {sp.trace_id} == traced[rid]),
                "spans in all": len(receivers[name].snapshot()),
            }
        letta_trace_ids = {t for ids in traced.values() for t in ids}
        wait_until(
            lambda: letta_trace_ids <= {s.trace_id for s in receivers["letta"].snapshot()},
            60,
            "Letta's own spans for every traced run",
        )
        span_report["letta"] = {"traces of runs": len(letta_trace_ids), "spans": len(receivers["letta"].snapshot())}
        timings["spans"] = time.monotonic() - mark

        for url in (live_url, late_url):
            samples = scrape(url)
            assert samples[("letta_up", ())] == 1
            assert total(samples, "letta_exporter_spans_dropped_total") == 0
            problems = {
                dict(k[1])["kind"]: v for k, v in samples.items() if k[0] == "letta_exporter_parse_errors_total"
            }
            assert not any(problems.values()), problems
        timings["total"] = time.monotonic() - started
        report(expected, late_got, live_got, span_report, timings)


def exported(url: str) -> Samples:
    return exported_samples(scrape(url))


def status_changes(url: str) -> Samples:
    return {k: v for k, v in scrape(url).items() if k[0] == "letta_run_terminal_status_changes_total" and v}


def print_outcomes(
    letta: LettaStack, phases: tuple[Phase, ...], runs: list[dict[str, Any]], steps: dict[str, list[dict[str, Any]]]
) -> None:
    """The scenario mix and what Letta made of each scenario (printed with `pytest -s`, and on failure)."""
    by_id = {r["id"]: r for r in runs}
    print(f"\n==== letta {letta.target.version}: {len(runs)} runs")
    for phase in phases:
        for name, run_id in phase.runs.items():
            run = by_id[run_id]
            shape = [(s.get("status"), s.get("stop_reason"), bool(s.get("trace_id"))) for s in steps[run_id]]
            extra = f"ttft_ns={run.get('ttft_ns')} total_duration_ns={run.get('total_duration_ns')}"
            print(f"  tracing={phase.tracing!s:5} {name:15} {run['status']:9} {run.get('stop_reason')!s:9} {extra}")
            print(f"      steps (status, stop_reason, trace_id?): {shape}")
        notes = {k: v for k, v in phase.notes.items() if not k.endswith("_seen")}
        print(f"  notes: {json.dumps(notes, default=str)[:2000]}")


def report(
    expected: Samples, late_got: Samples, live_got: Samples, spans: dict[str, Any], timings: dict[str, float]
) -> None:
    """What was compared, printed for `pytest -s`."""
    print("  expected vs late exporter:")
    print("    " + diff(expected, late_got).replace("\n", "\n    "))
    live_only = {k: v for k, v in live_got.items() if expected.get(k) != v}
    print(f"  live exporter differs from the final truth only in: {live_only}")
    print(f"  spans: {spans}")
    print(f"  timings: {json.dumps({k: round(v, 1) for k, v in timings.items()})}")
