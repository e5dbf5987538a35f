"""Prometheus alert rules for letta-exporter.

Run from the repository root::

    python -m alerts.generate            # rewrite alerts/letta-exporter.rules.yml
    python -m alerts.generate --check    # exit 1 when the committed file is not what this generates
    python -m alerts.generate --config my-settings.yml --output -   # your own thresholds, to stdout

Every threshold, window, ``for`` duration, the series selector and the runbook base live in
:class:`Settings`: that is the one place to change them. ``--config`` takes a YAML mapping of
``Settings`` field names to values. The committed rules file (used as-is by the Helm chart) is the
output for the defaults. The promtool unit tests in ``letta-exporter.rules.test.yml`` (Letta and the
exporter), ``letta-exporter.event-runtimes.test.yml`` (behest, agent-sdk, event ingest) and
``letta-exporter.spend.test.yml`` (the opt-in spend alerts) exercise it.

Every agent runtime of :data:`dashboards.letta_metrics.RUNTIMES` gets the same run rules from
:func:`runtime_rules`, named by its prefix (LettaRunsStuck, BehestRunsStuck, AgentSdkRunsStuck) and
with the same thresholds.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from dashboards import letta_metrics as m
from exporter.config import parse_duration

HERE = Path(__file__).resolve().parent
RULES_FILE = HERE / "letta-exporter.rules.yml"

_DURATION = re.compile(r"^(?:\d+(?:ms|s|m|h|d|w|y))+$")
_FIELD_TYPES: dict[str, type | tuple[type, ...]] = {
    "str": str,
    "int": int,
    "float": (int, float),
    "float | None": (int, float, type(None)),
}


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything an operator may want to tune. Durations are Prometheus durations (``15m``). The run
    settings (named after Letta's alerts) apply to the same alerts of every runtime."""

    selector: str = 'job="letta-exporter"'
    """Label matchers (PromQL, without braces) that pick the exporter's series and its ``up``."""
    runbook_url: str = "https://github.com/letta-exporter/letta-exporter/blob/main/docs/runbook.md"
    """Base of every ``runbook_url`` annotation; ``#<alert name in lower case>`` is appended."""

    failed_ratio: float = 0.10
    """LettaRunFailureRatioHigh: share of finished runs with status ``failed`` (runs awaiting approval
    are left out: they have not succeeded or failed yet)."""
    failed_ratio_window: str = "15m"
    failed_ratio_min_runs: int = 10
    """...and only when at least this many runs finished in the window (no alert on 1 of 1)."""
    failed_ratio_for: str = "10m"

    expired_window: str = "1h"
    """LettaRunsExpired: fires while a run expired within this window."""

    stuck_for: str = "15m"
    """LettaRunsStuck: ``letta_runs_stuck > 0`` for this long (the exporter's --stuck-after comes first)."""

    ttft_p95_seconds: float = 10.0
    """LettaRunTTFTHigh: p95 time to first token (only servers that report TTFT have the series)."""
    ttft_window: str = "15m"
    ttft_for: str = "15m"

    llm_request_p95_seconds: float = 30.0
    """LettaStepLLMRequestSlow: p95 of the ``llm_request`` step phase, per model and provider."""
    llm_request_window: str = "15m"
    llm_request_for: str = "15m"

    tool_error_ratio: float = 0.25
    """LettaToolErrorRatioHigh: share of a tool's calls whose return was an error (needs --tool-metrics)."""
    tool_error_window: str = "15m"
    tool_error_min_calls: int = 10
    """...and only when the tool was called at least this often in the window."""
    tool_error_for: str = "10m"

    spend_usd_per_hour: float | None = None
    """LettaSpendRateHigh (opt-in: no rule unless set): USD per hour of all finished steps, averaged
    over ``spend_window``."""
    spend_window: str = "1h"
    spend_for: str = "15m"

    unreachable_for: str = "5m"
    """LettaUnreachable: ``letta_up == 0`` for this long."""

    stale_after: str = "5m"
    """LettaExporterStale: no successful poll for this long while the last poll did not fail..."""
    stale_for: str = "2m"
    """...for this long."""

    absent_for: str = "5m"
    """LettaExporterAbsent: no exporter target scraped successfully for this long."""

    events_rejected_ratio: float = 0.10
    """LettaExporterEventsRejected: share of a runtime's event lines the exporter rejected (could not
    read: their runs go uncounted)."""
    events_rejected_window: str = "15m"
    events_rejected_min_lines: int = 10
    """...and only when at least this many lines of the runtime arrived in the window."""
    events_rejected_for: str = "10m"

    event_source_errors_window: str = "5m"
    """LettaExporterEventSourceErrors: reading an event way in (Redis) failed within every such window..."""
    event_source_errors_for: str = "10m"
    """...for this long."""

    def __post_init__(self) -> None:
        problems = []
        if not self.selector.strip():
            problems.append("selector must not be empty (absent(up{...}) needs a matcher)")
        if not self.runbook_url.startswith(("https://", "http://")):
            problems.append("runbook_url must be an http(s) URL")
        if not 0 < self.failed_ratio < 1:
            problems.append("failed_ratio must be between 0 and 1")
        if self.failed_ratio_min_runs < 1:
            problems.append("failed_ratio_min_runs must be at least 1")
        if not 0 < self.tool_error_ratio < 1:
            problems.append("tool_error_ratio must be between 0 and 1")
        if self.tool_error_min_calls < 1:
            problems.append("tool_error_min_calls must be at least 1")
        if not 0 < self.events_rejected_ratio < 1:
            problems.append("events_rejected_ratio must be between 0 and 1")
        if self.events_rejected_min_lines < 1:
            problems.append("events_rejected_min_lines must be at least 1")
        if self.spend_usd_per_hour is not None and self.spend_usd_per_hour <= 0:
            problems.append("spend_usd_per_hour must be positive (or unset: no spend alert)")
        if self.ttft_p95_seconds <= 0 or self.llm_request_p95_seconds <= 0:
            problems.append("latency thresholds must be positive")
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name.endswith(("_window", "_for", "_after")) and not _DURATION.match(value):
                problems.append(f"{field.name}: {value!r} is not a Prometheus duration such as 15m")
        if problems:
            raise ValueError("; ".join(problems))

    @classmethod
    def from_mapping(cls, overrides: Mapping[str, Any]) -> Settings:
        """Defaults with ``overrides`` applied; unknown keys and wrong types are errors."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - set(fields))
        if unknown:
            raise ValueError(f"unknown setting(s): {', '.join(unknown)}; known: {', '.join(fields)}")
        values: dict[str, Any] = {}
        for name, value in overrides.items():
            kind = str(fields[name].type)
            if isinstance(value, bool) or not isinstance(value, _FIELD_TYPES[kind]):
                raise ValueError(f"{name}: expected {kind}, got {value!r}")
            values[name] = float(value) if kind.startswith("float") and isinstance(value, int | float) else value
        return cls(**values)


def _number(value: float) -> str:
    return f"{value:g}"


def _percent(ratio: float) -> str:
    return f"{ratio * 100:g}%"


def _sel(settings: Settings, *matchers: str) -> str:
    return "{" + ", ".join((settings.selector, *matchers)) + "}"


def _rule(
    settings: Settings,
    name: str,
    expr: str,
    for_: str | None,
    severity: str,
    summary: str,
    description: str,
) -> dict[str, Any]:
    rule: dict[str, Any] = {"alert": name, "expr": expr}
    if for_:
        rule["for"] = for_
    rule["labels"] = {"severity": severity}
    rule["annotations"] = {
        "summary": summary,
        "description": description,
        "runbook_url": f"{settings.runbook_url}#{name.lower()}",
    }
    return rule


def runtime_rules(s: Settings, rt: m.Runtime) -> list[dict[str, Any]]:
    """Alerts about one agent runtime's runs as the exporter counts them: the same rules for every
    runtime, over its own families (an event runtime's only exist once its way in is configured)."""
    n, name = rt.names, rt.alert_prefix
    finished = n.RUNS_FINISHED
    agent_labels = ", ".join(rt.agent_labels)  # what --agent-labels adds (Letta only): summed away
    agent = f", {agent_labels}" if agent_labels else ""
    run_labels = f"status, stop_reason{agent}"
    window = s.failed_ratio_window
    failed = _sel(s, f'status="{m.STATUS_FAILED}"')

    def decided(func: str) -> str:
        """Finished runs without those awaiting approval: a burst of them must neither dilute the
        ratio nor lift a few failures over the minimum volume. (No failed run awaits approval.)"""
        runs = f"{func}({finished}{_sel(s)}[{window}])"
        if not rt.awaiting_approval:
            return runs
        return f"{runs} unless {func}({finished}{_sel(s, *m.AWAITING_APPROVAL)}[{window}])"

    failed_ratio = (
        f"(\n"
        f"  sum without ({run_labels}) (rate({finished}{failed}[{window}]))\n"
        f"/\n"
        f"  sum without ({run_labels}) ({decided('rate')})\n"
        f") > {_number(s.failed_ratio)}\n"
        f"and\n"
        f"sum without ({run_labels}) ({decided('increase')}) >= {s.failed_ratio_min_runs}"
    )
    expired = _sel(s, f'status="{m.STATUS_EXPIRED}"')
    # The second branch catches an expired series that first appears with a value of 1 or more,
    # which increase() cannot see (it needs two samples).
    runs_expired = (
        f"sum without ({run_labels}) (increase({finished}{expired}[{s.expired_window}])) > 0\n"
        f"or\n"
        f"sum without ({run_labels}) (\n"
        f"  {finished}{expired} unless {finished}{expired} offset {s.expired_window}\n"
        f") > 0"
    )
    ttft_buckets = f"rate({m.bucket(n.RUN_TTFT)}{_sel(s)}[{s.ttft_window}])"
    ttft = (
        f"histogram_quantile(0.95,\n"
        f"  {f'sum without ({agent_labels}) ({ttft_buckets})' if agent_labels else ttft_buckets}\n"
        f") > {_number(s.ttft_p95_seconds)}"
    )
    llm_phase = _sel(s, f'phase="{m.PHASE_LLM_REQUEST}"')
    llm = (
        f"histogram_quantile(0.95,\n"
        f"  sum without (phase{agent}) "
        f"(rate({m.bucket(n.STEP_DURATION)}{llm_phase}[{s.llm_request_window}]))\n"
        f") > {_number(s.llm_request_p95_seconds)}"
    )
    awaiting = "; runs awaiting tool approval are left out" if rt.awaiting_approval else ""
    rules = [
        _rule(
            s,
            f"{name}RunFailureRatioHigh",
            failed_ratio,
            s.failed_ratio_for,
            "warning",
            f"Many {rt.title} runs are failing",
            f"{{{{ $value | humanizePercentage }}}} of the {rt.title} runs that finished on {{{{ $labels.instance }}}} "
            f"in the last {window} failed (threshold {_percent(s.failed_ratio)}, "
            f"counted once at least {s.failed_ratio_min_runs} runs finished{awaiting}).",
        ),
        _rule(
            s,
            f"{name}RunsExpired",
            runs_expired,
            None,
            "warning",
            f"{rt.title} runs expired",
            f'{{{{ $value | printf "%.0f" }}}} {rt.title} runs seen by {{{{ $labels.instance }}}} expired in the last '
            f"{s.expired_window}: {rt.expired_because}.",
        ),
        _rule(
            s,
            f"{name}RunsStuck",
            f"sum without (status{agent}) ({n.RUNS_STUCK}{_sel(s)}) > 0",
            s.stuck_for,
            "warning",
            f"{rt.title} runs are stuck",
            f"{{{{ $value }}}} {rt.title} runs seen by {{{{ $labels.instance }}}} have been active (created or "
            f"running) for longer than the exporter's --stuck-after, for at least {s.stuck_for}.",
        ),
        _rule(
            s,
            f"{name}RunTTFTHigh",
            ttft,
            s.ttft_for,
            "warning",
            f"{rt.title} time to first token is high",
            f"The 95th percentile time to first token of the {rt.title} runs seen by {{{{ $labels.instance }}}} "
            f"is {{{{ $value | humanizeDuration }}}} over the last {s.ttft_window} "
            f"(threshold {_number(s.ttft_p95_seconds)}s).",
        ),
        _rule(
            s,
            f"{name}StepLLMRequestSlow",
            llm,
            s.llm_request_for,
            "warning",
            f"{rt.title} LLM requests are slow",
            "The 95th percentile LLM request latency of {{ $labels.model }} ({{ $labels.provider }}) "
            f"{rt.title} steps seen by {{{{ $labels.instance }}}} is {{{{ $value | humanizeDuration }}}} over the last "
            f"{s.llm_request_window} (threshold {_number(s.llm_request_p95_seconds)}s).",
        ),
    ]
    if rt.tool_errors:  # behest never says how a tool call went: no error status to count
        rules.append(_tool_errors(s, rt))
    return rules if s.spend_usd_per_hour is None else [*rules, _spend(s, rt, s.spend_usd_per_hour)]


def _tool_errors(s: Settings, rt: m.Runtime) -> dict[str, Any]:
    """Per tool (the other labels summed away): unknown outcomes count as calls, not as errors."""
    calls, window = rt.names.TOOL_CALLS, s.tool_error_window
    others = ", ".join(("status", *rt.agent_labels))
    errors = _sel(s, f'status="{m.TOOL_ERROR}"')
    expr = (
        f"(\n"
        f"  sum without ({others}) (rate({calls}{errors}[{window}]))\n"
        f"/\n"
        f"  sum without ({others}) (rate({calls}{_sel(s)}[{window}]))\n"
        f") > {_number(s.tool_error_ratio)}\n"
        f"and\n"
        f"sum without ({others}) (increase({calls}{_sel(s)}[{window}])) >= {s.tool_error_min_calls}"
    )
    return _rule(
        s,
        f"{rt.alert_prefix}ToolErrorRatioHigh",
        expr,
        s.tool_error_for,
        "warning",
        f"{'An' if rt.title[0] in 'aeiou' else 'A'} {rt.title} tool is failing often",
        "{{ $value | humanizePercentage }} of the calls of the tool {{ $labels.tool }} in "
        f"{rt.title} runs seen by "
        f"{{{{ $labels.instance }}}} returned an error in the last {window} (threshold "
        f"{_percent(s.tool_error_ratio)}, counted once the tool was called {s.tool_error_min_calls} times).",
    )


def _spend(s: Settings, rt: m.Runtime, usd_per_hour: float) -> dict[str, Any]:
    others = ", ".join(("model", "provider", *rt.agent_labels))
    cost = f"rate({rt.names.STEP_COST}{_sel(s)}[{s.spend_window}])"
    expr = f"3600 * sum without ({others}) ({cost}) > {_number(usd_per_hour)}"
    return _rule(
        s,
        f"{rt.alert_prefix}SpendRateHigh",
        expr,
        s.spend_for,
        "warning",
        f"{rt.title} LLM spend is high",
        f"The {rt.title} steps seen by {{{{ $labels.instance }}}} cost "
        '{{ $value | printf "%.2f" }} USD per hour over the '
        f"last {s.spend_window} (threshold {_number(usd_per_hour)} USD/h, priced from the exporter's price table).",
    )


def exporter_rules(s: Settings) -> list[dict[str, Any]]:
    """Alerts about the exporter itself: can it reach Letta, is it polling, is it scraped at all, can
    it read the events runtimes push."""
    stale = (
        f"(time() - {m.LAST_POLL_SUCCESS}{_sel(s)} > {_number(parse_duration(s.stale_after))})\n"
        f"unless\n"
        f"({m.UP}{_sel(s)} == 0)"
    )
    up = f"up{_sel(s)}"
    absent = f"absent({up})\nor\nmax by (namespace, job) ({up}) == 0"
    return [
        _rule(
            s,
            "LettaUnreachable",
            f"{m.UP}{_sel(s)} == 0",
            s.unreachable_for,
            "critical",
            "Letta is unreachable",
            "The exporter {{ $labels.instance }} has not been able to reach the Letta API, or to "
            f"understand its answers, for {s.unreachable_for}.",
        ),
        _rule(
            s,
            "LettaExporterStale",
            stale,
            s.stale_for,
            "warning",
            "letta-exporter has stopped polling",
            "The last successful poll of {{ $labels.instance }} was {{ $value | humanizeDuration }} ago "
            f"(threshold {s.stale_after}) although its last poll did not fail: "
            "the poll loop is hung or far slower than its interval.",
        ),
        _rule(
            s,
            "LettaExporterAbsent",
            absent,
            s.absent_for,
            "warning",
            "letta-exporter is not being scraped",
            f"No target matching {{{s.selector}}} has been scraped successfully for {s.absent_for}: "
            "the exporter is down, missing from service discovery, or its /metrics fails. "
            "The other Letta alerts cannot fire meanwhile.",
        ),
        *_event_ingest_rules(s),
    ]


def _event_ingest_rules(s: Settings) -> list[dict[str, Any]]:
    """The ways in of the event runtimes: their series exist only once one is configured."""
    # A line that cannot be read names no runtime (runtime="unknown"): the share is of all the lines
    # of a way in, whatever their runtime.
    events, window, others = m.EVENTS, s.events_rejected_window, "runtime, result"
    rejected = _sel(s, f'result="{m.EVENT_REJECTED}"')
    ratio = (
        f"(\n"
        f"  sum without ({others}) (rate({events}{rejected}[{window}]))\n"
        f"/\n"
        f"  sum without ({others}) (rate({events}{_sel(s)}[{window}]))\n"
        f") > {_number(s.events_rejected_ratio)}\n"
        f"and\n"
        f"sum without ({others}) (increase({events}{_sel(s)}[{window}])) >= {s.events_rejected_min_lines}"
    )
    errors = f"increase({m.EVENT_SOURCE_ERRORS}{_sel(s)}[{s.event_source_errors_window}]) > 0"
    return [
        _rule(
            s,
            "LettaExporterEventsRejected",
            ratio,
            s.events_rejected_for,
            "warning",
            "letta-exporter rejects event lines",
            "{{ $value | humanizePercentage }} of the event lines that reached {{ $labels.instance }} over "
            f"{{{{ $labels.transport }}}} in the last {window} were rejected (threshold "
            f"{_percent(s.events_rejected_ratio)}, counted once {s.events_rejected_min_lines} lines arrived): "
            "the exporter cannot read them, so their runs are not counted.",
        ),
        _rule(
            s,
            "LettaExporterEventSourceErrors",
            errors,
            s.event_source_errors_for,
            "warning",
            "letta-exporter cannot read an event source",
            "Reading the {{ $labels.transport }} event source of {{ $labels.instance }} has kept failing for "
            f"{s.event_source_errors_for} (retried with backoff): the runs pushed there meanwhile are counted "
            "late, or not at all if the source drops them first.",
        ),
    ]


def rule_groups(settings: Settings) -> dict[str, Any]:
    """One group per runtime (named by its slug: letta, behest, agent-sdk) and the exporter's, sorted
    by name as Prometheus lists them (its rules API and UI sort the groups of a file)."""
    groups = [{"name": rt.slug, "rules": runtime_rules(settings, rt)} for rt in m.RUNTIMES]
    groups.append({"name": "letta-exporter", "rules": exporter_rules(settings)})
    return {"groups": sorted(groups, key=lambda group: str(group["name"]))}


class _Dumper(yaml.SafeDumper):
    """Block lists indented under their key, multi-line strings as literal blocks."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)

HEADER = """\
# Generated by `python -m alerts.generate` (alerts/generate.py): do not edit by hand.
# Thresholds, windows, the series selector and the runbook base are Settings in that file.
# One group per agent runtime (agent-sdk, behest, letta: the same rules over each one's families; an
# event runtime's series, and so its alerts, exist only once its way in is configured) and the exporter's.
# Unit tests: promtool test rules alerts/letta-exporter.rules.test.yml alerts/letta-exporter.event-runtimes.test.yml
"""


def render(settings: Settings) -> str:
    body = yaml.dump(rule_groups(settings), Dumper=_Dumper, sort_keys=False, width=1_000_000)
    return HEADER + body


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, help="YAML mapping of Settings overrides")
    parser.add_argument("--output", default=str(RULES_FILE), help="file to write, - for stdout")
    parser.add_argument("--check", action="store_true", help="compare with --output instead of writing")
    args = parser.parse_args(argv)
    try:
        overrides = (yaml.safe_load(args.config.read_text()) or {}) if args.config else {}
        if not isinstance(overrides, dict):
            raise ValueError(f"{args.config}: expected a mapping of setting names to values")
        text = render(Settings.from_mapping(overrides))
    except (OSError, ValueError, yaml.YAMLError) as exc:
        print(f"alerts.generate: {exc}", file=sys.stderr)
        return 2
    if args.output == "-":
        sys.stdout.write(text)
        return 0
    output = Path(args.output)
    if args.check:
        if not output.exists() or output.read_text() != text:
            print(f"{output} is out of date: run python -m alerts.generate", file=sys.stderr)
            return 1
        return 0
    output.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
