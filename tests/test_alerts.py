"""Alert rules: the committed file is the generator's output, promtool accepts and unit-tests it,
every alert is documented in the runbook, and the settings reach every expression."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import yaml

from alerts import generate
from tests.support import tool

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "alerts" / "letta-exporter.rules.yml"
RULE_TESTS = ROOT / "alerts" / "letta-exporter.rules.test.yml"
SPEND_TESTS = ROOT / "alerts" / "letta-exporter.spend.test.yml"  # the opt-in LettaSpendRateHigh
RUNBOOK = ROOT / "docs" / "runbook.md"
DEFAULT_SELECTOR = 'job="letta-exporter"'


def _run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    promtool = tool("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed: run `bash scripts/install-tools.sh` (or set PROMTOOL)")
    return subprocess.run([promtool, *map(str, args)], capture_output=True, text=True, timeout=120, check=False)


def _rules(text: str) -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(text)["groups"] for rule in group["rules"]]


def _alert_names() -> list[str]:
    return [rule["alert"] for rule in _rules(RULES.read_text())]


EVERYTHING = generate.Settings(spend_usd_per_hour=5)
"""Settings that turn every opt-in alert on (the spend alert's promtool tests are written for 5 USD/h)."""
OPT_IN = ["LettaSpendRateHigh"]


def _all_rules() -> list[dict[str, Any]]:
    return _rules(generate.render(EVERYTHING))


def _github_anchor(heading: str) -> str:
    """GitHub's heading slug: lower case, punctuation dropped, spaces to dashes."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_committed_rules_are_the_generated_ones() -> None:
    assert RULES.read_text() == generate.render(generate.Settings()), (
        "alerts/letta-exporter.rules.yml is stale: run `python -m alerts.generate`"
    )
    assert generate.main(["--check"]) == 0


def test_check_mode_reports_a_stale_file(tmp_path: Path) -> None:
    stale = tmp_path / "rules.yml"
    stale.write_text(RULES.read_text().replace("> 0.1", "> 0.2"))
    assert generate.main(["--check", "--output", str(stale)]) == 1
    assert generate.main(["--output", str(stale)]) == 0
    assert generate.main(["--check", "--output", str(stale)]) == 0


def test_the_expected_alert_set() -> None:
    assert _alert_names() == [
        "LettaRunFailureRatioHigh",
        "LettaRunsExpired",
        "LettaRunsStuck",
        "LettaRunTTFTHigh",
        "LettaStepLLMRequestSlow",
        "LettaToolErrorRatioHigh",
        "LettaUnreachable",
        "LettaExporterStale",
        "LettaExporterAbsent",
    ]
    assert [rule["alert"] for rule in _all_rules()] == [*_alert_names()[:6], *OPT_IN, *_alert_names()[6:]]


def test_opt_in_alerts_are_off_by_default_and_valid_when_on(tmp_path: Path) -> None:
    assert not set(OPT_IN) & set(_alert_names())
    everything = tmp_path / "everything.rules.yml"
    everything.write_text(generate.render(EVERYTHING))
    result = _run("check", "rules", everything)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_alert_names()) + len(OPT_IN)} rules found" in result.stdout


def test_promtool_check_rules_accepts_the_rules() -> None:
    result = _run("check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_alert_names())} rules found" in result.stdout


def test_promtool_check_rules_rejects_a_broken_rule(tmp_path: Path) -> None:
    broken = tmp_path / "broken.rules.yml"
    broken.write_text(RULES.read_text().replace("letta_up{", "letta_up{{", 1))
    result = _run("check", "rules", broken)
    assert result.returncode != 0


def test_promtool_unit_tests_pass() -> None:
    result = _run("test", "rules", RULE_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_firing_and_a_silent_case() -> None:
    firing: dict[str, int] = defaultdict(int)
    silent: dict[str, int] = defaultdict(int)
    for tests in (RULE_TESTS, SPEND_TESTS):
        for case in yaml.safe_load(tests.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else silent)[check["alertname"]] += 1
    for name in [rule["alert"] for rule in _all_rules()]:
        assert firing[name] >= 1, f"no promtool case where {name} fires"
        assert silent[name] >= 1, f"no promtool case where {name} stays silent"


def test_no_traffic_case_covers_the_ratio_and_quantile_alerts() -> None:
    cases = [c for c in yaml.safe_load(RULE_TESTS.read_text())["tests"] if "no traffic" in c["name"]]
    assert len(cases) == 1
    case = cases[0]
    for series in case["input_series"]:
        assert re.fullmatch(r"0x\d+", series["values"]), f"not idle: {series}"
    silent = {check["alertname"] for check in case["alert_rule_test"] if not check["exp_alerts"]}
    assert {
        "LettaRunFailureRatioHigh",
        "LettaRunTTFTHigh",
        "LettaStepLLMRequestSlow",
        "LettaRunsExpired",
        "LettaToolErrorRatioHigh",
    } <= silent


def test_unit_tests_catch_a_wrong_threshold(tmp_path: Path) -> None:
    """The promtool tests are sensitive: rules generated with other thresholds fail them."""
    settings = generate.Settings(failed_ratio=0.5, ttft_p95_seconds=60, tool_error_ratio=0.5)
    (tmp_path / RULES.name).write_text(generate.render(settings))
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    result = _run("test", "rules", tmp_path / RULE_TESTS.name)
    assert result.returncode != 0
    assert "LettaRunFailureRatioHigh" in result.stdout + result.stderr
    assert "LettaRunTTFTHigh" in result.stdout + result.stderr
    assert "LettaToolErrorRatioHigh" in result.stdout + result.stderr


def test_unit_tests_catch_a_wrong_minimum_volume(tmp_path: Path) -> None:
    settings = generate.Settings(failed_ratio_min_runs=1, tool_error_min_calls=1)
    (tmp_path / RULES.name).write_text(generate.render(settings))
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    result = _run("test", "rules", tmp_path / RULE_TESTS.name)
    assert _failed_cases(result) == {
        "a few failed runs are below the minimum volume and stay silent",
        "a rarely called tool that errors stays below the minimum volume",
        "runs awaiting approval do not lift a few failures over the minimum volume",
        # the messages name the minimum
        "a burst of runs awaiting approval does not hide a failure ratio above 10%",
        "failure ratio above 10% with enough runs fires after 10m",
        "failures spread over agents count together although each agent alone is below the minimum volume",
        "a tool whose calls error above 25% fires per tool after 10m",
    }


def _failed_cases(result: subprocess.CompletedProcess[str]) -> set[str]:
    """The names of the promtool test cases that failed."""
    assert result.returncode != 0, result.stdout
    return set(re.findall(r"^ +name: (.+),$", result.stdout + result.stderr, flags=re.M))


def test_unit_tests_catch_alerts_split_by_agent(tmp_path: Path) -> None:
    """With --agent-labels the run, tool and cost series have an agent_id. The alerts sum it away
    (one alert per exporter or tool, as without agent labels): the cases with agent_id series fail
    when it is kept."""
    for settings, tests, cases in (
        (
            generate.Settings(),
            RULE_TESTS,
            {
                "failures spread over agents count together although each agent alone is below the minimum volume",
                "a tool whose calls error above 25% fires per tool after 10m",
            },
        ),
        (
            EVERYTHING,
            SPEND_TESTS,
            {"spend spread over agents counts together although each agent alone is below 5 USD/h"},
        ),
    ):
        text = generate.render(settings)
        assert text.count(", agent_id)") >= 3, text
        (tmp_path / RULES.name).write_text(text.replace(", agent_id)", ")"))
        shutil.copy(tests, tmp_path / tests.name)
        assert _failed_cases(_run("test", "rules", tmp_path / tests.name)) == cases


def test_unit_tests_catch_unknown_tool_outcomes_left_out_of_the_calls(tmp_path: Path) -> None:
    """A call without a return (status="unknown") counts as a call, not as an error: leaving those
    calls out of the denominator would lift a tool's error ratio, and one case fails."""
    text = generate.render(generate.Settings())
    calls = 'rate(letta_tool_calls_total{job="letta-exporter"}[15m])'
    assert text.count(calls) == 1, text
    (tmp_path / RULES.name).write_text(text.replace(calls, calls.replace('"}', '", status!="unknown"}')))
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    assert _failed_cases(_run("test", "rules", tmp_path / RULE_TESTS.name)) == {
        "unknown tool outcomes count as calls, not errors, so a tool below 25% errors stays silent"
    }


AWAITING_EXCLUSION = re.compile(r" unless \w+\(letta_runs_finished_total\{[^}]*requires_approval[^}]*\}\[\w+\]\)")


@pytest.mark.parametrize(
    ("index", "case"),
    [
        pytest.param(0, "a burst of runs awaiting approval does not hide a failure ratio above 10%", id="ratio"),
        pytest.param(1, "runs awaiting approval do not lift a few failures over the minimum volume", id="volume"),
    ],
)
def test_unit_tests_catch_runs_awaiting_approval_counted_as_finished(tmp_path: Path, index: int, case: str) -> None:
    """Both places that leave out the runs awaiting approval (the ratio's denominator, the minimum
    volume) have a promtool case that fails, alone, when that one exclusion is dropped."""
    text = generate.render(generate.Settings())
    exclusions = list(AWAITING_EXCLUSION.finditer(text))
    assert len(exclusions) == 2, text
    cut = exclusions[index]
    (tmp_path / RULES.name).write_text(text[: cut.start()] + text[cut.end() :])
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    result = _run("test", "rules", tmp_path / RULE_TESTS.name)
    assert result.returncode != 0
    assert set(re.findall(r"^ +name: (.+),$", result.stdout + result.stderr, flags=re.M)) == {case}


def test_every_alert_has_severity_summary_description_and_runbook() -> None:
    for rule in _all_rules():
        name = rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", "description", "runbook_url"}, name
        assert annotations["summary"] and annotations["description"], name
        assert annotations["runbook_url"] == f"{generate.Settings().runbook_url}#{name.lower()}"


def test_runbook_has_a_section_with_three_first_checks_per_alert() -> None:
    text = RUNBOOK.read_text()
    sections = dict(re.findall(r"^## (.+?)\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S))
    anchors = {_github_anchor(heading): body for heading, body in sections.items()}
    for name in [rule["alert"] for rule in _all_rules()]:
        body = anchors.get(name.lower())
        assert body is not None, f"docs/runbook.md has no '## {name}' section"
        checks = re.findall(r"^\d+\. ", body.split("First checks", 1)[-1], flags=re.M)
        assert "First checks" in body and len(checks) >= 3, f"{name}: needs 'First checks' with 3 steps"


def test_settings_reach_every_selector_and_runbook_link(tmp_path: Path) -> None:
    selector = 'job="letta", namespace="ai"'
    settings = generate.Settings(
        selector=selector, runbook_url="https://docs.example.test/runbook.md", spend_usd_per_hour=5
    )
    text = generate.render(settings)
    rules = _rules(text)
    for rule in rules:
        expr = rule["expr"]
        assert DEFAULT_SELECTOR not in expr
        selectors = re.findall(r"\b(letta_\w+|up)(\{[^}]*\})?", expr)
        assert selectors, expr
        for metric, matchers in selectors:
            assert matchers.startswith("{" + selector), f"{rule['alert']}: {metric}{matchers}"
        assert rule["annotations"]["runbook_url"].startswith("https://docs.example.test/runbook.md#")
    absent = next(r for r in rules if r["alert"] == "LettaExporterAbsent")
    assert f"absent(up{{{selector}}})" in absent["expr"]
    (tmp_path / "custom.rules.yml").write_text(text)
    result = _run("check", "rules", tmp_path / "custom.rules.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_thresholds_come_from_settings() -> None:
    text = generate.render(
        generate.Settings(
            failed_ratio=0.25,
            failed_ratio_min_runs=3,
            ttft_p95_seconds=2.5,
            stale_after="10m",
            tool_error_ratio=0.4,
            tool_error_min_calls=20,
            tool_error_window="30m",
            spend_usd_per_hour=12.5,
            spend_window="2h",
            spend_for="30m",
        )
    )
    rules = {rule["alert"]: rule for rule in _rules(text)}
    tool = rules["LettaToolErrorRatioHigh"]
    assert ") > 0.4\n" in tool["expr"] and tool["expr"].endswith("[30m])) >= 20")
    assert "(threshold 40%, counted once the tool was called 20 times)" in tool["annotations"]["description"]
    spend = rules["LettaSpendRateHigh"]
    assert spend["expr"].endswith("[2h])) > 12.5") and spend["for"] == "30m"
    assert "(threshold 12.5 USD/h" in spend["annotations"]["description"]
    assert ") > 0.25\n" in rules["LettaRunFailureRatioHigh"]["expr"]
    assert rules["LettaRunFailureRatioHigh"]["expr"].endswith(">= 3")
    assert "(threshold 25%" in rules["LettaRunFailureRatioHigh"]["annotations"]["description"]
    assert rules["LettaRunTTFTHigh"]["expr"].endswith(") > 2.5")
    assert "> 600)" in rules["LettaExporterStale"]["expr"]


def test_config_file_overrides_settings(tmp_path: Path) -> None:
    config = tmp_path / "settings.yml"
    config.write_text(
        'selector: job="prod-letta"\nllm_request_p95_seconds: 45\nstuck_for: 30m\nspend_usd_per_hour: 20\n'
    )
    result = subprocess.run(
        [sys.executable, "-m", "alerts.generate", "--config", str(config), "--output", "-"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    rules = {rule["alert"]: rule for rule in _rules(result.stdout)}
    assert rules["LettaStepLLMRequestSlow"]["expr"].endswith(") > 45")
    assert rules["LettaRunsStuck"]["for"] == "30m"
    assert 'up{job="prod-letta"}' in rules["LettaExporterAbsent"]["expr"]
    assert rules["LettaSpendRateHigh"]["expr"].endswith(") > 20")


def test_spend_alert_is_off_unless_the_config_sets_it() -> None:
    off = generate.Settings.from_mapping({"spend_usd_per_hour": None})  # YAML `spend_usd_per_hour: null`
    assert off.spend_usd_per_hour is None
    assert "LettaSpendRateHigh" not in generate.render(off)
    on = generate.Settings.from_mapping({"spend_usd_per_hour": 3})
    assert on.spend_usd_per_hour == 3.0 and isinstance(on.spend_usd_per_hour, float)
    assert "LettaSpendRateHigh" in generate.render(on)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"failed_ratio_treshold": 0.2}, "unknown setting(s): failed_ratio_treshold"),
        ({"failed_ratio": "high"}, "failed_ratio: expected float"),
        ({"failed_ratio": 1.5}, "failed_ratio must be between 0 and 1"),
        ({"stuck_for": "15 minutes"}, "stuck_for: '15 minutes' is not a Prometheus duration"),
        ({"selector": " "}, "selector must not be empty"),
        ({"tool_error_ratio": 0}, "tool_error_ratio must be between 0 and 1"),
        ({"tool_error_min_calls": 0}, "tool_error_min_calls must be at least 1"),
        ({"tool_error_min_calls": 2.5}, "tool_error_min_calls: expected int"),
        ({"spend_usd_per_hour": "lots"}, "spend_usd_per_hour: expected float | None"),
        ({"spend_usd_per_hour": -1}, "spend_usd_per_hour must be positive"),
        ({"spend_window": "an hour"}, "spend_window: 'an hour' is not a Prometheus duration"),
    ],
)
def test_invalid_settings_are_rejected_with_the_setting_named(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        generate.Settings.from_mapping(overrides)


def test_cli_reports_invalid_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "settings.yml"
    config.write_text("absent_for: soon\n")
    assert generate.main(["--config", str(config), "--output", "-"]) == 2
    assert "absent_for: 'soon' is not a Prometheus duration" in capsys.readouterr().err


def test_the_spend_alert_is_opt_in_and_its_unit_tests_pass(tmp_path: Path) -> None:
    assert "LettaSpendRateHigh" not in RULES.read_text()
    (tmp_path / RULES.name).write_text(generate.render(EVERYTHING))
    shutil.copy(SPEND_TESTS, tmp_path / SPEND_TESTS.name)
    result = _run("test", "rules", tmp_path / SPEND_TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize(
    ("usd_per_hour", "cases"),
    [
        pytest.param(
            7,
            {
                "spend above 5 USD/h fires after 15m; the same exporter at 2 USD/h does not",
                "spend spread over agents counts together although each agent alone is below 5 USD/h",
            },
            id="higher",
        ),
        # 4: the messages still say 5 (every firing case fails), and the hour around the burst now fires.
        pytest.param(
            4,
            {
                "spend above 5 USD/h fires after 15m; the same exporter at 2 USD/h does not",
                "spend spread over agents counts together although each agent alone is below 5 USD/h",
                "a short burst above 5 USD/h that the hour's average stays under is silent, and so is no traffic",
            },
            id="lower",
        ),
    ],
)
def test_spend_unit_tests_catch_a_wrong_threshold(tmp_path: Path, usd_per_hour: float, cases: set[str]) -> None:
    (tmp_path / RULES.name).write_text(generate.render(generate.Settings(spend_usd_per_hour=usd_per_hour)))
    shutil.copy(SPEND_TESTS, tmp_path / SPEND_TESTS.name)
    assert _failed_cases(_run("test", "rules", tmp_path / SPEND_TESTS.name)) == cases
