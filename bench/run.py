"""`make bench`: every section, one table on stdout (markdown) and the same figures as JSON.

Every figure is a ratio or a value measured within this run; bench/FORMAT.md describes the JSON
and how to compare runs. Progress goes to stderr.

    python -m bench.run                       # the full suite (~25 min on 2 cores; scale is ~18 of it)
    python -m bench.run --quick               # small histories, short windows: a smoke run, not comparable
    python -m bench.run --only ingest,cost    # some sections
    python -m bench.ingest --profile          # cProfile of the ingest hot path (not part of the suite)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import cost, events, freshness, ingest, memory, metrics_push, scale, scrape
from bench import spans as span_path
from bench.common import ROOT, Figure, machine, progress

FORMAT = 1
LATEST = ROOT / "bench" / "results" / "latest.json"


@dataclass(frozen=True)
class Sizes:
    ingest_runs: int
    ingest_repeat: int
    cost_history: int
    memory_runs: int
    scrape_series: int
    scrape_seconds: float
    scrape_scrapers: int
    freshness_seconds: float
    freshness_interval: float
    span_runs: int
    span_repeat: int
    scale_backlogs: tuple[int, ...]
    scale_latencies_ms: tuple[int, ...]
    event_runs: int
    push_runs: int


FULL = Sizes(
    20_000,
    2,
    20_000,
    20_000,
    10_000,
    30.0,
    2,
    20.0,
    1.0,
    3000,
    5,
    (1000, 20_000, 100_000),
    (0, 50, 100, 200),
    5000,
    5000,
)
QUICK = Sizes(2_000, 1, 2_000, 3_000, 10_000, 8.0, 2, 8.0, 1.0, 1000, 3, (1000, 5000), (0, 100), 1000, 1000)


def spans(runs: int, repeat: int) -> list[Figure]:
    """bench/spans.py as a section: the span path's throughput against plain protobuf encoding."""
    progress(f"spans: {runs:,} runs, best of {repeat}")
    finished = span_path.make_runs(runs)
    floor = span_path.best_rate(span_path.plain_protobuf, finished, repeat)
    ours = span_path.best_rate(span_path.ours, finished, repeat)
    return [
        Figure(
            "span_path_ratio",
            "span path: SDK build + encode ÷ plain protobuf",
            ours / floor,
            "ratio",
            None,
            f"{ours:,.0f} vs {floor:,.0f} spans/s, {runs:,} runs x 7 spans, best of {repeat}",
            {"spans_per_s": ours, "floor_spans_per_s": floor, "runs": runs, "repeat": repeat},
            "higher",
        )
    ]


def sections(sizes: Sizes) -> dict[str, Callable[[], list[Figure]]]:
    return {
        "ingest": lambda: ingest.measure(sizes.ingest_runs, sizes.ingest_repeat),
        "cost": lambda: cost.measure(sizes.cost_history),
        "memory": lambda: memory.measure(sizes.memory_runs),
        "scrape": lambda: scrape.measure(sizes.scrape_series, sizes.scrape_seconds, sizes.scrape_scrapers),
        "freshness": lambda: freshness.measure(sizes.freshness_seconds, sizes.freshness_interval),
        "spans": lambda: spans(sizes.span_runs, sizes.span_repeat),
        "scale": lambda: scale.measure(list(sizes.scale_backlogs), list(sizes.scale_latencies_ms)),
        "events": lambda: events.measure(sizes.event_runs),
        "metrics_push": lambda: metrics_push.measure(sizes.push_runs, 300),
    }


def git() -> dict[str, Any]:
    """The commit measured; read-only (GIT_OPTIONAL_LOCKS=0: `status` must not touch the index)."""
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}

    def out(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, env=env, capture_output=True, text=True).stdout.strip()

    return {"commit": out("rev-parse", "HEAD") or None, "dirty": bool(out("status", "--porcelain", "--", "exporter"))}


def table(figures: list[Figure], where: dict[str, Any], mode: str, load: dict[str, float]) -> str:
    verdict = {True: "pass", False: "**FAIL**", None: "info"}
    lines = [
        f"# letta-exporter bench ({mode}): {where['cpu']}, {where['cores']} cores, "
        f"{where['implementation']} {where['python']}; load average {load['at_start']:.1f} at start, "
        f"{load['at_end']:.1f} at end",
        "",
        "| figure | value | target | result | measured |",
        "|---|---|---|---|---|",
    ]
    for f in figures:
        target = "—" if f.target is None else str(f.target) + ("" if f.unit in ("", "ratio") else f" {f.unit}")
        lines.append(f"| {f.label} | {f.shown()} | {target.replace(' x', 'x')} | {verdict[f.passed]} | {f.basis} |")
    for f in figures:
        if "per_finished_run_by_endpoint" in f.detail and f.key.startswith("requests_per_finished_run"):
            parts = ", ".join(f"{e} {n:.2f}" for e, n in f.detail["per_finished_run_by_endpoint"].items())
            lines.append(f"\n{f.label}, by endpoint: {parts}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small histories and short windows (~1 min)")
    parser.add_argument("--only", help=f"comma-separated sections: {','.join(sections(FULL))}")
    parser.add_argument("--json", type=Path, default=LATEST, help=f"where to write the figures (default {LATEST})")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a figure misses its target")
    args = parser.parse_args()
    sizes, mode = (QUICK, "quick") if args.quick else (FULL, "full")
    chosen = sections(sizes)
    if args.only:
        unknown = set(args.only.split(",")) - set(chosen)
        if unknown:
            parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
        chosen = {k: v for k, v in chosen.items() if k in args.only.split(",")}
    started_at, started = datetime.now(UTC), time.monotonic()
    load = {"at_start": os.getloadavg()[0]}
    if load["at_start"] > 0.5:
        progress(
            f"warning: load average {load['at_start']:.1f} before starting: other processes use the CPU, "
            "timings will be noisy (ratios less so)"
        )
    figures: list[Figure] = []
    errors: dict[str, str] = {}
    for name, section in chosen.items():
        try:
            figures.extend(section())
        except Exception as exc:  # one broken section must not cost the others' figures
            traceback.print_exc()
            errors[name] = f"{type(exc).__name__}: {exc}"
    load["at_end"] = os.getloadavg()[0]
    where = machine()
    print(table(figures, where, mode, load))
    for name, error in errors.items():
        print(f"\nsection {name} failed: {error}")
    result = {
        "format": FORMAT,
        "mode": mode,
        "started_at": started_at.isoformat(timespec="seconds"),
        "seconds": round(time.monotonic() - started, 1),
        "git": git(),
        "machine": where,
        "load_average_1m": load,
        "sizes": asdict(sizes),
        "sections": list(chosen),
        "figures": {f.key: f.json() for f in figures},
        "errors": errors,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    progress(f"wrote {args.json} ({result['seconds']:.0f} s)")
    missed = [f.key for f in figures if f.passed is False]
    sys.exit(1 if errors or (args.strict and missed) else 0)


if __name__ == "__main__":
    main()
