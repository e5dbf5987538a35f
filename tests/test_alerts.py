"""Alert rules: the committed file is the generator's output (one group per agent runtime from the
same rules, then the exporter's), promtool accepts and unit-tests it, every alert is documented in the
runbook, and the settings reach every expression."""

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
from dashboards import letta_metrics as m
from tests.support import tool

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "alerts" / "letta-exporter.rules.yml"
RULE_TESTS = ROOT / "alerts" / "letta-exporter.rules.test.yml"  # Letta and the exporter
EVENT_TESTS = ROOT / "alerts" / "letta-exporter.event-runtimes.test.yml"  # behest, agent-sdk, event ingest
SPEND_TESTS = ROOT / "alerts" / "letta-exporter.spend.test.yml"  # the opt-in *SpendRateHigh
DEFAULT_TESTS = (RULE_TESTS, EVENT_TESTS)  # written for the committed rules file
RUNBOOK = ROOT / "docs" / "runbook.md"
DEFAULT_SELECTOR = 'job="letta-exporter"'
PREFIXES = "|".join(rt.key for rt in m.RUNTIMES)


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
"""Settings that turn every opt-in alert on (the spend alerts' promtool tests are written for 5 USD/h)."""
OPT_IN = ["LettaSpendRateHigh", "BehestSpendRateHigh", "AgentSdkSpendRateHigh"]
RUN_ALERTS = ["RunFailureRatioHigh", "RunsExpired", "RunsStuck", "RunTTFTHigh", "StepLLMRequestSlow"]


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
    groups = {g["name"]: [r["alert"] for r in g["rules"]] for g in yaml.safe_load(RULES.read_text())["groups"]}
    assert groups == {
        "letta": [*(f"Letta{name}" for name in RUN_ALERTS), "LettaToolErrorRatioHigh"],
        "behest": [f"Behest{name}" for name in RUN_ALERTS],  # behest never says how a tool call went
        "agent-sdk": [*(f"AgentSdk{name}" for name in RUN_ALERTS), "AgentSdkToolErrorRatioHigh"],
        "letta-exporter": [
            "LettaUnreachable",
            "LettaExporterStale",
            "LettaExporterAbsent",
            "LettaExporterEventsRejected",
            "LettaExporterEventSourceErrors",
        ],
    }
    everything = {g["name"]: [r["alert"] for r in g["rules"]] for g in generate.rule_groups(EVERYTHING)["groups"]}
    spend = {rt.slug: f"{rt.alert_prefix}SpendRateHigh" for rt in m.RUNTIMES}  # closes each runtime's group
    assert everything == {name: [*alerts, *filter(None, [spend.get(name)])] for name, alerts in groups.items()}
    assert sorted(spend.values()) == sorted(OPT_IN)


def test_every_event_runtime_gets_lettas_rules_over_its_own_families() -> None:
    """Each event runtime's rules are Letta's with the prefix swapped, less what it cannot have (an
    agent_id to sum away, runs awaiting approval, tool errors): a rule written for one runtime only
    would show here. Their words are the promtool tests' business."""
    groups = {g["name"]: g["rules"] for g in generate.rule_groups(EVERYTHING)["groups"]}
    for rt in m.RUNTIMES:
        if rt.polled:
            continue
        expected = {}
        for rule in groups["letta"]:
            if rule["alert"] == "LettaToolErrorRatioHigh" and not rt.tool_errors:
                continue
            expr = re.sub(r"sum without \(agent_id\) \((.*)\)$", r"\1", rule["expr"], flags=re.M)
            expr = expr.replace(", agent_id)", ")")
            if not rt.awaiting_approval:
                expr = _awaiting_exclusion("letta").sub("", expr)
            name = rule["alert"].replace("Letta", rt.alert_prefix, 1)
            expected[name] = (expr.replace("letta_", f"{rt.key}_"), rule.get("for"), rule["labels"])
        assert {r["alert"]: (r["expr"], r.get("for"), r["labels"]) for r in groups[rt.slug]} == expected, rt.key


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


@pytest.mark.parametrize("tests", DEFAULT_TESTS, ids=lambda path: path.name)
def test_promtool_unit_tests_pass(tests: Path) -> None:
    result = _run("test", "rules", tests)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_firing_and_a_silent_case() -> None:
    firing: dict[str, int] = defaultdict(int)
    silent: dict[str, int] = defaultdict(int)
    for tests in (*DEFAULT_TESTS, SPEND_TESTS):
        for case in yaml.safe_load(tests.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else silent)[check["alertname"]] += 1
    for name in [rule["alert"] for rule in _all_rules()]:
        assert firing[name] >= 1, f"no promtool case where {name} fires"
        assert silent[name] >= 1, f"no promtool case where {name} stays silent"


@pytest.mark.parametrize(
    ("tests", "runtimes", "others"),
    [
        pytest.param(RULE_TESTS, [m.LETTA], set(), id="letta"),
        pytest.param(
            EVENT_TESTS,
            [m.BEHEST, m.AGENT_SDK],
            {"LettaExporterEventsRejected", "LettaExporterEventSourceErrors"},
            id="event-runtimes",
        ),
    ],
)
def test_no_traffic_case_covers_the_ratio_and_quantile_alerts(
    tests: Path, runtimes: list[m.Runtime], others: set[str]
) -> None:
    cases = [c for c in yaml.safe_load(tests.read_text())["tests"] if "no traffic" in c["name"]]
    assert len(cases) == 1
    case = cases[0]
    for series in case["input_series"]:
        assert re.fullmatch(r"0x\d+", series["values"]), f"not idle: {series}"
    silent = {check["alertname"] for check in case["alert_rule_test"] if not check["exp_alerts"]}
    for rt in runtimes:
        names = ["RunFailureRatioHigh", "RunTTFTHigh", "StepLLMRequestSlow", "RunsExpired"]
        names += ["ToolErrorRatioHigh"] if rt.tool_errors else []
        assert {f"{rt.alert_prefix}{name}" for name in names} <= silent
    assert others <= silent


def _test_rules(tmp_path: Path, settings: generate.Settings, *tests: Path) -> subprocess.CompletedProcess[str]:
    """promtool's unit tests ``tests`` against the rules generated with ``settings``."""
    return _test_text(tmp_path, generate.render(settings), *tests)


def _test_text(tmp_path: Path, rules: str, *tests: Path) -> subprocess.CompletedProcess[str]:
    (tmp_path / RULES.name).write_text(rules)
    for path in tests:
        shutil.copy(path, tmp_path / path.name)
    return _run("test", "rules", *(tmp_path / path.name for path in tests))


def test_unit_tests_catch_a_wrong_threshold(tmp_path: Path) -> None:
    """The promtool tests are sensitive: rules generated with other thresholds fail them, for every runtime."""
    settings = generate.Settings(failed_ratio=0.5, ttft_p95_seconds=60, tool_error_ratio=0.5, events_rejected_ratio=0.5)
    result = _test_rules(tmp_path, settings, *DEFAULT_TESTS)
    assert result.returncode != 0
    failed = set(re.findall(r"alertname: (\w+)", result.stdout + result.stderr))
    for rt in m.RUNTIMES:
        names = ["RunFailureRatioHigh", "RunTTFTHigh", *(["ToolErrorRatioHigh"] if rt.tool_errors else [])]
        assert {f"{rt.alert_prefix}{name}" for name in names} <= failed
    assert "LettaExporterEventsRejected" in failed


def test_unit_tests_catch_a_wrong_minimum_volume(tmp_path: Path) -> None:
    settings = generate.Settings(failed_ratio_min_runs=1, tool_error_min_calls=1, events_rejected_min_lines=1)
    assert _failed_cases(_test_rules(tmp_path, settings, *DEFAULT_TESTS)) == {
        "a few failed runs are below the minimum volume and stay silent",
        "a rarely called tool that errors stays below the minimum volume",
        "runs awaiting approval do not lift a few failures over the minimum volume",
        "a few failed behest runs are below the minimum volume and stay silent",
        "agent-sdk runs awaiting approval do not lift a few failures over the minimum volume",
        "a rarely called agent-sdk tool that errors stays below the minimum volume",
        "a handful of rejected lines stays below the minimum volume",
        # the messages name the minimum
        "a burst of runs awaiting approval does not hide a failure ratio above 10%",
        "failure ratio above 10% with enough runs fires after 10m",
        "failures spread over agents count together although each agent alone is below the minimum volume",
        "a tool whose calls error above 25% fires per tool after 10m",
        "behest runs failing above 10% with enough runs fire after 10m",
        "a burst of agent-sdk runs awaiting approval does not hide a failure ratio above 10%",
        "an agent-sdk tool whose calls error above 25% fires per tool after 10m",
        "a way in whose lines are rejected above 10% fires per transport after 10m",
    }


def _failed_cases(result: subprocess.CompletedProcess[str]) -> set[str]:
    """The names of the promtool test cases that failed."""
    assert result.returncode != 0, result.stdout
    return set(re.findall(r"^ +name: (.+),$", result.stdout + result.stderr, flags=re.M))


def test_unit_tests_catch_alerts_split_by_agent(tmp_path: Path) -> None:
    """With --agent-labels Letta's run, tool and cost series have an agent_id. The alerts sum it away
    (one alert per exporter or tool, as without agent labels): the cases with agent_id series fail
    when it is kept. (Event runtimes have no agent labels: their rules name no agent_id.)"""
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
        assert "agent_id" not in "".join(r["expr"] for r in _rules(text) if not r["alert"].startswith("Letta"))
        assert _failed_cases(_test_text(tmp_path, text.replace(", agent_id)", ")"), tests)) == cases


@pytest.mark.parametrize(
    ("rt", "case"),
    [
        pytest.param(
            m.LETTA,
            "unknown tool outcomes count as calls, not errors, so a tool below 25% errors stays silent",
            id="letta",
        ),
        pytest.param(
            m.AGENT_SDK,
            "blocked, rejected and awaiting_confirmation agent-sdk calls count as calls, not errors, so a tool "
            "below 25% errors stays silent",
            id="agent_sdk",
        ),
    ],
)
def test_unit_tests_catch_undecided_tool_outcomes_left_out_of_the_calls(
    tmp_path: Path, rt: m.Runtime, case: str
) -> None:
    """A call without a known outcome (Letta's unknown: no return; agent-sdk's blocked, rejected,
    awaiting_confirmation) counts as a call, not as an error: counting only success and error in the
    denominator would lift a tool's error ratio, and one case fails."""
    text = generate.render(generate.Settings())
    calls = f'rate({rt.names.TOOL_CALLS}{{job="letta-exporter"}}[15m])'
    assert text.count(calls) == 1, text
    decided = text.replace(calls, calls.replace('"}', '", status=~"success|error"}'))
    assert _failed_cases(_test_text(tmp_path, decided, *DEFAULT_TESTS)) == {case}


def _awaiting_exclusion(prefix: str) -> re.Pattern[str]:
    return re.compile(rf" unless \w+\({prefix}_runs_finished_total\{{[^}}]*requires_approval[^}}]*\}}\[\w+\]\)")


@pytest.mark.parametrize(
    ("rt", "index", "case"),
    [
        pytest.param(
            m.LETTA, 0, "a burst of runs awaiting approval does not hide a failure ratio above 10%", id="letta-ratio"
        ),
        pytest.param(
            m.LETTA, 1, "runs awaiting approval do not lift a few failures over the minimum volume", id="letta-volume"
        ),
        pytest.param(
            m.AGENT_SDK,
            0,
            "a burst of agent-sdk runs awaiting approval does not hide a failure ratio above 10%",
            id="sdk-ratio",
        ),
        pytest.param(
            m.AGENT_SDK,
            1,
            "agent-sdk runs awaiting approval do not lift a few failures over the minimum volume",
            id="sdk-volume",
        ),
    ],
)
def test_unit_tests_catch_runs_awaiting_approval_counted_as_finished(
    tmp_path: Path, rt: m.Runtime, index: int, case: str
) -> None:
    """Every place that leaves out the runs awaiting approval (the ratio's denominator, the minimum
    volume; of Letta and of agent-sdk, whose runs can await approval too) has a promtool case that
    fails, alone, when that one exclusion is dropped."""
    text = generate.render(generate.Settings())
    exclusions = list(_awaiting_exclusion(rt.key).finditer(text))
    assert len(exclusions) == 2, text
    assert not _awaiting_exclusion(m.BEHEST.key).search(text), "behest runs never await approval"
    cut = exclusions[index]
    assert _failed_cases(_test_text(tmp_path, text[: cut.start()] + text[cut.end() :], *DEFAULT_TESTS)) == {case}


def test_unit_tests_catch_event_rejections_split_by_runtime(tmp_path: Path) -> None:
    """A line that cannot be read names no runtime (runtime="unknown"): the rejected share is of all
    the lines of a way in. Kept per runtime, every rejected line would be 100% of its "runtime"."""
    text = generate.render(generate.Settings())
    assert text.count("sum without (runtime, result)") == 3, text
    split = text.replace("sum without (runtime, result)", "sum without (transport, result)")
    assert _failed_cases(_test_text(tmp_path, split, EVENT_TESTS)) == {
        "a way in whose lines are rejected above 10% fires per transport after 10m",  # labels: runtime, not transport
        "a few rejected lines among many stay below 10%",
    }


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
        selectors = re.findall(rf"\b((?:{PREFIXES})_\w+|up)(\{{[^}}]*\}})?", expr)
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
            events_rejected_ratio=0.3,
            events_rejected_min_lines=50,
            event_source_errors_window="2m",
            event_source_errors_for="30m",
        )
    )
    rules = {rule["alert"]: rule for rule in _rules(text)}
    rejected = rules["LettaExporterEventsRejected"]
    assert ") > 0.3\n" in rejected["expr"] and rejected["expr"].endswith("[15m])) >= 50")
    assert "(threshold 30%, counted once 50 lines arrived)" in rejected["annotations"]["description"]
    errors = rules["LettaExporterEventSourceErrors"]
    assert errors["expr"].endswith("[2m]) > 0") and errors["for"] == "30m"
    for rt in m.RUNTIMES:  # the run settings reach every runtime's rules
        assert ") > 0.25\n" in rules[f"{rt.alert_prefix}RunFailureRatioHigh"]["expr"]
        assert rules[f"{rt.alert_prefix}RunTTFTHigh"]["expr"].endswith(") > 2.5")
        assert rules[f"{rt.alert_prefix}SpendRateHigh"]["expr"].endswith("[2h])) > 12.5")
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
        ({"events_rejected_ratio": 1}, "events_rejected_ratio must be between 0 and 1"),
        ({"events_rejected_min_lines": 0}, "events_rejected_min_lines must be at least 1"),
        ({"event_source_errors_for": "ten minutes"}, "event_source_errors_for: 'ten minutes' is not a Prometheus"),
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


def test_the_spend_alerts_are_opt_in_and_their_unit_tests_pass(tmp_path: Path) -> None:
    assert not [name for name in OPT_IN if name in RULES.read_text()]
    result = _test_rules(tmp_path, EVERYTHING, SPEND_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


SPEND_FIRES = {
    "spend above 5 USD/h fires after 15m; the same exporter at 2 USD/h does not",
    "spend spread over agents counts together although each agent alone is below 5 USD/h",
    "behest and agent-sdk spend above 5 USD/h fire after 15m, each under its own alert",
}


@pytest.mark.parametrize(
    ("usd_per_hour", "cases"),
    [
        pytest.param(7, SPEND_FIRES, id="higher"),
        # 4: the messages still say 5 (every firing case fails), and the hour around the burst now fires;
        # each runtime's 3 USD/h stays below 4.
        pytest.param(
            4,
            {
                *SPEND_FIRES,
                "a short burst above 5 USD/h that the hour's average stays under is silent, and so is no traffic",
            },
            id="lower",
        ),
        # 2.5: the three runtimes' 3 USD/h each now fire too, each alone (together they would at 9)
        pytest.param(
            2.5,
            {
                *SPEND_FIRES,
                "a short burst above 5 USD/h that the hour's average stays under is silent, and so is no traffic",
                "each runtime's spend counts alone, so 3 USD/h each of Letta, behest and agent-sdk fires nothing",
            },
            id="much-lower",
        ),
    ],
)
def test_spend_unit_tests_catch_a_wrong_threshold(tmp_path: Path, usd_per_hour: float, cases: set[str]) -> None:
    settings = generate.Settings(spend_usd_per_hour=usd_per_hour)
    assert _failed_cases(_test_rules(tmp_path, settings, SPEND_TESTS)) == cases
