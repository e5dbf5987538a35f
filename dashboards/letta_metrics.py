"""The exporter's metric names and known label values, as the dashboards and alert rules use them.

One place for the names of design.md §3, so that a rename is one edit here followed by
``python -m dashboards.generate`` and ``python -m alerts.generate``. Histograms are named by their
base name; ``bucket``/``count``/``sum`` give the series PromQL reads.

Runs of every agent runtime are counted in families of the same suffixes, labels and meanings under
the runtime's prefix (``letta_``, ``behest_``, ``agent_sdk_``: docs/event-sources.md §6), so they
are :class:`Names` of a prefix rather than constants; a :class:`Runtime` adds what else differs
(which families it has, how its dashboards and alerts name it). Letta's REST-API families and the
exporter's own health (one exporter process serves every prefix) stay plain constants.
"""

from __future__ import annotations

import dataclasses
from typing import overload


class _Family:
    """A per-runtime family: ``<prefix>_<suffix>`` of the :class:`Names` it is read from."""

    def __init__(self, suffix: str) -> None:
        self.suffix = suffix

    @overload
    def __get__(self, names: None, owner: type[Names]) -> _Family: ...

    @overload
    def __get__(self, names: Names, owner: type[Names]) -> str: ...

    def __get__(self, names: Names | None, owner: type[Names]) -> _Family | str:
        return self if names is None else f"{names.prefix}_{self.suffix}"


@dataclasses.dataclass(frozen=True)
class Names:
    """The run families of one metric prefix: ``Names("behest").RUNS_FINISHED`` is
    ``behest_runs_finished_total``."""

    prefix: str

    RUNS_CREATED = _Family("runs_created_total")
    RUNS_FINISHED = _Family("runs_finished_total")
    RUN_DURATION = _Family("run_duration_seconds")
    RUN_TTFT = _Family("run_ttft_seconds")
    RUN_STATUS_CHANGES = _Family("run_terminal_status_changes_total")
    RUN_STEPS = _Family("run_steps")
    RUNS_ACTIVE = _Family("runs_active")
    RUNS_STUCK = _Family("runs_stuck")
    RUN_OLDEST_ACTIVE_CREATED = _Family("run_oldest_active_created_timestamp_seconds")
    STEPS = _Family("steps_total")
    STEP_TOKENS = _Family("step_tokens_total")
    STEP_DURATION = _Family("step_duration_seconds")
    STEP_COST = _Family("step_cost_usd_total")
    UNPRICED_STEPS = _Family("exporter_unpriced_steps_total")
    STEPS_USAGE_MISSING = _Family("steps_usage_missing_total")  # steps the runtime reported no usage for
    TOOL_CALLS = _Family("tool_calls_total")  # with --tool-metrics
    TOOL_DURATION = _Family("tool_duration_seconds")
    TOOL_MESSAGES_MISSING = _Family("runs_tool_messages_missing_total")
    TRACKED_RUNS = _Family("exporter_tracked_runs")

    @property
    def ALL(self) -> tuple[str, ...]:
        return tuple(getattr(self, name) for name, family in vars(Names).items() if isinstance(family, _Family))


# Letta's REST API: polled, so these have no event-runtime equivalent.
UP = "letta_up"
LAST_POLL_SUCCESS = "letta_exporter_last_poll_success_timestamp_seconds"
POLL_DURATION = "letta_exporter_poll_duration_seconds"
API_REQUESTS = "letta_exporter_api_requests_total"
API_REQUEST_DURATION = "letta_exporter_api_request_duration_seconds"
SERVER_CLOCK_OFFSET = "letta_exporter_server_clock_offset_seconds"
AGENT_INFO = "letta_agent_info"  # only with per-agent labels enabled
LETTA_ONLY = (UP, LAST_POLL_SUCCESS, POLL_DURATION, API_REQUESTS, API_REQUEST_DURATION, SERVER_CLOCK_OFFSET, AGENT_INFO)

# The exporter's own health: one process serves every prefix.
BUILD_INFO = "letta_exporter_build_info"
PARSE_ERRORS = "letta_exporter_parse_errors_total"
SPANS_EXPORTED = "letta_exporter_spans_exported_total"
SPANS_DROPPED = "letta_exporter_spans_dropped_total"
SERIES_DROPPED = "letta_exporter_series_dropped_total"  # label sets folded to "other" by the series caps
PRICE_TABLE_INFO = "letta_exporter_price_table_info"  # only with cost on (the default)
EVENTS = "letta_exporter_events_total"  # {runtime, transport, result}: event lines pushed by runtimes
LATE_EVENTS = "letta_exporter_late_events_total"  # {runtime}: events of runs already counted, dropped
EVENT_SOURCE_ERRORS = "letta_exporter_event_source_errors_total"  # {transport}: no runtime label
METRIC_EXPORTS_FAILED = "letta_exporter_otlp_metric_exports_failed_total"  # OTLP metric pushes that failed
SHARED = (
    BUILD_INFO,
    PARSE_ERRORS,
    SPANS_EXPORTED,
    SPANS_DROPPED,
    SERIES_DROPPED,
    PRICE_TABLE_INFO,
    EVENTS,
    LATE_EVENTS,
    EVENT_SOURCE_ERRORS,
    METRIC_EXPORTS_FAILED,
)

# Labels that only exist when per-agent labels are enabled (Letta only); aggregations drop it so
# that alerts keep one series per exporter either way.
AGENT_LABEL = "agent_id"
AGENT_NAME = "agent_name"  # on letta_agent_info only


@dataclasses.dataclass(frozen=True)
class Runtime:
    """An agent runtime whose runs the exporter counts: its names, the families it lacks, and the
    words its dashboards and alerts use where the runtimes differ (docs/event-sources.md §4, §5)."""

    key: str
    """The metric prefix, and the ``runtime`` label value of letta_exporter_events_total."""
    slug: str
    """Dashboard file names and uids, rule group name."""
    title: str
    """As in "Many behest runs are failing"."""
    alert_prefix: str
    """Of every alert name: LettaRunsStuck, BehestRunsStuck."""
    polled: bool
    """Read over Letta's REST API: the API/poll families, per-agent labels and letta_agent_info, tool
    messages that can be missing. Otherwise the runtime pushes events: the event-ingest families."""
    awaiting_approval: bool
    """Its runs can end completed with stop reason requires_approval, paused for a human."""
    tool_errors: bool
    """Its tool calls can have status error (behest never says how a call went)."""
    tool_durations: bool
    """It fills *_tool_duration_seconds."""
    # Words of the panel descriptions and alert texts where the runtimes differ:
    run_duration_from: str  # where a run's duration is measured from
    ttft_from: str  # what the time to first token is, and which runs have one
    tool_statuses: str  # the statuses of its tool calls
    status_change_example: str  # a terminal status that changes later
    expired_because: str  # why a run counts as expired

    @property
    def names(self) -> Names:
        return Names(self.key)

    @property
    def agent_labels(self) -> tuple[str, ...]:
        """The labels --agent-labels adds to its families: none without agent ids on the wire."""
        return (AGENT_LABEL,) if self.polled else ()

    @property
    def runtime_matcher(self) -> str:
        """Picks its lines out of letta_exporter_events_total, with the rejected lines of every runtime
        (a line that cannot be read names no runtime: ``runtime="unknown"``)."""
        return f'runtime=~"{self.key}|{UNATTRIBUTED}"'

    def known(self) -> frozenset[str]:
        """Every name its dashboards and alerts may read."""
        return frozenset((*self.names.ALL, *SHARED, *(LETTA_ONLY if self.polled else ())))


LETTA = Runtime(
    key="letta",
    slug="letta",
    title="Letta",
    alert_prefix="Letta",
    polled=True,
    awaiting_approval=True,
    tool_errors=True,
    tool_durations=True,
    run_duration_from="total_duration_ns, else completed_at - created_at",
    ttft_from="Quantiles of ttft_ns. Only servers that report it (Letta 0.11 and older, hosted deployments) "
    "fill this panel.",
    tool_statuses="success, error, or unknown when the run ended before the tool returned",
    status_change_example="cancelled, then completed",
    expired_because="Letta reported them expired, or they stayed non-terminal for longer than the exporter's "
    "--expire-after",
)
BEHEST = Runtime(
    key="behest",
    slug="behest",
    title="behest",
    alert_prefix="Behest",
    polled=False,
    awaiting_approval=False,
    tool_errors=False,
    tool_durations=False,
    run_duration_from="RunStarted to the terminal event",
    ttft_from="Quantiles of RunStarted to the first streamed token of the first iteration. Only runs whose "
    "first model call streamed fill this panel.",
    tool_statuses="unknown when executed (behest never says how a call went), not_executed otherwise",
    status_change_example="expired, then its terminal event arrived",
    expired_because="no event of theirs arrived for the exporter's --event-idle-expire-after",
)
AGENT_SDK = Runtime(
    key="agent_sdk",
    slug="agent-sdk",
    title="agent-sdk",
    alert_prefix="AgentSdk",
    polled=False,
    awaiting_approval=True,
    tool_errors=True,
    tool_durations=True,
    run_duration_from="done.duration, else the first to the terminal event",
    ttft_from="Quantiles of the first event to the first text_delta. Only streaming runs fill this panel.",
    tool_statuses="success, error, blocked, rejected, awaiting_confirmation (waiting for a human), or unknown "
    "when the run ended before the call did",
    status_change_example="expired, then its terminal event arrived",
    expired_because="no event of theirs arrived for the exporter's --event-idle-expire-after",
)
RUNTIMES = (LETTA, BEHEST, AGENT_SDK)

ALL = tuple(dict.fromkeys((*(name for rt in RUNTIMES for name in rt.names.ALL), *LETTA_ONLY, *SHARED)))

# Label values the queries select on (the exporter pre-initialises these, design.md §3).
PHASE_LLM_REQUEST = "llm_request"
PHASE_TOOL_EXECUTION = "tool_execution"
PHASE_STEP = "step"
STATUS_COMPLETED = "completed"
STATUS_FAILED = "failed"
STATUS_EXPIRED = "expired"
STOP_REASON_REQUIRES_APPROVAL = "requires_approval"
TOKEN_INPUT = "input"
TOKEN_OUTPUT = "output"
TOKEN_CACHED_INPUT = "cached_input"
TOKEN_CACHE_WRITE = "cache_write"
TOKEN_REASONING = "reasoning"
TOOL_ERROR = "error"  # a tool call's status: success, error, unknown (no return message), ... (Runtime.tool_statuses)
EVENT_REJECTED = "rejected"  # an event line's result: accepted, duplicate, ignored, rejected
UNATTRIBUTED = "unknown"  # the runtime label of a rejected line: unreadable, so of no known runtime

# A run Letta (or agent-sdk) completed with stop reason requires_approval is paused until a human
# approves a tool call: neither a success nor a failure yet. The run ratios leave these runs out
# (numerator and denominator) and the dashboards show them as their own "awaiting approval" series.
AWAITING_APPROVAL = (f'status="{STATUS_COMPLETED}"', f'stop_reason="{STOP_REASON_REQUIRES_APPROVAL}"')


def bucket(histogram: str) -> str:
    return f"{histogram}_bucket"


def count(histogram: str) -> str:
    return f"{histogram}_count"


def total(histogram: str) -> str:
    """The ``_sum`` series of a histogram (named ``total`` to keep clear of the builtin)."""
    return f"{histogram}_sum"
