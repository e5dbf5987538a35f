"""Draw docs/overview.png: the "Letta / Overview" Grafana dashboard, rendered from real data.

No Grafana here, so this starts the same stack as the tests (simulator → exporter → a real
Prometheus, ``tests/stack.py``), lets it run, sends the dashboard's own panel queries to
Prometheus's ``/api/v1/query_range`` (stat panels: ``/api/v1/query``) with the Grafana variables
filled in, and draws the panels with matplotlib where the dashboard JSON puts them: its grid
positions, units, thresholds, stacking, value mappings and legends.

Run from the repository root (``make pictures``)::

    python -m docs.render_overview                 # 15 s warm-up + 60 s of traffic into docs/overview.png
    python -m docs.render_overview --seconds 90 --output /tmp/overview.png

Needs the ``docs`` extra (matplotlib) and ``.tools/bin/prometheus`` (``make tools``).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.gridspec import GridSpec
from matplotlib.ticker import FuncFormatter, MaxNLocator

from dashboards import generate as dash
from tests.stack import letta_stack
from tests.support import ROOT, tool, wait_until

DASHBOARD = ROOT / "dashboards" / "letta-overview.json"
OUTPUT = ROOT / "docs" / "overview.png"
ROWS = ("Summary", "Runs", "Steps and tokens", "Active and stuck runs")  # the rows drawn, top to bottom
RATE_INTERVAL = "15s"  # Grafana's $__rate_interval for a 1 s scrape interval
UNIT_INCHES = 0.32  # height of one Grafana grid unit (30 px in Grafana) in the picture
SUB = 2  # picture grid rows per Grafana grid unit
WIDTH_INCHES = 20.0  # 24 grid columns

# Grafana's dark theme and its classic palette
PAGE, PANEL, TEXT, MUTED, GRID = "#111217", "#181b1f", "#ccccdc", "#8e8e9e", "#2c3235"
GREEN, RED = "#73BF69", "#F2495C"
PALETTE = (
    "#7EB26D",
    "#EAB839",
    "#6ED0E0",
    "#EF843C",
    "#E24D42",
    "#1F78C1",
    "#BA43A9",
    "#705DA0",
    "#508642",
    "#CCA300",
    "#447EBC",
    "#C15C17",
    "#890F02",
    "#0A437C",
    "#6D1F62",
    "#584477",
)
COLORS = {"green": GREEN, "red": RED}

Json = dict[str, Any]


def fmt(value: float, unit: str, decimals: int | None = None) -> str:
    """A value as Grafana shows it for the units the dashboards use."""
    if math.isnan(value):
        return "NaN"
    if unit == "percentunit":
        return f"{value * 100:.{1 if decimals is None else decimals}f}%"
    if unit == "s":
        if value == 0:
            return "0 s"
        if abs(value) < 1:
            return f"{value * 1000:.0f} ms"
        return f"{value / 60:.1f} min" if abs(value) >= 120 else f"{value:.{1 if decimals is None else decimals}f} s"
    if abs(value) >= 1000:
        return f"{value / 1000:.1f}K"
    places = decimals if decimals is not None else (0 if float(value).is_integer() else 2)
    return f"{value:.{places}f}"


def legend(template: str, labels: dict[str, str], expr: str) -> str:
    if template in ("", "__auto"):
        return "{" + ", ".join(f'{k}="{v}"' for k, v in labels.items() if k != "__name__") + "}" if labels else expr
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template)


def red_threshold(defaults: Json) -> float | None:
    steps = defaults.get("thresholds", {}).get("steps", [])
    values = [s["value"] for s in steps if s.get("color") == "red" and s.get("value") is not None]
    return float(values[0]) if values else None


class Prometheus:
    def __init__(self, url: str, start: float, end: float, step: float) -> None:
        self.url, self.start, self.end, self.step = url, start, end, step
        self.client = httpx2.Client(base_url=url, timeout=30)

    def _data(self, path: str, **params: Any) -> list[Json]:
        body = self.client.get(path, params=params).json()
        if body["status"] != "success":
            raise RuntimeError(f"{params['query']}: {body}")
        return list(body["data"]["result"])

    def range(self, promql: str) -> list[Json]:
        return self._data("/api/v1/query_range", query=promql, start=self.start, end=self.end, step=self.step)

    def instant(self, promql: str) -> list[Json]:
        return self._data("/api/v1/query", query=promql, time=self.end)


def style(ax: Axes, title: str) -> None:
    ax.set_facecolor(PANEL)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title(title, loc="left", color=TEXT, fontsize=10, fontweight="bold", pad=6)
    ax.tick_params(colors=MUTED, labelsize=7, length=0)


def draw_stat(ax: Axes, panel: Json, prom: Prometheus, variables: dict[str, str]) -> None:
    style(ax, panel["title"])
    ax.set_xticks([])
    ax.set_yticks([])
    defaults = panel["fieldConfig"]["defaults"]
    target = panel["targets"][0]
    expr = dash.concrete(target["expr"], variables)
    result = prom.instant(expr)
    values = [float(r["value"][1]) for r in result if not math.isnan(float(r["value"][1]))]
    threshold = red_threshold(defaults)
    text, color = defaults.get("noValue", "No data"), MUTED
    if values:
        value = values[0]
        text = fmt(value, defaults.get("unit", "short"), defaults.get("decimals"))
        color = RED if threshold is not None and value >= threshold else GREEN
        for mapping in defaults.get("mappings", []):
            key = str(int(value)) if value.is_integer() else str(value)
            if mapping.get("type") == "value" and key in mapping["options"]:
                option = mapping["options"][key]
                text, color = option.get("text", text), COLORS.get(option.get("color", ""), color)
    if not target.get("instant"):  # Grafana draws the series under the number ("graphMode": "area")
        series = prom.range(expr)
        if series:
            times = [float(t) for t, _ in series[0]["values"]]
            ys = [float(v) for _, v in series[0]["values"]]
            ax.fill_between(times, ys, color=color, alpha=0.18, linewidth=0)
            ax.plot(times, ys, color=color, alpha=0.6, linewidth=1)
            top = max((y for y in ys if not math.isnan(y)), default=1.0)
            ax.set_ylim(0, (top or 1.0) * 2.2)
    ax.text(0.5, 0.42, text, transform=ax.transAxes, ha="center", va="center", color=color, fontsize=24)


def draw_timeseries(ax: Axes, panel: Json, prom: Prometheus, variables: dict[str, str]) -> None:
    """Lines (or stacked areas) per series on the query_range grid, legend as a list below."""
    style(ax, panel["title"])
    defaults = panel["fieldConfig"]["defaults"]
    unit = defaults.get("unit", "short")
    stacked = defaults.get("custom", {}).get("stacking", {}).get("mode") == "normal"
    grid = [prom.start + i * prom.step for i in range(int((prom.end - prom.start) / prom.step) + 1)]
    names: list[str] = []
    columns: list[list[float]] = []
    for target in panel["targets"]:
        expr = dash.concrete(target["expr"], variables)
        for series in sorted(prom.range(expr), key=lambda s: sorted(s["metric"].items())):
            points = {round(float(t)): float(v) for t, v in series["values"]}
            columns.append([points.get(round(t), math.nan) for t in grid])
            names.append(legend(target.get("legendFormat", ""), series["metric"], expr))
    times = grid
    colors = [PALETTE[i % len(PALETTE)] for i in range(len(columns))]
    if not columns:
        ax.text(0.5, 0.5, "No data", transform=ax.transAxes, ha="center", va="center", color=MUTED, fontsize=12)
    elif stacked:
        filled = [[0.0 if math.isnan(v) else v for v in column] for column in columns]
        ax.stackplot(times, filled, colors=colors, alpha=0.35, labels=names, linewidth=0)
        bottom = [0.0] * len(grid)
        for column, color in zip(filled, colors, strict=True):
            bottom = [b + v for b, v in zip(bottom, column, strict=True)]
            ax.plot(times, bottom, color=color, linewidth=1)
    else:
        for column, name, color in zip(columns, names, colors, strict=True):
            ax.plot(times, column, color=color, linewidth=1.2, label=name)
            ax.fill_between(times, column, color=color, alpha=0.08, linewidth=0)
    if defaults.get("min") is not None:
        ax.set_ylim(bottom=float(defaults["min"]))
    if defaults.get("max") is not None:
        ax.set_ylim(top=float(defaults["max"]))
    threshold = red_threshold(defaults)
    dashed = defaults.get("custom", {}).get("thresholdsStyle", {}).get("mode") == "dashed"
    if dashed and threshold is not None and columns:
        low, high = ax.get_ylim()
        if threshold <= high * 1.5:  # near the data; a far one (TTFT's 10 s) would flatten the lines
            ax.axhline(threshold, color=RED, linestyle="--", linewidth=1)
            ax.set_ylim(low, max(high, threshold * 1.1))
    ax.set_xlim(times[0], times[-1])
    ax.grid(color=GRID, linewidth=0.6)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt(v, unit)))
    ax.yaxis.set_major_locator(MaxNLocator(5))
    every = 10 if panel["gridPos"]["w"] >= 12 else 20  # seconds between time labels
    ax.set_xticks([float(t) for t in range(math.ceil((grid[0] + 3) / every) * every, int(grid[-1]) - 2, every)])
    ax.xaxis.set_major_formatter(FuncFormatter(lambda t, _: datetime.fromtimestamp(t, UTC).strftime("%H:%M:%S")))
    if columns:
        ax.legend(
            loc="upper left",
            bbox_to_anchor=(0, -0.1),
            ncol=min(len(names), max(3, panel["gridPos"]["w"] // 2)),
            fontsize=6.5,
            frameon=False,
            labelcolor=TEXT,
            handlelength=1.2,
            columnspacing=1.0,
        )


def render(prom: Prometheus, dashboard: Json, job: str, output: Path) -> list[str]:
    """Draw the ROWS of ``dashboard`` into ``output``; returns the titles of panels with no data."""
    variables = {
        "job": job,
        "instance": ".+",
        "__rate_interval": RATE_INTERVAL,
        "__interval": f"{prom.step:g}s",
        "__range": f"{round(prom.end - prom.start)}s",
    }
    rows: list[tuple[Json, list[Json]]] = []
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            rows.append((panel, list(panel.get("panels", []))))
        elif rows:
            rows[-1][1].append(panel)
    chosen = [(row, panels) for row, panels in rows if row["title"] in ROWS]
    top = chosen[0][0]["gridPos"]["y"]
    bottom = max(p["gridPos"]["y"] + p["gridPos"]["h"] for _, panels in chosen for p in panels)
    height = bottom - top + 2  # plus the header
    figure = Figure(figsize=(WIDTH_INCHES, height * UNIT_INCHES), facecolor=PAGE)
    grid = GridSpec(height * SUB, 24, figure=figure, left=0.035, right=0.99, top=0.995, bottom=0.005, wspace=1.6)
    grid.update(hspace=0)
    header = figure.add_subplot(grid[0 : 2 * SUB, :])
    header.axis("off")
    stamp = datetime.fromtimestamp(prom.end, UTC).strftime("%Y-%m-%d %H:%M UTC")
    header.text(0, 0.55, dashboard["title"], color=TEXT, fontsize=15, fontweight="bold", va="center")
    source = f"simulated Letta 0.16 → letta-exporter → Prometheus · last {round(prom.end - prom.start)} s · {stamp}"
    header.text(1, 0.55, source, color=MUTED, fontsize=9, ha="right", va="center")
    empty = []
    for row, panels in chosen:
        y = row["gridPos"]["y"] - top + 2
        label = figure.add_subplot(grid[y * SUB : (y + 1) * SUB, :])
        label.axis("off")
        label.text(0, 0.2, row["title"], color=TEXT, fontsize=11, fontweight="bold", va="center")
        for panel in panels:
            pos = panel["gridPos"]
            y0 = pos["y"] - top + 2
            # one unit for the title above; 2.5 units for the time axis and the legend below
            below = 5 if panel["type"] == "timeseries" else 0
            span = slice((y0 + 1) * SUB, (y0 + pos["h"]) * SUB - below)
            ax = figure.add_subplot(grid[span, pos["x"] : pos["x"] + pos["w"]])
            if panel["type"] == "stat":
                draw_stat(ax, panel, prom, variables)
            else:
                draw_timeseries(ax, panel, prom, variables)
                if not ax.get_legend():
                    empty.append(panel["title"])
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=100, facecolor=PAGE, pil_kwargs={"optimize": True})
    return empty


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="the time range drawn")
    parser.add_argument("--warmup", type=float, default=15.0, help="traffic before the time range drawn")
    parser.add_argument("--step", type=float, default=1.0, help="query_range resolution in seconds")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    prometheus = tool("prometheus")
    if prometheus is None:
        print("prometheus is not installed: run `make tools` (scripts/install-tools.sh)", file=sys.stderr)
        return 2
    dashboard = json.loads(DASHBOARD.read_text())
    with tempfile.TemporaryDirectory() as workdir, letta_stack(Path(workdir), prometheus) as stack:
        client = httpx2.Client(base_url=stack.prometheus_url, timeout=10)
        scraped = f'up{{job="{stack.job}"}} == 1'
        wait_until(lambda: client.get("/api/v1/query", params={"query": scraped}).json()["data"]["result"], 30)
        # the first $__rate_interval only ramps the rates up: draw what follows it, as a dashboard shows it
        start = time.time() + args.warmup
        end = start + args.seconds
        total = args.warmup + args.seconds
        print(f"stack up (Prometheus {stack.prometheus_url}); collecting {total:g} s of data", file=sys.stderr)
        time.sleep(max(0.0, end + 1.5 - time.time()))  # the traffic the picture shows, plus a last scrape
        empty = render(Prometheus(stack.prometheus_url, start, end, args.step), dashboard, stack.job, args.output)
    print(f"wrote {args.output}" + (f"; panels without data: {', '.join(empty)}" if empty else ""), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
