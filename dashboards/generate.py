"""Grafana dashboards for letta-exporter.

Run from the repository root::

    python -m dashboards.generate          # rewrite dashboards/*.json
    python -m dashboards.generate --check  # exit 1 when a committed dashboard is not what this generates

The committed JSON is what users import (Grafana "Import dashboard", provisioning, or the Helm
chart's ConfigMap). Every panel reads its data source from the ``datasource`` variable and filters
on the ``job`` / ``instance`` variables; metric names come from :mod:`dashboards.letta_metrics` and
the alert thresholds drawn on panels from :class:`alerts.generate.Settings`.

Every agent runtime of :data:`dashboards.letta_metrics.RUNTIMES` gets an overview and a by-model
dashboard from the same builders (``letta-overview.json``, ``behest-overview.json``, ...): an event
runtime's leave out what only Letta's REST API gives (API and poll health, per-agent panels) and
show its event ingest instead. :data:`RUNTIME_DASHBOARDS` lists each runtime's files.

:func:`panel_queries` lists every (dashboard, panel, query) of a dashboard JSON and
:func:`concrete` turns a query's Grafana variables into plain PromQL, so that a test can send each
one to a real Prometheus.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from alerts.generate import Settings as AlertSettings
from dashboards import letta_metrics as m
from exporter.config import parse_duration

HERE = Path(__file__).resolve().parent
SCHEMA_VERSION = 42  # Grafana 12.x/13.x; the defaultDashboard of @grafana/schema 13.2.3
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
RATE = "$__rate_interval"
ALERTS = AlertSettings()

Json = dict[str, Any]


# ------------------------------------------------------------------------------------------ PromQL


def sel(*matchers: str) -> str:
    """The dashboard's job/instance filter plus ``matchers``."""
    return "{" + ", ".join(('job=~"$job"', 'instance=~"$instance"', *matchers)) + "}"


def rate(metric: str, *matchers: str, window: str = RATE) -> str:
    return f"rate({metric}{sel(*matchers)}[{window}])"


def sum_rate(metric: str, by: str = "", *matchers: str) -> str:
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} ({rate(metric, *matchers)})"


def ratio(numerator: str, denominator: str, on: str = "") -> str:
    """``numerator / denominator``, empty (not NaN) where the denominator is 0: no traffic, no line."""
    matching = f" on ({on}) group_left ()" if on else ""
    return f"{numerator} /{matching} ({denominator} > 0)"


def decided_runs(rt: m.Runtime, func: str, by: str = "", *matchers: str, window: str = RATE) -> str:
    """``sum by (by) (func(<prefix>_runs_finished_total{matchers}[window]))`` without the runs awaiting
    approval, which have neither succeeded nor failed: what every run ratio divides by."""
    grouping = f" by ({by})" if by else ""
    finished = rt.names.RUNS_FINISHED
    runs = f"{func}({finished}{sel(*matchers)}[{window}])"
    if not rt.awaiting_approval:
        return f"sum{grouping} ({runs})"
    return f"sum{grouping} ({runs} unless {func}({finished}{sel(*m.AWAITING_APPROVAL)}[{window}]))"


def named(expr: str) -> str:
    """``expr`` (by agent_id) with each agent's current name from ``letta_agent_info`` as ``agent_name``;
    agents without a name (``other``, ``none``) keep their id as the name.

    ``expr`` has summed job and instance away, so the names are matched on agent_id alone. The info is
    reduced to one name per agent_id first: two exporters (replicas, or a rename one of them has not
    seen yet) may name the same id differently, and a group_left with two right-hand series for one
    id is an error that would empty the whole panel."""
    names = f"max by ({m.AGENT_LABEL}, {m.AGENT_NAME}) ({m.AGENT_INFO}{sel()})"
    info = f"topk by ({m.AGENT_LABEL}) (1, {names})"
    joined = f"({expr}) * on ({m.AGENT_LABEL}) group_left ({m.AGENT_NAME}) {info}"
    unnamed = f'label_replace({expr}, "{m.AGENT_NAME}", "$1", "{m.AGENT_LABEL}", "(.*)")'
    return f"(({joined}) or on ({m.AGENT_LABEL}) {unnamed})"  # parenthesised: `or` binds loosest


def quantile(q: float, histogram: str, by: str = "", *matchers: str) -> str:
    grouping = ", ".join(filter(None, ("le", by)))
    return f"histogram_quantile({q:g}, sum by ({grouping}) ({rate(m.bucket(histogram), *matchers)}))"


def mean(histogram: str, by: str = "", *matchers: str) -> str:
    return ratio(sum_rate(m.total(histogram), by, *matchers), sum_rate(m.count(histogram), by, *matchers))


# ------------------------------------------------------------------------------------------ model


@dataclasses.dataclass(frozen=True)
class Target:
    expr: str
    legend: str = ""
    instant: bool = False
    format: str = "time_series"  # or "table", "heatmap"
    exemplar: bool = False


@dataclasses.dataclass(frozen=True)
class Panel:
    title: str
    description: str
    targets: tuple[Target, ...]
    kind: str = "timeseries"  # or "stat", "table", "heatmap"
    unit: str = "short"
    width: int = 12
    height: int = 8
    stacked: bool = False
    threshold: float | None = None  # alert threshold: a red line (timeseries) or red colour (stat)
    min: float | None = 0
    max: float | None = None
    decimals: int | None = None
    no_value: str | None = None
    mappings: tuple[Json, ...] = ()
    legend_table: bool = False


@dataclasses.dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...]
    collapsed: bool = False


@dataclasses.dataclass(frozen=True)
class Variable:
    name: str
    label: str
    query: str  # a Prometheus label_values() query; "" for the data source variable
    description: str = ""


@dataclasses.dataclass(frozen=True)
class Spec:
    runtime: m.Runtime  # tags the dashboard, and links it to the runtime's other dashboards
    uid: str
    title: str
    description: str
    variables: tuple[Variable, ...]
    rows: tuple[Row, ...]


def _thresholds(threshold: float | None) -> Json:
    steps: list[Json] = [{"color": "green", "value": None}]
    if threshold is not None:
        steps.append({"color": "red", "value": threshold})
    return {"mode": "absolute", "steps": steps}


def _targets(panel: Panel) -> list[Json]:
    targets = []
    for index, target in enumerate(panel.targets):
        targets.append(
            {
                "datasource": DATASOURCE,
                "editorMode": "code",
                "exemplar": target.exemplar,
                "expr": target.expr,
                "format": target.format,
                "instant": target.instant,
                "legendFormat": target.legend or "__auto",
                "range": not target.instant,
                "refId": chr(ord("A") + index),
            }
        )
    return targets


def _defaults(panel: Panel, color_mode: str) -> Json:
    defaults: Json = {
        "color": {"mode": color_mode},
        "mappings": list(panel.mappings),
        "thresholds": _thresholds(panel.threshold),
        "unit": panel.unit,
    }
    for key, value in (
        ("min", panel.min),
        ("max", panel.max),
        ("decimals", panel.decimals),
        ("noValue", panel.no_value),
    ):
        if value is not None:
            defaults[key] = value
    return defaults


def _timeseries(panel: Panel) -> Json:
    defaults = _defaults(panel, "palette-classic")
    defaults["custom"] = {
        "drawStyle": "line",
        "fillOpacity": 25 if panel.stacked else 10,
        "lineInterpolation": "linear",
        "lineWidth": 1,
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"group": "A", "mode": "normal" if panel.stacked else "none"},
        "thresholdsStyle": {"mode": "dashed" if panel.threshold is not None else "off"},
    }
    legend: Json = {"displayMode": "list", "placement": "bottom", "showLegend": True, "calcs": []}
    if panel.legend_table:
        legend.update(displayMode="table", calcs=["mean", "max", "lastNotNull"])
    return {
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {"legend": legend, "tooltip": {"mode": "multi", "sort": "desc"}},
    }


def _stat(panel: Panel) -> Json:
    return {
        "fieldConfig": {"defaults": _defaults(panel, "thresholds"), "overrides": []},
        "options": {
            "colorMode": "value",
            "graphMode": "none" if all(t.instant for t in panel.targets) else "area",
            "justifyMode": "auto",
            "orientation": "auto",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "textMode": "auto",
        },
    }


def _table(panel: Panel) -> Json:
    return {
        "fieldConfig": {"defaults": _defaults(panel, "thresholds"), "overrides": []},
        "options": {"cellHeight": "sm", "showHeader": True},
        "transformations": [
            {
                "id": "organize",
                "options": {"excludeByName": {"Time": True, "Value": True, "__name__": True}},
            }
        ],
    }


def _heatmap(panel: Panel) -> Json:
    return {
        "fieldConfig": {"defaults": {"custom": {"hideFrom": {"legend": False, "tooltip": False}}}, "overrides": []},
        "options": {
            "calculate": False,
            "cellGap": 1,
            "color": {"mode": "scheme", "scheme": "Oranges", "scale": "exponential", "exponent": 0.5},
            "legend": {"show": True},
            "tooltip": {"mode": "single", "yHistogram": True},
            "yAxis": {"axisPlacement": "left", "unit": panel.unit},
        },
    }


_KINDS: dict[str, Callable[[Panel], Json]] = {
    "timeseries": _timeseries,
    "stat": _stat,
    "table": _table,
    "heatmap": _heatmap,
}


def _panel(panel: Panel, panel_id: int, x: int, y: int) -> Json:
    return {
        "datasource": DATASOURCE,
        "description": panel.description,
        "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "id": panel_id,
        "targets": _targets(panel),
        "title": panel.title,
        "type": panel.kind,
        **_KINDS[panel.kind](panel),
    }


def _layout(rows: Sequence[Row]) -> list[Json]:
    """Rows top to bottom, each row's panels left to right, wrapping at Grafana's 24 columns."""
    panels: list[Json] = []
    panel_id = 0
    y = 0
    for row in rows:
        panel_id += 1
        row_json: Json = {
            "collapsed": row.collapsed,
            "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
            "id": panel_id,
            "panels": [],
            "title": row.title,
            "type": "row",
        }
        panels.append(row_json)
        y += 1
        x = 0
        line_height = 0
        for panel in row.panels:
            if x + panel.width > 24:
                x, y, line_height = 0, y + line_height, 0
            panel_id += 1
            built = _panel(panel, panel_id, x, y)
            (row_json["panels"] if row.collapsed else panels).append(built)
            x += panel.width
            line_height = max(line_height, panel.height)
        y += line_height
    return panels


def _variable(variable: Variable) -> Json:
    if not variable.query:
        return {
            "description": variable.description,
            "hide": 0,
            "label": variable.label,
            "name": variable.name,
            "query": "prometheus",
            "refresh": 1,
            "regex": "",
            "type": "datasource",
        }
    return {
        "allValue": ".+",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "datasource": DATASOURCE,
        "description": variable.description,
        "hide": 0,
        "includeAll": True,
        "label": variable.label,
        "multi": True,
        "name": variable.name,
        "options": [],
        "query": {
            "qryType": 1,
            "query": variable.query,
            "refId": "PrometheusVariableQueryEditor-VariableQuery",
        },
        "refresh": 2,
        "regex": "",
        "sort": 1,
        "type": "query",
    }


def build(spec: Spec) -> Json:
    return {
        "annotations": {"list": []},
        "description": spec.description,
        "editable": True,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "links": [
            {
                "asDropdown": False,
                "icon": "external link",
                "includeVars": True,
                "keepTime": True,
                "tags": [spec.runtime.slug],
                "targetBlank": False,
                "title": f"{spec.runtime.title} dashboards",
                "tooltip": "",
                "type": "dashboards",
            }
        ],
        "panels": _layout(spec.rows),
        "refresh": "30s",
        "schemaVersion": SCHEMA_VERSION,
        "tags": [spec.runtime.slug, "letta-exporter"],
        "templating": {"list": [_variable(v) for v in spec.variables]},
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "title": spec.title,
        "uid": spec.uid,
        "version": 1,
    }


# ------------------------------------------------------------------------------------------ dashboards

DATASOURCE_VAR = Variable("datasource", "Data source", "", "Prometheus data source with letta-exporter metrics")
JOB_VAR = Variable("job", "Job", f"label_values({m.BUILD_INFO}, job)", "Prometheus job of the exporter")
INSTANCE_VAR = Variable(
    "instance", "Instance", f'label_values({m.BUILD_INFO}{{job=~"$job"}}, instance)', "Exporter instance"
)
AGENT_VAR = Variable(
    "agent",
    "Agent",
    f"label_values({m.LETTA.names.RUNS_FINISHED}{sel()}, {m.AGENT_LABEL})",
    "Empty unless the exporter runs with per-agent labels",
)


def model_var(rt: m.Runtime) -> Variable:
    return Variable("model", "Model", f"label_values({rt.names.STEPS}{sel()}, model)", "LLM model of the steps")


# No run awaiting approval is failed or expired, so these numerators need no exclusion of their own.
FAILED = f'status="{m.STATUS_FAILED}"'
EXPIRED = f'status="{m.STATUS_EXPIRED}"'
AWAITING = m.AWAITING_APPROVAL
LLM = f'phase="{m.PHASE_LLM_REQUEST}"'
TOOL = f'phase="{m.PHASE_TOOL_EXECUTION}"'
STEP = f'phase="{m.PHASE_STEP}"'
MODEL = 'model=~"$model"'
AGENT = f'{m.AGENT_LABEL}=~"$agent"'
TOOL_FAILED = f'status="{m.TOOL_ERROR}"'
REJECTED = f'result="{m.EVENT_REJECTED}"'
UP_MAPPINGS: tuple[Json, ...] = (
    {
        "type": "value",
        "options": {
            "0": {"color": "red", "index": 0, "text": "down"},
            "1": {"color": "green", "index": 1, "text": "up"},
        },
    },
)


def _quantiles(histogram: str, *matchers: str, exemplar: bool = False) -> tuple[Target, ...]:
    return tuple(
        Target(quantile(q, histogram, "", *matchers), f"p{q * 100:g}", exemplar=exemplar) for q in (0.5, 0.95, 0.99)
    )


def _present(*panels: Panel | None) -> tuple[Panel, ...]:
    """The panels the runtime has (``None``: a panel whose families it lacks)."""
    return tuple(panel for panel in panels if panel is not None)


def overview(rt: m.Runtime) -> Spec:
    n, alert = rt.names, rt.alert_prefix
    approvals = rt.awaiting_approval
    finished_range = f"sum(increase({n.RUNS_FINISHED}{sel()}[$__range]))"
    failed_range = f"sum(increase({n.RUNS_FINISHED}{sel(FAILED)}[$__range]))"
    decided_range = decided_runs(rt, "increase", window="$__range")
    awaiting_range = f"sum(increase({n.RUNS_FINISHED}{sel(*AWAITING)}[$__range]))"
    runtime = rt.runtime_matcher
    # of every runtime: an unreadable line names none
    lines_range = f"sum(increase({m.EVENTS}{sel()}[$__range]))"
    rejected_range = f"sum(increase({m.EVENTS}{sel(REJECTED)}[$__range]))"
    stat = functools.partial(Panel, kind="stat", width=3, height=4)
    summary = Row(
        "Summary",
        _present(
            stat(
                "Letta reachable",
                "letta_up: 1 when the exporter's last poll reached Letta and understood its answers.",
                (Target(f"min({m.UP}{sel()})"),),
                unit="none",
                mappings=UP_MAPPINGS,
            )
            if rt.polled
            else None,
            stat(
                "Runs finished",
                "Runs that reached a terminal state in the selected time range"
                + (", including those awaiting approval." if approvals else "."),
                (Target(finished_range, instant=True),),
                decimals=0,
            ),
            stat(
                "Failed runs",
                "Share of the runs finished in the selected time range whose status is failed"
                + (" (failed includes runs Letta reported completed with a failure stop reason)" if rt.polled else "")
                + ("." + (" Runs awaiting approval are left out." if approvals else "")),
                (Target(ratio(failed_range, decided_range), instant=True),),
                unit="percentunit",
                threshold=ALERTS.failed_ratio,
                no_value="no runs",
            ),
            stat(
                "Awaiting approval",
                "Runs that finished in the selected time range waiting for a human to approve a tool call "
                "(completed, stop reason requires_approval). Neither successes nor failures.",
                (Target(awaiting_range, instant=True),),
                decimals=0,
            )
            if approvals
            else None,
            stat(
                "Active runs",
                "Non-terminal runs the exporter tracks (created, running, pending).",
                (Target(f"sum({n.RUNS_ACTIVE}{sel()})"),),
            ),
            stat(
                "Stuck runs",
                "Active runs older than the exporter's --stuck-after.",
                (Target(f"sum({n.RUNS_STUCK}{sel()})"),),
                threshold=1,
            ),
            stat(
                "Since last successful poll",
                "Time since the most recent successful poll of any selected exporter.",
                (Target(f"time() - max({m.LAST_POLL_SUCCESS}{sel()})"),),
                unit="s",
                threshold=int(parse_duration(ALERTS.stale_after)),
            )
            if rt.polled
            else None,
            stat(
                "Rejected event lines",
                "Share of the event lines that arrived in the selected time range and that the exporter could "
                "not read: their runs are not counted. Of every runtime, as an unreadable line names none.",
                (Target(ratio(rejected_range, lines_range), instant=True),),
                unit="percentunit",
                threshold=ALERTS.events_rejected_ratio,
                no_value="no lines",
            )
            if not rt.polled
            else None,
            stat(
                "LLM spend",
                "USD of the steps that finished in the selected time range, priced by the exporter from its "
                "price table (not a bill). Unpriced steps add nothing: see the Cost row of the by-model "
                "dashboard. Empty when the exporter runs with --no-cost.",
                (Target(f"sum(increase({n.STEP_COST}{sel()}[$__range]))", instant=True),),
                unit="currencyUSD",
                decimals=2,
                no_value="no cost data",
            ),
        ),
    )
    runs = Row(
        "Runs",
        (
            Panel(
                "Runs/s by status",
                "Runs created and runs finished per second, by terminal status."
                + (
                    " Runs awaiting a human's tool approval (completed, stop reason requires_approval) are their "
                    "own line, not in completed."
                    if approvals
                    else ""
                ),
                (
                    Target(decided_runs(rt, "rate", "status"), "{{status}}"),
                    *((Target(sum_rate(n.RUNS_FINISHED, "", *AWAITING), "awaiting approval"),) if approvals else ()),
                    Target(sum_rate(n.RUNS_CREATED), "created"),
                ),
            ),
            Panel(
                "Failed and expired share of finished runs",
                "Failed (and expired) runs as a share of the finished runs"
                + (", leaving out those awaiting approval" if approvals else "")
                + f". The dashed line is the {alert}RunFailureRatioHigh threshold. Empty when no run finished.",
                (
                    Target(ratio(sum_rate(n.RUNS_FINISHED, "", FAILED), decided_runs(rt, "rate")), "failed"),
                    Target(ratio(sum_rate(n.RUNS_FINISHED, "", EXPIRED), decided_runs(rt, "rate")), "expired"),
                ),
                unit="percentunit",
                threshold=ALERTS.failed_ratio,
            ),
            Panel(
                "Finished runs/s by stop reason",
                f"Stop reason of the finished runs (none when {rt.title} reported none).",
                (Target(sum_rate(n.RUNS_FINISHED, "stop_reason"), "{{stop_reason}}"),),
                stacked=True,
            ),
            Panel(
                "Run duration",
                f"Quantiles of the duration of finished runs ({rt.run_duration_from}).",
                _quantiles(n.RUN_DURATION, exemplar=True),
                unit="s",
            ),
            Panel(
                "Time to first token",
                f"{rt.ttft_from} The dashed line is the {alert}RunTTFTHigh threshold.",
                _quantiles(n.RUN_TTFT, exemplar=True),
                unit="s",
                threshold=ALERTS.ttft_p95_seconds,
            ),
            Panel(
                "Steps per run",
                "Median, 95th percentile and mean number of steps of the finished runs.",
                (*_quantiles(n.RUN_STEPS)[:2], Target(mean(n.RUN_STEPS), "mean")),
            ),
        ),
    )
    steps = Row(
        "Steps and tokens",
        (
            Panel(
                "Tokens/s by model and type",
                "Tokens of finished steps per second (input, output, cached_input, cache_write, reasoning).",
                (Target(sum_rate(n.STEP_TOKENS, "model, type"), "{{model}} {{type}}"),),
                legend_table=True,
            ),
            Panel(
                "Step latency by phase",
                "Median and 95th percentile of the step phases: llm_request, tool_execution and the whole step.",
                (
                    Target(quantile(0.5, n.STEP_DURATION, "phase"), "p50 {{phase}}"),
                    Target(quantile(0.95, n.STEP_DURATION, "phase"), "p95 {{phase}}", exemplar=True),
                ),
                unit="s",
            ),
            Panel(
                "Steps/s by status",
                "Finished steps per second by step status.",
                (Target(sum_rate(n.STEPS, "status"), "{{status}}"),),
                stacked=True,
            ),
            Panel(
                "Steps/s by stop reason",
                "Finished steps per second by stop reason.",
                (Target(sum_rate(n.STEPS, "stop_reason"), "{{stop_reason}}"),),
                stacked=True,
            ),
        ),
    )
    active = Row(
        "Active and stuck runs",
        (
            Panel(
                "Active runs by status",
                "Non-terminal runs the exporter tracks.",
                (Target(f"sum by (status) ({n.RUNS_ACTIVE}{sel()})", "{{status}}"),),
                width=6,
                stacked=True,
            ),
            Panel(
                "Stuck runs by status",
                f"Active runs older than the exporter's --stuck-after ({alert}RunsStuck).",
                (Target(f"sum by (status) ({n.RUNS_STUCK}{sel()})", "{{status}}"),),
                width=6,
                stacked=True,
            ),
            Panel(
                "Oldest active run age",
                "Time since the creation of the oldest run still active. Empty when none is active.",
                (Target(f"time() - min({n.RUN_OLDEST_ACTIVE_CREATED}{sel()} > 0)", "oldest"),),
                width=6,
                unit="s",
            ),
            Panel(
                "Terminal status changes/s",
                f"Counted runs whose terminal status changed later (e.g. {rt.status_change_example}). "
                "They are not counted again.",
                (Target(sum_rate(n.RUN_STATUS_CHANGES, "from, to"), "{{from}} → {{to}}"),),
                width=6,
            ),
        ),
    )
    ingest = Row(
        "Event ingest",
        (
            Panel(
                "Event lines/s by result",
                f"Lines {rt.title} pushed per second, by way in (http: POST /v1/events; redis: the stream) and "
                "by what became of them: accepted, duplicate (resent), ignored (a variant this exporter does not "
                "know), rejected (could not be read; of every runtime, as an unreadable line names none).",
                (Target(sum_rate(m.EVENTS, "transport, result", runtime), "{{transport}} {{result}}"),),
                stacked=True,
                legend_table=True,
            ),
            Panel(
                "Rejected share of event lines by transport",
                "Rejected lines as a share of all lines of the way in, of every runtime; Parse errors/s (kind "
                "invalid_event) says more. The dashed line is the LettaExporterEventsRejected threshold. Empty "
                "when no line arrived.",
                (
                    Target(
                        ratio(sum_rate(m.EVENTS, "transport", REJECTED), sum_rate(m.EVENTS, "transport")),
                        "{{transport}}",
                    ),
                ),
                unit="percentunit",
                threshold=ALERTS.events_rejected_ratio,
            ),
            Panel(
                "Late events/s",
                f"Events of {rt.title} runs that were already counted (arrived after --event-settle, or resent "
                "later): dropped, never counted twice. A steady rate means the runtime retries for longer than "
                "--event-settle.",
                (Target(sum_rate(m.LATE_EVENTS, "", f'runtime="{rt.key}"'), "late"),),
                width=8,
            ),
            Panel(
                "Event source errors/s by transport",
                "Failures reading an event way in (a lost Redis connection), retried with backoff; "
                "LettaExporterEventSourceErrors fires when they go on. Of every runtime: the metric has no "
                "runtime label.",
                (Target(sum_rate(m.EVENT_SOURCE_ERRORS, "transport"), "{{transport}}"),),
                width=8,
            ),
            Panel(
                "Steps without token usage/s by model",
                f"Steps {rt.title} reported no token usage for (behest with OpenAI streaming): they add no tokens "
                "and no cost, so the token and cost panels under-count by them.",
                (Target(sum_rate(n.STEPS_USAGE_MISSING, "model, provider"), "{{model}} ({{provider}})"),),
                width=8,
                stacked=True,
            ),
        ),
    )
    parse_errors = Panel(
        "Parse errors/s",
        "Records from Letta that the exporter could not understand, by kind."
        if rt.polled
        else "Records and event lines the exporter could not understand, by kind (invalid_event: a rejected "
        "line; unknown_event_type: an ignored one), from every source.",
        (Target(sum_rate(m.PARSE_ERRORS, "kind"), "{{kind}}"),),
        width=12 if rt.polled else 8,
    )
    letta_api = (  # Letta's REST API and the poll loop: an event runtime has neither
        Panel(
            "Letta reachable by instance",
            "letta_up per exporter instance (LettaUnreachable fires after a while at 0).",
            (Target(f"{m.UP}{sel()}", "{{instance}}"),),
            width=8,
            max=1,
            mappings=UP_MAPPINGS,
        ),
        Panel(
            "Since last successful poll by instance",
            "Per instance. The dashed line is the LettaExporterStale threshold.",
            (Target(f"time() - {m.LAST_POLL_SUCCESS}{sel()}", "{{instance}}"),),
            width=8,
            unit="s",
            threshold=int(parse_duration(ALERTS.stale_after)),
        ),
        Panel(
            "Poll duration",
            "Duration of the last poll, per instance.",
            (Target(f"{m.POLL_DURATION}{sel()}", "{{instance}}"),),
            width=8,
            unit="s",
        ),
        Panel(
            "Letta API requests/s",
            "Requests to the Letta API by route template and HTTP status (error/timeout: transport failures).",
            (Target(sum_rate(m.API_REQUESTS, "endpoint, code"), "{{endpoint}} {{code}}"),),
            legend_table=True,
        ),
        Panel(
            "Letta API errors/s",
            "Requests to the Letta API that did not answer 2xx, including transport failures.",
            (Target(sum_rate(m.API_REQUESTS, "endpoint, code", 'code!~"2.."'), "{{endpoint}} {{code}}"),),
            legend_table=True,
        ),
        Panel(
            "Letta API latency (p95)",
            "95th percentile of the request duration per route.",
            (Target(quantile(0.95, m.API_REQUEST_DURATION, "endpoint"), "{{endpoint}}"),),
            unit="s",
        ),
    )
    exporter = Row(
        "Exporter",
        _present(
            *(letta_api if rt.polled else ()),
            parse_errors,
            Panel(
                "Series folded by label caps/s",
                "Label sets that the exporter's per-metric series caps folded into other or dropped. "
                "Non-zero means a label (model, provider, agent) has more values than the cap.",
                (Target(sum_rate(m.SERIES_DROPPED, "metric"), "{{metric}}"),),
                width=8,
            ),
            Panel(
                "Tracked runs",
                "Runs held in the exporter's tracker (active plus recently finished).",
                (Target(f"{n.TRACKED_RUNS}{sel()}", "{{instance}}"),),
                width=8,
            ),
            Panel(
                "OTLP delivery/s",
                "Spans delivered to the OTLP endpoint and spans dropped (queue full, collector down); "
                "OTLP metric pushes that failed (OTEL_METRICS_EXPORTER=otlp: the next push carries the newest values).",
                (
                    Target(sum_rate(m.SPANS_EXPORTED), "spans exported"),
                    Target(sum_rate(m.SPANS_DROPPED), "spans dropped"),
                    Target(sum_rate(m.METRIC_EXPORTS_FAILED), "metric pushes failed"),
                ),
                width=8,
            ),
            Panel(
                "Letta clock offset",
                "Letta's clock minus the exporter's, from Letta's Date header. Run ages (stuck, expired) "
                "are measured on Letta's clock; a large offset means one of the two hosts lacks NTP.",
                (Target(f"{m.SERVER_CLOCK_OFFSET}{sel()}", "{{instance}}"),),
                width=8,
                unit="s",
            )
            if rt.polled
            else None,
            Panel(
                "Exporter versions",
                "letta_exporter_build_info per instance.",
                (Target(f"{m.BUILD_INFO}{sel()}", instant=True, format="table"),),
                kind="table",
                width=16,
                height=5,
            ),
        ),
    )
    if rt.polled:
        return Spec(
            rt,
            "letta-overview",
            "Letta / Overview",
            "Letta agent-server runs, steps, tokens and latency as seen by letta-exporter, and the exporter's health.",
            (DATASOURCE_VAR, JOB_VAR, INSTANCE_VAR),
            (summary, runs, steps, active, exporter),
        )
    return Spec(
        rt,
        f"{rt.slug}-overview",
        f"{rt.title} / Overview",
        f"{rt.title} runs, steps, tokens and latency from the events it pushes to letta-exporter, the event "
        "ingest, and the exporter's health.",
        (DATASOURCE_VAR, JOB_VAR, INSTANCE_VAR),
        (summary, runs, steps, active, ingest, exporter),
    )


def by_model(rt: m.Runtime) -> Spec:
    n, alert = rt.names, rt.alert_prefix
    steps_by_model = sum_rate(n.STEPS, "model", MODEL)

    def tokens(token_type: str) -> str:
        return sum_rate(n.STEP_TOKENS, "model", MODEL, f'type="{token_type}"')

    models = Row(
        "Steps by model",
        (
            Panel(
                "Steps/s by model",
                "Finished steps per second, by model and provider.",
                (Target(sum_rate(n.STEPS, "model, provider", MODEL), "{{model}} ({{provider}})"),),
                legend_table=True,
            ),
            Panel(
                "Failed step share by model",
                "Share of the finished steps whose status is failed. Empty when a model has no steps.",
                (Target(ratio(sum_rate(n.STEPS, "model", MODEL, FAILED), steps_by_model), "{{model}}"),),
                unit="percentunit",
            ),
            Panel(
                "Steps/s by model and stop reason",
                "Finished steps per second by stop reason.",
                (Target(sum_rate(n.STEPS, "model, stop_reason", MODEL), "{{model}} {{stop_reason}}"),),
                stacked=True,
            ),
            Panel(
                "Tokens per step by model",
                "Tokens of each type per finished step.",
                (
                    Target(
                        ratio(sum_rate(n.STEP_TOKENS, "model, type", MODEL), steps_by_model, on="model"),
                        "{{model}} {{type}}",
                    ),
                ),
                legend_table=True,
            ),
        ),
    )
    token_row = Row(
        "Tokens by model",
        (
            Panel(
                "Input tokens/s by model",
                "Prompt tokens per second.",
                (Target(tokens(m.TOKEN_INPUT), "{{model}}"),),
                stacked=True,
            ),
            Panel(
                "Output tokens/s by model",
                "Completion tokens per second.",
                (Target(tokens(m.TOKEN_OUTPUT), "{{model}}"),),
                stacked=True,
            ),
            Panel(
                "Cached share of input tokens by model",
                "cached_input tokens as a share of input tokens (prompt-cache hit ratio).",
                (Target(ratio(tokens(m.TOKEN_CACHED_INPUT), tokens(m.TOKEN_INPUT), on="model"), "{{model}}"),),
                unit="percentunit",
            ),
            Panel(
                "Cache write and reasoning tokens/s by model",
                "Tokens written to the prompt cache and reasoning tokens, per second.",
                (
                    Target(
                        sum_rate(
                            n.STEP_TOKENS,
                            "model, type",
                            MODEL,
                            f'type=~"{m.TOKEN_CACHE_WRITE}|{m.TOKEN_REASONING}"',
                        ),
                        "{{model}} {{type}}",
                    ),
                ),
            ),
        ),
    )
    latency = Row(
        "Latency by model",
        (
            Panel(
                "LLM request latency by model",
                "Median and 95th percentile of the llm_request step phase. The dashed line is the "
                f"{alert}StepLLMRequestSlow threshold.",
                (
                    Target(quantile(0.5, n.STEP_DURATION, "model", LLM, MODEL), "p50 {{model}}"),
                    Target(quantile(0.95, n.STEP_DURATION, "model", LLM, MODEL), "p95 {{model}}", exemplar=True),
                ),
                unit="s",
                threshold=ALERTS.llm_request_p95_seconds,
            ),
            Panel(
                "LLM request latency distribution",
                "LLM request durations of the selected models, per bucket.",
                (
                    Target(
                        f"sum by (le) ({rate(m.bucket(n.STEP_DURATION), LLM, MODEL)})",
                        "{{le}}",
                        format="heatmap",
                        exemplar=True,
                    ),
                ),
                kind="heatmap",
                unit="s",
            ),
            Panel(
                "Tool execution latency by model (p95)",
                "95th percentile of the tool_execution step phase.",
                (Target(quantile(0.95, n.STEP_DURATION, "model", TOOL, MODEL), "{{model}}"),),
                unit="s",
            ),
            Panel(
                "Step duration by model (p95)",
                "95th percentile of whole steps.",
                (Target(quantile(0.95, n.STEP_DURATION, "model", STEP, MODEL), "{{model}}"),),
                unit="s",
            ),
        ),
    )
    tools = Row(
        "Tools (needs the exporter's --tool-metrics; empty otherwise)",
        _present(
            Panel(
                "Tool calls/s by tool and status",
                f"Tool calls of finished runs, by the status of their return: {rt.tool_statuses}.",
                (Target(sum_rate(n.TOOL_CALLS, "tool, status"), "{{tool}} {{status}}"),),
                stacked=True,
                legend_table=True,
            ),
            Panel(
                "Tool error share by tool",
                "Calls whose return was an error, as a share of all calls of the tool (unknown outcomes count in "
                f"the denominator: they did not succeed either). The dashed line is the {alert}ToolErrorRatioHigh "
                "threshold.",
                (
                    Target(
                        ratio(sum_rate(n.TOOL_CALLS, "tool", TOOL_FAILED), sum_rate(n.TOOL_CALLS, "tool")), "{{tool}}"
                    ),
                ),
                unit="percentunit",
                threshold=ALERTS.tool_error_ratio,
            )
            if rt.tool_errors
            else None,
            Panel(
                "Tool duration by tool (p95)",
                "95th percentile of tool execution time, from steps that ran exactly one tool (needs step timings)."
                if rt.polled
                else f"95th percentile of the duration {rt.title} reported for each call.",
                (Target(quantile(0.95, n.TOOL_DURATION, "tool"), "{{tool}}", exemplar=True),),
                unit="s",
            )
            if rt.tool_durations
            else None,
            Panel(
                "Runs whose tool calls are not counted",
                "filtered: the run's request asked Letta to leave tool messages out of its answers "
                "(include_return_message_types); unavailable: the messages could not be read.",
                (Target(sum_rate(n.TOOL_MESSAGES_MISSING, "reason"), "{{reason}}"),),
                stacked=True,
            )
            if rt.polled
            else None,
        ),
    )
    cost = Row(
        "Cost",
        (
            Panel(
                "Cost by model (USD/h)",
                "What finished steps cost per hour, priced offline from the exporter's bundled price table "
                "(genai-prices) and --price-table.",
                (Target(f"3600 * {sum_rate(n.STEP_COST, 'model, provider', MODEL)}", "{{model}} ({{provider}})"),),
                unit="currencyUSD",
                stacked=True,
                legend_table=True,
                threshold=ALERTS.spend_usd_per_hour,
            ),
            Panel(
                "Spend over the dashboard range",
                "USD of the steps that finished in the selected time range.",
                (Target(f"sum(increase({n.STEP_COST}{sel(MODEL)}[$__range]))", instant=True),),
                kind="stat",
                unit="currencyUSD",
                width=6,
                decimals=2,
            ),
            Panel(
                "Unpriced steps/s by reason",
                "Steps that added nothing to the cost: no model, a self-hosted provider, or a model or provider "
                "the price table does not know. Add them with --price-table.",
                (Target(sum_rate(n.UNPRICED_STEPS, "reason"), "{{reason}}"),),
                width=6,
                stacked=True,
            ),
            Panel(
                "Price table",
                "letta_exporter_price_table_info: the bundled table's version and the override file, per exporter.",
                (
                    Target(
                        f"max by (instance, table, version, override, override_models) ({m.PRICE_TABLE_INFO}{sel()})",
                        instant=True,
                        format="table",
                    ),
                ),
                kind="table",
                width=24,
                height=5,
            ),
        ),
    )
    if not rt.polled:
        return Spec(
            rt,
            f"{rt.slug}-by-model",
            f"{rt.title} / By model",
            f"{rt.title} steps, tokens and latency per LLM model.",
            (DATASOURCE_VAR, JOB_VAR, INSTANCE_VAR, model_var(rt)),
            (models, token_row, latency, cost, tools),
        )
    agents = Row(
        "By agent (needs the exporter's --agent-labels; empty otherwise)",
        (
            Panel(
                "Agents",
                "letta_agent_info: the agents that have their own agent_id (allowlist or the first --max-agents "
                "seen) and their current names. A rename changes the name here, never the agent's series.",
                (
                    Target(
                        f"max by ({m.AGENT_LABEL}, {m.AGENT_NAME}) ({m.AGENT_INFO}{sel()})",
                        instant=True,
                        format="table",
                    ),
                ),
                kind="table",
                width=24,
                height=6,
            ),
            Panel(
                "Finished runs/s by agent and status",
                "Runs of agents outside the allowlist or the first --max-agents are counted under agent_id=other. "
                "Runs awaiting approval are their own line, not in completed.",
                (
                    Target(
                        named(decided_runs(rt, "rate", f"{m.AGENT_LABEL}, status", AGENT)), "{{agent_name}} {{status}}"
                    ),
                    Target(
                        named(sum_rate(n.RUNS_FINISHED, m.AGENT_LABEL, AGENT, *AWAITING)),
                        "{{agent_name}} awaiting approval",
                    ),
                ),
                legend_table=True,
            ),
            Panel(
                "Failed run share by agent",
                "Share of each agent's finished runs whose status is failed, leaving out those awaiting approval.",
                (
                    Target(
                        named(
                            ratio(
                                sum_rate(n.RUNS_FINISHED, m.AGENT_LABEL, AGENT, FAILED),
                                decided_runs(rt, "rate", m.AGENT_LABEL, AGENT),
                            )
                        ),
                        "{{agent_name}}",
                    ),
                ),
                unit="percentunit",
                threshold=ALERTS.failed_ratio,
            ),
            Panel(
                "Run duration by agent (p95)",
                "95th percentile of the duration of each agent's finished runs.",
                (Target(named(quantile(0.95, n.RUN_DURATION, m.AGENT_LABEL, AGENT)), "{{agent_name}}"),),
                unit="s",
            ),
            Panel(
                "Tokens/s by agent and type",
                "Tokens of each agent's steps per second.",
                (Target(named(sum_rate(n.STEP_TOKENS, f"{m.AGENT_LABEL}, type", AGENT)), "{{agent_name}} {{type}}"),),
                stacked=True,
                legend_table=True,
            ),
            Panel(
                "Cost by agent (USD/h)",
                "What each agent's steps cost per hour, priced from the exporter's price table.",
                (Target(named(f"3600 * {sum_rate(n.STEP_COST, m.AGENT_LABEL, AGENT)}"), "{{agent_name}}"),),
                unit="currencyUSD",
                stacked=True,
                legend_table=True,
            ),
        ),
        collapsed=True,
    )
    return Spec(
        rt,
        "letta-by-model",
        "Letta / By model and agent",
        "Letta steps, tokens and latency per LLM model, and per agent when the exporter's per-agent labels are on.",
        (DATASOURCE_VAR, JOB_VAR, INSTANCE_VAR, model_var(rt), AGENT_VAR),
        (models, token_row, latency, cost, tools, agents),
    )


BUILDERS: dict[str, Callable[[m.Runtime], Spec]] = {"overview": overview, "by-model": by_model}


def _file(rt: m.Runtime, kind: str) -> str:
    return f"{rt.slug}-{kind}.json"


DASHBOARDS: dict[str, Callable[[], Spec]] = {
    _file(rt, kind): functools.partial(builder, rt) for rt in m.RUNTIMES for kind, builder in BUILDERS.items()
}
DASHBOARD_RUNTIMES: dict[str, m.Runtime] = {_file(rt, kind): rt for rt in m.RUNTIMES for kind in BUILDERS}
"""Dashboard file name -> the runtime it shows."""
RUNTIME_DASHBOARDS: dict[str, tuple[str, ...]] = {
    rt.key: tuple(_file(rt, kind) for kind in BUILDERS) for rt in m.RUNTIMES
}
"""Runtime key (letta, behest, agent_sdk) -> its dashboard files: a live test that feeds one runtime's
events checks that every panel query of those returns data."""


def render(dashboard: Json) -> str:
    return json.dumps(dashboard, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def generate() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {name: render(build(spec())) for name, spec in DASHBOARDS.items()}


# ------------------------------------------------------------------------------------------ queries


class PanelQuery(NamedTuple):
    dashboard: str  # uid
    panel: str  # title
    ref_id: str
    expr: str
    instant: bool


def iter_panels(dashboard: Json) -> Iterator[Json]:
    """Every panel, including those inside collapsed rows, rows excluded."""
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            yield from panel.get("panels", [])
        else:
            yield panel


def panel_queries(dashboard: Json) -> list[PanelQuery]:
    """Every PromQL query of a dashboard, with its Grafana variables left in."""
    return [
        PanelQuery(dashboard["uid"], panel["title"], target["refId"], target["expr"], target.get("instant", False))
        for panel in iter_panels(dashboard)
        for target in panel.get("targets", [])
        if target.get("expr")
    ]


DEFAULT_VARIABLES: Mapping[str, str] = {
    "__rate_interval": "1m",
    "__interval": "1m",
    "__range": "1h",
    "datasource": "prometheus",
    "job": ".+",
    "instance": ".+",
    "model": ".+",
    "agent": ".+",
}
_VARIABLE = re.compile(r"\$\{([A-Za-z_]\w*)\}|\$([A-Za-z_]\w*)")  # not `$1`: label_replace's capture


def concrete(expr: str, variables: Mapping[str, str] | None = None) -> str:
    """``expr`` with Grafana's variables replaced (by :data:`DEFAULT_VARIABLES` unless given)."""
    values = {**DEFAULT_VARIABLES, **(variables or {})}

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise KeyError(f"no value for Grafana variable ${name} in {expr!r}")
        return values[name]

    return _VARIABLE.sub(replace, expr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output-dir", type=Path, default=HERE)
    parser.add_argument("--check", action="store_true", help="compare with the files instead of writing")
    args = parser.parse_args(argv)
    stale = []
    for name, text in generate().items():
        path = args.output_dir / name
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            path.write_text(text)
    if stale:
        print(f"out of date: {', '.join(stale)}; run python -m dashboards.generate", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
