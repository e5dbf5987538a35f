"""Grafana dashboards: generated (for every agent runtime, from the same builders), valid against
Grafana's own dashboard schema, variable-driven, and every panel query is valid PromQL that reads only
its runtime's metric names and returns data for series shaped like the exporter's."""

from __future__ import annotations

import copy
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple, get_args

import pytest
import yaml
from jsonschema import Draft7Validator
from prometheus_client import generate_latest

from alerts import generate as alerts
from dashboards import generate as dash
from dashboards import letta_metrics as m
from exporter.metrics import ExporterMetrics
from exporter.types import Runtime
from tests.support import tool

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / ".tools"
SCHEMAS = {"lenient": TOOLS / "dashboard.schema.json", "strict": TOOLS / "dashboard.strict.schema.json"}
GRAFANA_SCHEMA_DEFAULTS = TOOLS / "npm/node_modules/@grafana/schema/dist/cjs/raw/dashboard/x/types.gen.cjs"
README = ROOT / "README.md"
AWAITING = 'status="completed", stop_reason="requires_approval"'  # a run paused for a tool approval
INSTALL_HINT = "run `bash scripts/install-tools.sh`"
PREFIXES = "|".join(rt.key for rt in m.RUNTIMES)
METRIC = re.compile(rf"\b((?:{PREFIXES})_\w+|up)\b(\{{[^}}]*\}})?")
L = m.LETTA.names
BY_KEY = {rt.key: rt for rt in m.RUNTIMES}


def _dashboards(rt: m.Runtime | None = None) -> dict[str, dict[str, Any]]:
    """The committed dashboards (of the runtime ``rt``, else all)."""
    return {
        name: json.loads((ROOT / "dashboards" / name).read_text())
        for name in dash.DASHBOARDS
        if rt is None or dash.DASHBOARD_RUNTIMES[name] == rt
    }


def _queries(rt: m.Runtime | None = None) -> list[dash.PanelQuery]:
    return [query for dashboard in _dashboards(rt).values() for query in dash.panel_queries(dashboard)]


def _walk(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield f"{path}.{key}", value
            yield from _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, f"{path}[{index}]")


def _promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    promtool = tool("promtool")
    if promtool is None:
        pytest.skip(f"promtool is not installed: {INSTALL_HINT} (or set PROMTOOL)")
    return subprocess.run([promtool, *map(str, args)], capture_output=True, text=True, timeout=120, check=False)


def _schema(flavour: str) -> Draft7Validator:
    path = SCHEMAS[flavour]
    if not path.exists():
        pytest.skip(f"{path.relative_to(ROOT)} is missing: {INSTALL_HINT} (needs npm)")
    return Draft7Validator(json.loads(path.read_text()))


# ------------------------------------------------------------------------------ generated files


def test_committed_dashboards_are_the_generated_ones() -> None:
    for name, text in dash.generate().items():
        assert (ROOT / "dashboards" / name).read_text() == text, (
            f"dashboards/{name} is stale: run `python -m dashboards.generate`"
        )


def test_check_mode_reports_missing_and_stale_files(tmp_path: Path) -> None:
    assert dash.main(["--check", "--output-dir", str(tmp_path)]) == 1
    assert dash.main(["--output-dir", str(tmp_path)]) == 0
    assert dash.main(["--check", "--output-dir", str(tmp_path)]) == 0
    edited = tmp_path / "letta-overview.json"
    edited.write_text(edited.read_text().replace("now-6h", "now-1h"))
    assert dash.main(["--check", "--output-dir", str(tmp_path)]) == 1


def test_every_runtime_has_an_overview_and_a_by_model_dashboard() -> None:
    assert get_args(Runtime) == tuple(BY_KEY), "a dashboards.letta_metrics.Runtime per runtime the exporter counts"
    assert dash.RUNTIME_DASHBOARDS == {
        "letta": ("letta-overview.json", "letta-by-model.json"),
        "behest": ("behest-overview.json", "behest-by-model.json"),
        "agent_sdk": ("agent-sdk-overview.json", "agent-sdk-by-model.json"),
    }
    assert sorted(dash.DASHBOARDS) == sorted(path.name for path in (ROOT / "dashboards").glob("*.json"))
    dashboards = _dashboards()
    assert len({d["uid"] for d in dashboards.values()}) == len({d["title"] for d in dashboards.values()}) == 6
    for name, dashboard in dashboards.items():
        rt = dash.DASHBOARD_RUNTIMES[name]
        assert name in dash.RUNTIME_DASHBOARDS[rt.key]
        assert dashboard["uid"] == name.removesuffix(".json")
        assert dashboard["title"].startswith(f"{rt.title} / ")
        assert dashboard["tags"] == [rt.slug, "letta-exporter"]
        assert [link["tags"] for link in dashboard["links"]] == [[rt.slug]], "links to the runtime's other dashboard"


# ------------------------------------------------------------------------------ Grafana schema


@pytest.mark.parametrize("flavour", sorted(SCHEMAS))
@pytest.mark.parametrize("name", sorted(dash.DASHBOARDS))
def test_dashboard_matches_the_grafana_schema(flavour: str, name: str) -> None:
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in _schema(flavour).iter_errors(_dashboards()[name])
    ]
    assert errors == []


def test_the_schema_rejects_broken_dashboards() -> None:
    lenient, strict = _schema("lenient"), _schema("strict")
    dashboard = _dashboards()["letta-overview.json"]

    wide = copy.deepcopy(dashboard)
    wide["panels"][1]["gridPos"]["w"] = "wide"
    assert not lenient.is_valid(wide)

    unversioned = copy.deepcopy(dashboard)
    del unversioned["schemaVersion"]
    assert not lenient.is_valid(unversioned)

    typo = copy.deepcopy(dashboard)
    typo["panels"][1]["gridpos"] = typo["panels"][1].pop("gridPos")
    assert lenient.is_valid(typo)  # Grafana ignores unknown keys...
    assert not strict.is_valid(typo)  # ...the strict schema does not


def test_schema_version_is_the_current_grafana_one() -> None:
    if not GRAFANA_SCHEMA_DEFAULTS.exists():
        pytest.skip(f"@grafana/schema is not installed: {INSTALL_HINT}")
    found = re.search(r"schemaVersion: (\d+)", GRAFANA_SCHEMA_DEFAULTS.read_text())
    assert found is not None
    current = int(found.group(1))
    assert current == dash.SCHEMA_VERSION
    for dashboard in _dashboards().values():
        assert dashboard["schemaVersion"] == current


# ------------------------------------------------------------------------------ structure


def test_datasource_job_and_instance_variables_and_no_hard_coded_datasource() -> None:
    for name, dashboard in _dashboards().items():
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        assert {"datasource", "job", "instance"} <= set(variables), name
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == "prometheus"
        for var in ("job", "instance"):
            assert variables[var]["type"] == "query"
            assert variables[var]["includeAll"] and variables[var]["multi"]
        assert 'job=~"$job"' in variables["instance"]["query"]["query"]
        refs = 0
        for path, value in _walk(dashboard):
            if path.endswith(".datasource") and isinstance(value, dict):
                assert value == {"type": "prometheus", "uid": "${datasource}"}, f"{name}{path}"
                refs += 1
            if path.endswith(".uid") and path != ".uid":
                assert value == "${datasource}", f"{name}{path}: hard-coded uid {value!r}"
        assert refs > len(dash.panel_queries(dashboard)), "every panel and query names the data source"
        assert "__inputs" not in dashboard and "DS_" not in json.dumps(dashboard)


def test_every_query_filters_on_the_job_and_instance_variables() -> None:
    for query in _queries():
        selectors = METRIC.findall(query.expr)
        assert selectors, query
        for metric, matchers in selectors:
            assert 'job=~"$job"' in matchers and 'instance=~"$instance"' in matchers, f"{query}: {metric}"


def test_panels_are_laid_out_on_the_grid_without_overlap() -> None:
    for name, dashboard in _dashboards().items():
        rows = [p for p in dashboard["panels"] if p["type"] == "row"]
        ids = [p["id"] for p in rows] + [p["id"] for p in dash.iter_panels(dashboard)]
        assert len(ids) == len(set(ids)), f"{name}: duplicate panel ids"
        # Visible panels share one grid; the panels of a collapsed row have their own.
        for group in [dashboard["panels"], *(row["panels"] for row in rows if row["collapsed"])]:
            cells: set[tuple[int, int]] = set()
            for panel in group:
                pos = panel["gridPos"]
                assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, f"{name}: {panel['title']}"
                area = {
                    (x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])
                }
                assert not cells & area, f"{name}: {panel['title']} overlaps another panel"
                cells |= area


def test_panel_queries_lists_every_target_once() -> None:
    for name, dashboard in _dashboards().items():
        queries = dash.panel_queries(dashboard)
        targets = [t for p in dash.iter_panels(dashboard) for t in p["targets"]]
        assert len(queries) == len(targets) > 0, name
        assert len({(q.panel, q.ref_id) for q in queries}) == len(queries)
        titles = [p["title"] for p in dash.iter_panels(dashboard)]
        assert len(titles) == len(set(titles)), f"{name}: panel titles must be unique"
        assert {q.panel for q in queries} == set(titles), f"{name}: a panel without a query"


def test_concrete_replaces_every_grafana_variable() -> None:
    for query in _queries():
        assert not re.search(r"\$[A-Za-z_{]", dash.concrete(query.expr)), query  # `$1` is label_replace's
    assert dash.concrete('x{job=~"$job"}[$__rate_interval]', {"job": "letta"}) == 'x{job=~"letta"}[1m]'
    with pytest.raises(KeyError, match="nope"):
        dash.concrete("rate(x[$nope])")


OVERVIEW_MUST_SHOW = {
    "run rate by status": rf"sum by \(status\) \(rate\({L.RUNS_FINISHED}",
    "failure ratio": rf'{L.RUNS_FINISHED}\{{[^}}]*status="failed"[^}}]*\}}\[\$__rate_interval\]\)\) /',
    "runs awaiting approval": rf"sum \(rate\({L.RUNS_FINISHED}\{{[^}}]*{AWAITING}\}}",
    "expiry ratio": rf'{L.RUNS_FINISHED}\{{[^}}]*status="expired"',
    "stop reasons": rf"sum by \(stop_reason\) \(rate\({L.RUNS_FINISHED}",
    "run duration quantiles": rf"histogram_quantile\(0.95, sum by \(le\) \(rate\({L.RUN_DURATION}_bucket",
    "TTFT quantiles": rf"histogram_quantile\(0.95, sum by \(le\) \(rate\({L.RUN_TTFT}_bucket",
    "steps per run": rf"{L.RUN_STEPS}_bucket",
    "tokens by model and type": rf"sum by \(model, type\) \(rate\({L.STEP_TOKENS}",
    "step latency by phase": rf"sum by \(le, phase\) \(rate\({L.STEP_DURATION}_bucket",
    "active runs": rf"{L.RUNS_ACTIVE}\{{",
    "stuck runs": rf"{L.RUNS_STUCK}\{{",
    "exporter health": rf"time\(\) - {m.LAST_POLL_SUCCESS}\{{",
    "letta_up": rf"{m.UP}\{{",
    "API errors": rf'{m.API_REQUESTS}\{{[^}}]*code!~"2\.\."',
    "parse errors": rf"{m.PARSE_ERRORS}\{{",
    "spend over the range": rf"sum\(increase\({L.STEP_COST}\{{[^}}]*\}}\[\$__range\]\)\)",
}


@pytest.mark.parametrize("what", sorted(OVERVIEW_MUST_SHOW))
def test_overview_shows(what: str) -> None:
    exprs = [q.expr for q in dash.panel_queries(_dashboards()["letta-overview.json"])]
    assert any(re.search(OVERVIEW_MUST_SHOW[what], expr) for expr in exprs), what


def test_by_model_dashboard_filters_on_model_and_hides_agent_panels_in_a_collapsed_row() -> None:
    dashboard = _dashboards()["letta-by-model.json"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert {"model", "agent"} <= set(variables)
    assert variables["agent"]["allValue"] == ".+", "All must not match series without an agent label"
    rows = [p for p in dashboard["panels"] if p["type"] == "row"]
    agent_rows = [r for r in rows if "agent" in r["title"].lower()]
    assert len(agent_rows) == 1 and agent_rows[0]["collapsed"] and agent_rows[0]["panels"]
    agent_titles = {p["title"] for p in agent_rows[0]["panels"]}
    modelless = (L.TOOL_CALLS, L.TOOL_DURATION, L.TOOL_MESSAGES_MISSING, L.UNPRICED_STEPS, m.PRICE_TABLE_INFO)
    for query in dash.panel_queries(dashboard):
        if query.panel in agent_titles:
            assert f'{m.AGENT_LABEL}=~"$agent"' in query.expr or m.AGENT_INFO in query.expr, query
        elif not any(name in query.expr for name in modelless):  # series without a model label
            assert 'model=~"$model"' in query.expr, query
    assert len(agent_titles) >= 4


EVENT_RUNTIMES = [pytest.param(rt, id=rt.key) for rt in m.RUNTIMES if not rt.polled]


def _panel_titles(dashboard: dict[str, Any]) -> set[str]:
    return {p["title"] for p in dash.iter_panels(dashboard)} | {p["title"] for p in dashboard["panels"]}


@pytest.mark.parametrize("rt", EVENT_RUNTIMES)
def test_event_runtime_overview_shows_its_ingest(rt: m.Runtime) -> None:
    (overview,) = (d for name, d in _dashboards(rt).items() if name.endswith("-overview.json"))
    exprs = [q.expr for q in dash.panel_queries(overview)]
    lines = re.escape(rt.runtime_matcher)  # the runtime's lines and the rejected ones, which name none
    rejected = 'result="rejected"'
    must_show = {
        "lines by way in and result": rf"sum by \(transport, result\) \(rate\({m.EVENTS}\{{[^}}]*{lines}\}}",
        "rejected share": rf"sum by \(transport\) \(rate\({m.EVENTS}\{{[^}}]*{rejected}\}}\[\$__rate_interval\]\)\) /",
        "rejected over the range": rf"increase\({m.EVENTS}\{{[^}}]*{rejected}\}}\[\$__range\]",
        "late events": rf'{m.LATE_EVENTS}\{{[^}}]*runtime="{rt.key}"\}}',
        "event source errors": rf"sum by \(transport\) \(rate\({m.EVENT_SOURCE_ERRORS}\{{",
        "steps without usage": rf"sum by \(model, provider\) \(rate\({rt.names.STEPS_USAGE_MISSING}\{{",
        "failure ratio": rf'{rt.names.RUNS_FINISHED}\{{[^}}]*status="failed"[^}}]*\}}\[\$__rate_interval\]\)\) /',
        "stuck runs": rf"{rt.names.RUNS_STUCK}\{{",
    }
    missing = [what for what, pattern in must_show.items() if not any(re.search(pattern, e) for e in exprs)]
    assert missing == []
    assert "Event ingest" in _panel_titles(overview)
    others = [other.key for other in m.RUNTIMES if other != rt]
    assert not [e for e in exprs for key in others if re.search(rf'runtime=~?"{key}', e)], "another runtime's events"


@pytest.mark.parametrize("rt", EVENT_RUNTIMES)
def test_event_runtime_dashboards_leave_out_what_only_letta_has(rt: m.Runtime) -> None:
    """No Letta API/poll health, no agents (no agent ids on an event runtime's wire), and nothing its
    runs cannot have: every such query would stay empty forever."""
    for name, dashboard in _dashboards(rt).items():
        text = json.dumps(dashboard)
        assert not [n for n in m.LETTA_ONLY if n in text], name
        assert m.AGENT_LABEL not in text and "$agent" not in text, name
        # neither Letta's words nor its alerts (the exporter's own, LettaExporter*, serve every runtime)
        assert not re.search(r"\bLetta\b|Letta(?!Exporter)[A-Z]", text), name
        variables = [v["name"] for v in dashboard["templating"]["list"]]
        assert variables == ["datasource", "job", "instance", *(["model"] if "by-model" in name else [])]
        exprs = [q.expr for q in dash.panel_queries(dashboard)]
        if not rt.awaiting_approval:
            assert not [e for e in exprs if m.STOP_REASON_REQUIRES_APPROVAL in e], name
        if not rt.tool_errors:
            assert not [e for e in exprs if rt.names.TOOL_CALLS in e and "status=" in e], name
        if not rt.tool_durations:
            assert not [e for e in exprs if rt.names.TOOL_DURATION in e], name
        for query in dash.panel_queries(dashboard):  # every by-model panel filters on the model variable
            modelless = (rt.names.TOOL_CALLS, rt.names.TOOL_DURATION, rt.names.UNPRICED_STEPS, m.PRICE_TABLE_INFO)
            if "by-model" in name and not any(family in query.expr for family in modelless):
                assert 'model=~"$model"' in query.expr, query


def test_alert_thresholds_are_drawn_on_the_matching_panels() -> None:
    settings = alerts.Settings()
    expected = {
        "Failed and expired share of finished runs": settings.failed_ratio,
        "Time to first token": settings.ttft_p95_seconds,
        "LLM request latency by model": settings.llm_request_p95_seconds,
        "Tool error share by tool": settings.tool_error_ratio,
        "Rejected share of event lines by transport": settings.events_rejected_ratio,
    }
    drawn: dict[str, int] = dict.fromkeys(expected, 0)
    for name, dashboard in _dashboards().items():
        rt = dash.DASHBOARD_RUNTIMES[name]
        for panel in dash.iter_panels(dashboard):
            if panel["title"] not in expected:
                continue
            defaults = panel["fieldConfig"]["defaults"]
            assert defaults["thresholds"]["steps"][-1]["value"] == expected[panel["title"]], (name, panel["title"])
            assert defaults["custom"]["thresholdsStyle"]["mode"] != "off", (name, panel["title"])
            alert = re.search(r"the (\w+) threshold", panel["description"])
            assert alert and alert.group(1).startswith((rt.alert_prefix, "LettaExporter")), (name, panel["title"])
            drawn[panel["title"]] += 1
    # on every runtime's dashboards, except the tool error share that behest cannot have, and the
    # event ingest that Letta has not
    assert drawn == {
        "Failed and expired share of finished runs": 3,
        "Time to first token": 3,
        "LLM request latency by model": 3,
        "Tool error share by tool": 2,
        "Rejected share of event lines by transport": 2,
    }


# ------------------------------------------------------------------------------ PromQL


def test_panel_queries_are_valid_promql(tmp_path: Path) -> None:
    rules = [{"record": f"panel:q{i}", "expr": dash.concrete(q.expr)} for i, q in enumerate(_queries())]
    valid = tmp_path / "panels.rules.yml"
    valid.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    result = _promtool("check", "rules", valid)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout

    rules[0]["expr"] = rules[0]["expr"].replace(")", "", 1)
    broken = tmp_path / "broken.rules.yml"
    broken.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    assert _promtool("check", "rules", broken).returncode != 0


INSTANCE = "exporter:9813"


def _series(metric: str, labels: str = "", values: str = "0+1x120", instance: str = INSTANCE) -> dict[str, str]:
    extra = f", {labels}" if labels else ""
    return {"series": f'{metric}{{job="letta-exporter", instance="{instance}"{extra}}}', "values": values}


class Wire(NamedTuple):
    """What a runtime's runs look like on /metrics (design.md §3, docs/event-sources.md §4-§6). Written
    from the design, not from the dashboards, so a panel reading a label value or family that the
    runtime never has finds nothing."""

    completed: str  # stop reason of a completed run
    failed: str  # ...and of a failed one
    tools: tuple[str, ...]  # tool call statuses
    agents: bool  # --agent-labels adds agent_id
    awaiting: bool  # runs end completed / requires_approval
    tool_durations: bool
    polled: bool  # Letta's REST API: the API and poll families; otherwise events pushed to the exporter


WIRE = {
    "letta": Wire("end_turn", "llm_api_error", ("success", "error", "unknown"), True, True, True, True),
    "behest": Wire("stop", "max_iterations", ("unknown", "not_executed"), False, False, False, False),
    "agent_sdk": Wire(
        "none", "max_turns", ("success", "error", "blocked", "awaiting_confirmation"), False, True, True, False
    ),
}


def _labels(*labels: str) -> str:
    return ", ".join(filter(None, labels))


def _agent(rt: m.Runtime, agent: str = "agent-1") -> str:
    return f'agent_id="{agent}"' if WIRE[rt.key].agents else ""


def _finished_runs(rt: m.Runtime, instance: str = INSTANCE, awaiting: str = "0+1x120") -> list[dict[str, str]]:
    """Finished runs of every kind the ratios tell apart; ``awaiting``: the runs awaiting approval."""
    wire, finished = WIRE[rt.key], rt.names.RUNS_FINISHED
    series = [
        _series(
            finished, _labels(f'status="completed", stop_reason="{wire.completed}"', _agent(rt)), "0+2x120", instance
        ),
        _series(finished, _labels(f'status="failed", stop_reason="{wire.failed}"', _agent(rt)), instance=instance),
        _series(finished, _labels('status="expired", stop_reason="none"', _agent(rt, "other")), instance=instance),
    ]
    if wire.awaiting:
        series.append(_series(finished, _labels(AWAITING, _agent(rt)), awaiting, instance))
    return series


def _histogram(name: str, labels: str = "") -> list[dict[str, str]]:
    extra = f"{labels}, " if labels else ""
    return [
        *(_series(m.bucket(name), f'{extra}le="{le}"', f"0+{n}x120") for le, n in (("1", 1), ("10", 3), ("+Inf", 4))),
        _series(m.total(name), labels, "0+12x120"),
        _series(m.count(name), labels, "0+4x120"),
    ]


def _runtime_series(rt: m.Runtime) -> list[dict[str, str]]:
    """One of each series of a runtime's families, with per-agent labels on where it has them."""
    n, wire = rt.names, WIRE[rt.key]
    model = 'model="gpt-4o", provider="openai"'
    active = "created" if wire.polled else "running"  # an event run is running from its first event
    series = [
        _series(n.RUNS_CREATED, "", "0+4x120"),
        *_finished_runs(rt),
        *_histogram(n.RUN_DURATION, _labels('status="completed"', _agent(rt))),
        *_histogram(n.RUN_TTFT),
        _series(
            n.RUN_STATUS_CHANGES, 'from="cancelled", to="completed"' if wire.polled else 'from="expired", to="failed"'
        ),
        *_histogram(n.RUN_STEPS, 'status="completed"'),
        _series(n.RUNS_ACTIVE, f'status="{active}"', "3x120"),
        _series(n.RUNS_STUCK, f'status="{active}"', "1x120"),
        _series(n.RUN_OLDEST_ACTIVE_CREATED, "", "60x120"),
        _series(n.STEPS, f'status="success", stop_reason="{wire.completed}", {model}', "0+3x120"),
        _series(n.STEPS, f'status="failed", stop_reason="{wire.failed}", {model}'),
        *(
            _series(n.STEP_TOKENS, _labels(f'type="{t}", {model}', _agent(rt)), "0+100x120")
            for t in ("input", "output", "cached_input", "cache_write", "reasoning")
        ),
        *(
            series
            for phase in ("llm_request", "tool_execution", "step")
            for series in _histogram(n.STEP_DURATION, f'phase="{phase}", {model}')
        ),
        _series(n.TRACKED_RUNS, "", "5x120"),
        _series(n.STEP_COST, _labels(model, _agent(rt)), "0+0.01x120"),
        _series(n.UNPRICED_STEPS, 'reason="self_hosted"'),
        *(
            _series(n.TOOL_CALLS, _labels(f'tool="web_search", status="{status}"', _agent(rt)), f"0+{3 - i % 2}x120")
            for i, status in enumerate(wire.tools)
        ),
    ]
    if wire.tool_durations:
        series += _histogram(n.TOOL_DURATION, 'tool="web_search"')
    if wire.polled:
        series.append(_series(n.TOOL_MESSAGES_MISSING, 'reason="filtered"'))
    else:
        series.append(_series(n.STEPS_USAGE_MISSING, model))
    return series


def _exporter_like_series() -> list[dict[str, str]]:
    """Every runtime's series, Letta's API and poll series, and the exporter's own health."""
    return [
        *(series for rt in m.RUNTIMES for series in _runtime_series(rt)),
        _series(m.UP, "", "1x120"),
        _series(m.LAST_POLL_SUCCESS, "", "0+60x120"),
        _series(m.POLL_DURATION, "", "0.5x120"),
        _series(m.API_REQUESTS, 'endpoint="/v1/runs/", code="200"', "0+4x120"),
        _series(m.API_REQUESTS, 'endpoint="/v1/runs/{run_id}/steps", code="timeout"'),
        *_histogram(m.API_REQUEST_DURATION, 'endpoint="/v1/runs/"'),
        _series(m.SERVER_CLOCK_OFFSET, "", "0x120"),
        _series(m.AGENT_INFO, 'agent_id="agent-1", agent_name="support-bot"', "1x120"),
        _series(m.BUILD_INFO, 'version="0.1.0", python_version="3.11.7"', "1x120"),
        _series(m.PARSE_ERRORS, 'kind="invalid_run"'),
        _series(m.SPANS_EXPORTED, "", "0+10x120"),
        _series(m.SPANS_DROPPED),
        _series(m.METRIC_EXPORTS_FAILED),
        _series(m.SERIES_DROPPED, 'metric="letta_steps"'),
        _series(m.PRICE_TABLE_INFO, 'table="genai-prices", version="0.2.3", override="", override_models="0"', "1x120"),
        *(
            _series(m.EVENTS, f'runtime="{runtime}", transport="{transport}", result="{result}"', values)
            for runtime, transport in (("behest", "http"), ("behest", "redis"), ("agent_sdk", "http"))
            for result, values in (("accepted", "0+20x120"), ("duplicate", "0x120"), ("ignored", "0+1x120"))
        ),
        # an unreadable line names no runtime
        _series(m.EVENTS, 'runtime="unknown", transport="http", result="rejected"'),
        _series(m.EVENTS, 'runtime="unknown", transport="redis", result="rejected"'),
        *(_series(m.LATE_EVENTS, f'runtime="{runtime}"') for runtime in ("behest", "agent_sdk")),
        _series(m.EVENT_SOURCE_ERRORS, 'transport="redis"'),
    ]


def _evaluate(
    tmp_path: Path, series: list[dict[str, str]], alerts: dict[str, str], firing: set[str]
) -> subprocess.CompletedProcess[str]:
    """promtool's unit test of ``alerts`` (name -> expression) on ``series`` at 100m, after more
    than $__range (1h) of data: those in ``firing`` must fire (without labels), the others not."""
    rules = [{"alert": name, "expr": expr} for name, expr in alerts.items()]
    (tmp_path / "panels.rules.yml").write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    checks = [
        {"eval_time": "100m", "alertname": name, "exp_alerts": [{"exp_labels": {}}] if name in firing else []}
        for name in alerts
    ]
    unit_test = {
        "rule_files": ["panels.rules.yml"],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series, "alert_rule_test": checks}],
    }
    (tmp_path / "panels.test.yml").write_text(yaml.safe_dump(unit_test, sort_keys=False))
    return _promtool("test", "rules", tmp_path / "panels.test.yml")


def _failed(result: subprocess.CompletedProcess[str], prefix: str) -> list[int]:
    """The numbers of the alerts named ``<prefix><number>`` that promtool reports as failed."""
    return sorted({int(i) for i in re.findall(rf"alertname: {prefix}(\d+)", result.stdout + result.stderr)})


def _listing(queries: list[dash.PanelQuery], numbers: list[int]) -> str:
    return "\n".join(f"  {q.dashboard} / {q.panel} ({q.ref_id}): {q.expr}" for q in (queries[i] for i in numbers))


def test_every_panel_query_returns_data_for_exporter_like_series(tmp_path: Path) -> None:
    """Each query becomes an alert `absent(<query>)`: promtool reports any that returns nothing.
    A control query with a misspelled metric must fire, so the harness itself is checked."""
    queries = _queries()
    control = dash.concrete(queries[0].expr).replace(m.UP, "letta_upp")
    alerts = {f"Q{i}": f"absent({dash.concrete(q.expr)})" for i, q in enumerate(queries)}
    alerts["Control"] = f"absent({control})"
    result = _evaluate(tmp_path, _exporter_like_series(), alerts, {"Control"})
    empty = _failed(result, "Q")
    assert empty == [], "queries that return nothing:\n" + _listing(queries, empty)
    assert result.returncode == 0, result.stdout + result.stderr


def _awaiting_exclusion(rt: m.Runtime) -> re.Pattern[str]:
    return re.compile(rf" unless \w+\({rt.names.RUNS_FINISHED}\{{[^}}]*requires_approval[^}}]*\}}\[[^\]]+\]\)")


@pytest.mark.parametrize("rt", [pytest.param(rt, id=rt.key) for rt in m.RUNTIMES if rt.awaiting_approval])
def test_runs_awaiting_approval_are_in_no_run_ratio_and_have_their_own_series(tmp_path: Path, rt: m.Runtime) -> None:
    """Two exporters with the same decided runs, one of them also with a burst of runs awaiting
    approval (25 a minute against 4 decided; the other's series stays at 0, as the exporter
    pre-initialises it). Every run ratio panel must show the same for both: those runs are in
    neither numerator nor denominator. Control: with its exclusion cut out, each ratio differs
    (the burst dilutes it), so the comparison can tell. The awaiting-approval series show the
    burst, and 0 for the other exporter."""
    units = {
        p["title"]: p["fieldConfig"]["defaults"].get("unit")
        for d in _dashboards().values()
        for p in dash.iter_panels(d)
    }
    exclusion = _awaiting_exclusion(rt)
    queries = [q for q in _queries(rt) if rt.names.RUNS_FINISHED in q.expr]
    ratios = [i for i, q in enumerate(queries) if units[q.panel] == "percentunit"]
    awaiting = [i for i, q in enumerate(queries) if AWAITING in q.expr and not exclusion.search(q.expr)]
    by_agent = ("Finished runs/s by agent and status",) if rt.polled else ()  # Failed run share by agent
    assert len(ratios) == 3 + len(by_agent)
    assert {queries[i].dashboard for i in ratios} == {f"{rt.slug}-overview", *(f"{rt.slug}-by-model" for _ in by_agent)}
    assert {queries[i].panel for i in awaiting} == {"Awaiting approval", "Runs/s by status", *by_agent}

    def on(instance: str, expr: str) -> str:
        return dash.concrete(expr, {"instance": instance})

    def differs(expr: str) -> str:
        return f"abs({on('burst:9813', expr)} - {on('calm:9813', expr)}) > 1e-9"

    alerts = {}
    for i in ratios:
        expr = queries[i].expr
        assert exclusion.search(expr), f"{queries[i]}: runs awaiting approval are not left out"
        alerts[f"Same{i}"] = f"{differs(expr)} or absent({on('calm:9813', expr)})"
        alerts[f"Control{i}"] = f"count({differs(exclusion.sub('', expr))})"
    for i in awaiting:
        expr = queries[i].expr
        alerts[f"Awaiting{i}"] = f"{on('calm:9813', expr)} != 0 or absent({on('burst:9813', expr)} > 0)"
    series = [*_finished_runs(rt, "calm:9813", "0x120"), *_finished_runs(rt, "burst:9813", "0+25x120")]
    result = _evaluate(tmp_path, series, alerts, {name for name in alerts if name.startswith("Control")})
    wrong = _failed(result, "(?:Same|Control|Awaiting)")
    assert wrong == [], "queries that count runs awaiting approval wrongly:\n" + _listing(queries, wrong)
    assert result.returncode == 0, result.stdout + result.stderr


def _labelled(**labels: str) -> str:
    """A one-sample vector with ``labels``, to pick series out of a query's result with ``and on``."""
    expr = "vector(1)"
    for name, value in labels.items():
        expr = f'label_replace({expr}, "{name}", "{value}", "", "")'
    return expr


def _per_agent_series(instance: str, name: str) -> list[dict[str, str]]:
    """Every per-agent family for agent-1 (named ``name`` by this exporter) and for other (no name)."""
    model = 'model="gpt-4o", provider="openai"'
    series = [_series(m.AGENT_INFO, f'agent_id="agent-1", agent_name="{name}"', "1x120", instance)]
    for agent in ("agent-1", "other"):
        a = f'agent_id="{agent}"'
        series += [
            _series(L.RUNS_FINISHED, f'status="completed", stop_reason="end_turn", {a}', "0+2x120", instance),
            _series(L.RUNS_FINISHED, f'status="failed", stop_reason="error", {a}', instance=instance),
            _series(L.RUNS_FINISHED, f"{AWAITING}, {a}", instance=instance),
            _series(L.STEP_TOKENS, f'type="input", {model}, {a}', "0+100x120", instance),
            _series(L.STEP_COST, f"{model}, {a}", "0+0.01x120", instance),
            _series(L.TOOL_CALLS, f'tool="web_search", status="success", {a}', instance=instance),
            *(
                _series(m.bucket(L.RUN_DURATION), f'status="completed", {a}, le="{le}"', f"0+{n}x120", instance)
                for le, n in (("10", 1), ("+Inf", 2))
            ),
        ]
    return series


def test_by_agent_panels_show_each_agent_once_by_name_or_else_by_id(tmp_path: Path) -> None:
    """Every query joining names from letta_agent_info, on two exporters that name agent-1 differently
    (names change, ids never; one exporter saw the rename first) and know no name for other. Each
    query must show agent-1 under exactly one name and never under its id, and other under its id:
    a query that errors on the two names, or drops the agents without a name, fails."""
    queries = [q for q in _queries() if f"group_left ({m.AGENT_NAME})" in q.expr]
    assert {q.panel for q in queries} >= {
        "Finished runs/s by agent and status",
        "Failed run share by agent",
        "Run duration by agent (p95)",
        "Tokens/s by agent and type",
        "Cost by agent (USD/h)",
    }
    agent_1 = _labelled(agent_id="agent-1")
    alerts = {}
    for i, q in enumerate(_queries()):
        if q not in queries:
            continue
        expr = dash.concrete(q.expr)
        alerts[f"Named{i}"] = f"count(count by ({m.AGENT_NAME}) (({expr}) and on ({m.AGENT_LABEL}) {agent_1})) == 1"
        alerts[f"ById{i}"] = f"count(({expr}) and on ({m.AGENT_NAME}) {_labelled(agent_name='agent-1')}) > 0"
        alerts[f"Other{i}"] = f"count(({expr}) and on ({m.AGENT_LABEL}, {m.AGENT_NAME}) " + (
            f"{_labelled(agent_id='other', agent_name='other')}) > 0"
        )
    series = [*_per_agent_series("a:9813", "support-bot"), *_per_agent_series("b:9813", "help-bot")]
    firing = {name for name in alerts if not name.startswith("ById")}
    result = _evaluate(tmp_path, series, alerts, firing)
    wrong = _failed(result, "(?:Named|ById|Other)")
    assert wrong == [], "by-agent queries that show an agent wrongly:\n" + _listing(_queries(), wrong)
    assert result.returncode == 0, result.stdout + result.stderr


# ------------------------------------------------------------------------------ metric names


def _names(exprs: list[str]) -> set[str]:
    names = {name for expr in exprs for name, _ in METRIC.findall(expr)}
    return {re.sub(r"_(bucket|sum|count)$", "", n) if n.endswith(("_bucket", "_sum", "_count")) else n for n in names}


def _dashboard_exprs(dashboard: dict[str, Any]) -> list[str]:
    exprs = [q.expr for q in dash.panel_queries(dashboard)]
    return exprs + [v["query"]["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]


EVERYTHING = alerts.Settings(spend_usd_per_hour=1)  # the opt-in alerts too


def _names_used() -> set[str]:
    exprs = [expr for dashboard in _dashboards().values() for expr in _dashboard_exprs(dashboard)]
    exprs += [r["expr"] for g in alerts.rule_groups(EVERYTHING)["groups"] for r in g["rules"]]
    return _names(exprs)


def test_dashboards_and_alerts_use_only_catalogued_metric_names() -> None:
    assert _names_used() - {"up"} <= set(m.ALL)


def test_each_dashboard_and_rule_group_reads_only_its_runtimes_names() -> None:
    """A behest dashboard or rule reads behest_* families, never another runtime's, and none of
    Letta's API families; the exporter's own group reads only the exporter's health and Letta's API."""
    for name, dashboard in _dashboards().items():
        rt = dash.DASHBOARD_RUNTIMES[name]
        assert _names(_dashboard_exprs(dashboard)) - rt.known() == set(), name
    groups = {g["name"]: [r["expr"] for r in g["rules"]] for g in alerts.rule_groups(EVERYTHING)["groups"]}
    assert sorted(groups) == list(groups) == sorted([*(rt.slug for rt in m.RUNTIMES), "letta-exporter"])
    for rt in m.RUNTIMES:
        assert _names(groups[rt.slug]) - rt.known() == set(), rt.slug
        assert {name for name in _names(groups[rt.slug]) if name.startswith(f"{rt.key}_")}, rt.slug
    assert _names(groups["letta-exporter"]) - {"up"} <= {*m.LETTA_ONLY, *m.SHARED}
    for rt in m.RUNTIMES:  # every family of a runtime is read by its dashboards or alerts, unless never filled
        used = _names([e for d in _dashboards(rt).values() for e in _dashboard_exprs(d)] + groups[rt.slug])
        assert set(rt.names.ALL) - used == _never_filled(rt), rt.key


def _never_filled(rt: m.Runtime) -> set[str]:
    """The families the exporter has for ``rt`` that stay empty: no panel or alert reads them."""
    lacks = {
        rt.names.TOOL_MESSAGES_MISSING: not rt.polled,  # Letta's tool messages, read over its API
        rt.names.TOOL_DURATION: not rt.tool_durations,
        rt.names.STEPS_USAGE_MISSING: rt.polled,  # Letta reports usage on every step
    }
    return {name for name, lacking in lacks.items() if lacking}


def _exposed(metrics: ExporterMetrics) -> set[str]:
    exposition = generate_latest(metrics.registry).decode()
    return {
        name
        for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", exposition, flags=re.M)
        if not (kind == "gauge" and name.endswith("_created"))
    }


def test_catalogued_names_are_the_ones_the_exporter_exposes() -> None:
    """Without event ways in, Letta's families and the exporter's health; with both event runtimes,
    everything catalogued."""
    opt_in = {m.AGENT_INFO, m.PRICE_TABLE_INFO}
    metrics = ExporterMetrics()
    assert _exposed(metrics) == m.LETTA.known() - opt_in
    for key in get_args(Runtime):  # the keys of m.RUNTIMES (test_every_runtime_has_...)
        if not BY_KEY[key].polled:
            metrics.add_runtime(key)
    exposed = _exposed(metrics)
    assert set(m.ALL) - opt_in == exposed
    unread = exposed - _names_used()
    assert unread == {name for rt in m.RUNTIMES for name in _never_filled(rt)}, (
        f"not on any dashboard or alert: {unread}"
    )


def test_catalogue_covers_the_documented_contract() -> None:
    """The README's metric table is the project's copy of the contract (design.md §3)."""
    section = README.read_text().split("## Metrics", 1)[1].split("\n## ", 1)[0]
    contract = set(re.findall(rf"`((?:{PREFIXES})_\w+)`", section))
    assert len(contract) > 20, "no metric table found in README.md"
    assert contract <= set(m.ALL), f"missing from dashboards/letta_metrics.py: {contract - set(m.ALL)}"
