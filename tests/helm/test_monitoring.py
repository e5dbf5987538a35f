"""The ServiceMonitor scrapes what the alerts select, and the PrometheusRule is the repository's rules file."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from dashboards import letta_metrics as m
from tests.helm.support import NAMESPACE, RULES, Docs, Render, all_options, one, repository_groups, require_tool
from tests.support import ROOT


def test_service_monitor(full_docs: Docs) -> None:
    monitor = one(full_docs, "ServiceMonitor")
    assert monitor["metadata"]["namespace"] == "monitoring"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    spec = monitor["spec"]
    assert spec["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert spec["selector"]["matchLabels"].items() <= one(full_docs, "Service")["metadata"]["labels"].items()
    assert spec["jobLabel"] == "app.kubernetes.io/name"  # -> job="letta-exporter"
    (endpoint,) = spec["endpoints"]
    assert endpoint["port"] == "http-metrics" and endpoint["path"] == "/metrics"
    assert (endpoint["interval"], endpoint["scrapeTimeout"]) == ("15s", "5s")
    assert endpoint["relabelings"][0]["targetLabel"] == "node"
    assert endpoint["metricRelabelings"][0]["action"] == "drop"
    assert endpoint["scheme"] == "https"  # webConfig.tls
    assert endpoint["tlsConfig"] == all_options()["serviceMonitor"]["tlsConfig"]
    assert endpoint["basicAuth"] == all_options()["serviceMonitor"]["basicAuth"]


def test_job_label_matches_the_alerts_selector(full_docs: Docs) -> None:
    """The ServiceMonitor's job label is the one the alerts (and dashboards) select."""
    monitor = one(full_docs, "ServiceMonitor")
    job = one(full_docs, "Service")["metadata"]["labels"][monitor["spec"]["jobLabel"]]
    selectors = set(re.findall(r'job="([^"]*)"', RULES.read_text(encoding="utf-8")))
    assert selectors <= {job}, f"alerts select {selectors}, the ServiceMonitor gives job={job!r}"


def test_prometheus_rule_is_exactly_the_rules_file(render: Render) -> None:
    rule = one(render({"prometheusRule": {"enabled": True}}), "PrometheusRule")
    assert rule["metadata"]["namespace"] == NAMESPACE
    assert rule["spec"] == {"groups": repository_groups()}


def test_additional_rule_labels_only_add_labels(full_docs: Docs) -> None:
    rendered = one(full_docs, "PrometheusRule")["spec"]["groups"]
    expected = repository_groups()
    alerts = 0
    for group, original in zip(rendered, expected, strict=True):
        for rule, source in zip(group["rules"], original["rules"], strict=True):
            if "alert" in source:
                alerts += 1
                assert rule["labels"] == {**source.get("labels", {}), "team": "ai-platform"}
                rule = {k: v for k, v in rule.items() if k != "labels"}
                source = {k: v for k, v in source.items() if k != "labels"}
            assert rule == source
    assert alerts >= 1


def test_rendered_rules_pass_promtool(render: Render, tmp_path: Path) -> None:
    promtool = require_tool("PROMTOOL", ROOT / ".tools" / "bin" / "promtool", "promtool")
    spec = one(render({"prometheusRule": {"enabled": True}}), "PrometheusRule")["spec"]
    path = tmp_path / "rendered.rules.yml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    result = subprocess.run([promtool, "check", "rules", path], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_rule_watches_every_runtime(render: Render) -> None:
    """A group per agent runtime (the same rules over each one's families), then the exporter's own:
    the event runtimes' alerts ship with Letta's, and fire only once their series exist."""
    groups = one(render({"prometheusRule": {"enabled": True}}), "PrometheusRule")["spec"]["groups"]
    assert [group["name"] for group in groups] == ["agent-sdk", "behest", "letta", "letta-exporter"]
    alerts = {rule["alert"] for group in groups for rule in group["rules"]}
    for rt in m.RUNTIMES:
        assert {f"{rt.alert_prefix}RunFailureRatioHigh", f"{rt.alert_prefix}RunsStuck"} <= alerts
    assert {"LettaExporterEventsRejected", "LettaExporterEventSourceErrors"} <= alerts
