"""The dashboards and alert rules against live data: the simulator and the exporter run, a real
Prometheus scrapes the exporter and evaluates alerts/letta-exporter.rules.yml (the session `stack`
fixture in conftest.py), and every panel query and alert expression is sent to Prometheus's HTTP API
with the Grafana variables filled in as Grafana would fill them.

Panels that stay empty are listed in EXPECTED_EMPTY with the reason; the test checks the empty
panels are exactly those, so a panel that newly finds nothing (a renamed metric or label, a
broken query) fails here.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import re
import time
from pathlib import Path
from typing import Any

import httpx2
import pytest
import yaml

from alerts import generate as alerts
from dashboards import generate as dash
from exporter.simulator.agent_sdk_runs import SDK_MODELS
from exporter.simulator.behest_runs import BEHEST_MODELS
from tests.stack import Stack
from tests.support import ROOT, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.prometheus]

DASHBOARDS = sorted((ROOT / "dashboards").glob("*.json"))
OVERVIEW = ROOT / "dashboards" / "letta-overview.json"
# What Grafana substitutes, for a 1 s scrape interval: $__rate_interval = max(4 x scrape interval,
# $__interval + scrape interval) rounded up to a comfortable 15s; "All" for the multi-value variables
# (their allValue is .+); $__range from each dashboard's default time range.
VARIABLES = {"instance": ".+", "model": ".+", "agent": ".+", "__rate_interval": "15s", "__interval": "1s"}

# the live stack runs with every breakdown on
EXPECTED_EMPTY: dict[tuple[str, str, str], str] = {
    ("behest-by-model", "Failed step share by model", "A"): "behest fails runs only between model calls "
    "(iteration limit, token budget, doom loop): no step of its is ever failed on the wire",
}
EXPECTED_EMPTY_VARIABLES: dict[str, str] = {}


def _get(stack: Stack, path: str, **params: Any) -> Any:
    body = httpx2.get(f"{stack.prometheus_url}{path}", params=params, timeout=10).json()
    assert body["status"] == "success", (path, params, body)
    return body["data"]


def _query(stack: Stack, promql: str, at: float | None = None) -> list[dict[str, Any]]:
    """The instant query's result, now or at the Unix time ``at``."""
    params = {"query": promql} if at is None else {"query": promql, "time": at}
    return list(_get(stack, "/api/v1/query", **params)["result"])


def _has_data(result: list[dict[str, Any]]) -> bool:
    """A sample with a number: histogram_quantile over no observations gives NaN, which Grafana draws as nothing."""
    return any(not math.isnan(float(sample["value"][1])) for sample in result)


def _dashboard(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


def _range(dashboard: dict[str, Any]) -> str:
    match = re.fullmatch(r"now-(\w+)", dashboard["time"]["from"])
    assert match and dashboard["time"]["to"] == "now", dashboard["time"]
    return match.group(1)


def _queries(stack: Stack) -> dict[tuple[str, str, str], str]:
    """(dashboard uid, panel title, refId) -> the query with the variables substituted."""
    out = {}
    for path in DASHBOARDS:
        dashboard = _dashboard(path)
        variables = {**VARIABLES, "job": stack.job, "__range": _range(dashboard)}
        for query in dash.panel_queries(dashboard):
            out[query.dashboard, query.panel, query.ref_id] = dash.concrete(query.expr, variables)
    return out


def _rules(stack: Stack) -> list[dict[str, Any]]:
    return [
        {"group": group["name"], **rule}
        for group in yaml.safe_load(stack.rules_file.read_text())["groups"]
        for rule in group["rules"]
    ]


@pytest.fixture(scope="module")
def live(stack: Stack) -> Stack:
    """The stack once Prometheus holds every kind of event the simulator produces: finished runs,
    failed ones and ones awaiting approval, TTFT observations, stuck runs and expired runs. (A
    cancelled-then-completed change is only seen when a poll falls between the two; its series
    exists from the start, at 0.)"""
    job = f'job="{stack.job}"'
    for what, promql in (
        ("finished runs", f"sum(letta_runs_finished_total{{{job}}}) > 0"),
        ("failed runs", f'sum(letta_runs_finished_total{{{job}, status="failed"}}) > 0'),
        (
            "runs awaiting approval",
            f'sum(letta_runs_finished_total{{{job}, status="completed", stop_reason="requires_approval"}}) > 0',
        ),
        ("TTFT observations", f"sum(letta_run_ttft_seconds_count{{{job}}}) > 0"),
        ("stuck runs", f"max_over_time(sum(letta_runs_stuck{{{job}}})[1m:1s]) > 0"),
        ("expired runs", f'sum(letta_runs_finished_total{{{job}, status="expired"}}) > 0'),
    ):
        try:
            wait_until(functools.partial(_query, stack, promql), timeout=45, what=f"{what} in Prometheus")
        except AssertionError as exc:  # say what Prometheus and the exporter were doing
            targets = [(t["health"], t["lastError"]) for t in _get(stack, "/api/v1/targets")["activeTargets"]]
            seen = {q: _query(stack, q) for q in ("letta_up", "sum by (status) (letta_runs_finished_total)")}
            raise AssertionError(f"{exc}\ntargets: {targets}\n{seen}") from None
    return stack


def test_the_expected_empty_panels_exist() -> None:
    """No stale entries: every panel named in EXPECTED_EMPTY is one of the dashboards' queries."""
    names = {(q.dashboard, q.panel, q.ref_id) for path in DASHBOARDS for q in dash.panel_queries(_dashboard(path))}
    assert len(DASHBOARDS) >= 2
    assert set(EXPECTED_EMPTY) <= names


def test_dashboard_variables_resolve_to_the_live_series(live: Stack) -> None:
    """Each query variable's label_values() as Grafana runs it: the real job, the exporter's instance, the models."""
    resolved: dict[str, set[str]] = {}
    for path in DASHBOARDS:
        for variable in _dashboard(path)["templating"]["list"]:
            if variable["type"] != "query":
                continue
            match = re.fullmatch(r"label_values\((.+), (\w+)\)", variable["query"]["query"])
            assert match, variable
            selector = dash.concrete(match.group(1), {**VARIABLES, "job": live.job})
            values = set(_get(live, f"/api/v1/label/{match.group(2)}/values", **{"match[]": selector}))
            resolved.setdefault(variable["name"], set()).update(values)
    assert resolved["job"] == {live.job}
    assert resolved["instance"] == {live.exporter_url.removeprefix("http://")}
    agents = httpx2.get(f"{live.simulator_url}/_sim/truth", timeout=10).json()["agents"]
    hosts = {*BEHEST_MODELS.values(), *(model for model, _provider in SDK_MODELS)}  # the event feed's
    assert resolved["model"] == {agent["model"] for agent in agents} | hosts
    assert {name for name, values in resolved.items() if not values} == set(EXPECTED_EMPTY_VARIABLES)


def test_every_panel_query_returns_data_except_the_listed_ones(live: Stack) -> None:
    queries = _queries(live)
    assert len(queries) > 40

    def empty() -> set[tuple[str, str, str]]:
        return {key for key, promql in queries.items() if not _has_data(_query(live, promql))}

    # rates over 15s windows: poll until every panel that can have data has it (on timeout the
    # assertions below name the panels)
    with contextlib.suppress(AssertionError):
        wait_until(lambda: empty() == set(EXPECTED_EMPTY), timeout=30, what="data in every panel")
    found = empty()
    unexpected = sorted(found - set(EXPECTED_EMPTY))
    assert not unexpected, "panel queries that return no data:\n" + "\n".join(
        f"  {uid} / {title} ({ref}): {queries[uid, title, ref]}" for uid, title, ref in unexpected
    )
    assert found == set(EXPECTED_EMPTY), f"listed as empty but have data now: {sorted(set(EXPECTED_EMPTY) - found)}"


def test_failed_share_leaves_out_the_runs_awaiting_approval(live: Stack) -> None:
    """The overview's stats at one instant of the simulator's traffic, some of whose completed runs
    stop for approval: "Failed runs" is failed / ("Runs finished" - "Awaiting approval"), which is
    not failed / "Runs finished"."""
    overview = _dashboard(OVERVIEW)
    stats = {title: promql for (uid, title, _), promql in _queries(live).items() if uid == overview["uid"]}
    stats["failed"] = (
        f'sum(increase(letta_runs_finished_total{{job="{live.job}", status="failed"}}[{_range(overview)}]))'
    )
    at = time.time()
    value = {
        name: float(_query(live, stats[name], at)[0]["value"][1])
        for name in ("Runs finished", "Awaiting approval", "Failed runs", "failed")
    }
    assert value["Awaiting approval"] > 0 and value["failed"] > 0, value
    assert value["Failed runs"] == pytest.approx(
        value["failed"] / (value["Runs finished"] - value["Awaiting approval"])
    )
    assert value["Failed runs"] != pytest.approx(value["failed"] / value["Runs finished"])


def test_every_alert_expression_evaluates(live: Stack) -> None:
    rules = _rules(live)
    generated = [r["alert"] for g in alerts.rule_groups(alerts.Settings())["groups"] for r in g["rules"]]
    assert [r["alert"] for r in rules] == generated and len(rules) >= 9
    results = {rule["alert"]: _query(live, rule["expr"]) for rule in rules}  # _get asserts status success
    # zombie runs expire after the stack's --expire-after 4s, so this one has something to say
    assert results["LettaRunsExpired"], results


def test_prometheus_loaded_the_rules_file_and_every_rule_is_healthy(live: Stack) -> None:
    expected = [(rule["group"], rule["alert"]) for rule in _rules(live)]

    def evaluated() -> list[dict[str, Any]] | None:
        groups = _get(live, "/api/v1/rules")["groups"]
        rules = [{"group": g["name"], "file": g["file"], **r} for g in groups for r in g["rules"]]
        return rules if rules and all(r["health"] != "unknown" for r in rules) else None

    rules = wait_until(evaluated, timeout=30, what="every rule evaluated")
    assert [(r["group"], r["name"]) for r in rules] == expected
    assert {r["file"] for r in rules} == {str(live.rules_file)}
    unhealthy = [
        (r["name"], r["health"], r.get("lastError")) for r in rules if r["health"] != "ok" or r.get("lastError")
    ]
    assert unhealthy == []

    def firing(name: str) -> list[dict[str, Any]]:
        alerts = _get(live, "/api/v1/alerts")["alerts"]
        return [a for a in alerts if a["labels"]["alertname"] == name and a["state"] == "firing"]

    # end to end: a rule without `for` fires from real data (the simulator's runs that never finish,
    # and the event hosts' runs that end silently)
    for name in ("LettaRunsExpired", "BehestRunsExpired", "AgentSdkRunsExpired"):
        alert = wait_until(functools.partial(firing, name), timeout=30, what=f"{name} firing")[0]
        assert alert["labels"]["job"] == live.job and alert["labels"]["severity"] == "warning"
