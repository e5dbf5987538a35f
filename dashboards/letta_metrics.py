"""The exporter's metric names and known label values, as the dashboards and alert rules use them.

One place for the names of design.md §3, so that a rename is one edit here followed by
``python -m dashboards.generate`` and ``python -m alerts.generate``. Histograms are named by their
base name; ``bucket``/``count``/``sum`` give the series PromQL reads.
"""

from __future__ import annotations

RUNS_CREATED = "letta_runs_created_total"
RUNS_FINISHED = "letta_runs_finished_total"
RUN_DURATION = "letta_run_duration_seconds"
RUN_TTFT = "letta_run_ttft_seconds"
RUN_STATUS_CHANGES = "letta_run_terminal_status_changes_total"
RUN_STEPS = "letta_run_steps"
RUNS_ACTIVE = "letta_runs_active"
RUNS_STUCK = "letta_runs_stuck"
RUN_OLDEST_ACTIVE_CREATED = "letta_run_oldest_active_created_timestamp_seconds"
STEPS = "letta_steps_total"
STEP_TOKENS = "letta_step_tokens_total"
STEP_DURATION = "letta_step_duration_seconds"
UP = "letta_up"
BUILD_INFO = "letta_exporter_build_info"
LAST_POLL_SUCCESS = "letta_exporter_last_poll_success_timestamp_seconds"
POLL_DURATION = "letta_exporter_poll_duration_seconds"
API_REQUESTS = "letta_exporter_api_requests_total"
API_REQUEST_DURATION = "letta_exporter_api_request_duration_seconds"
PARSE_ERRORS = "letta_exporter_parse_errors_total"
TRACKED_RUNS = "letta_exporter_tracked_runs"
SERVER_CLOCK_OFFSET = "letta_exporter_server_clock_offset_seconds"
SPANS_EXPORTED = "letta_exporter_spans_exported_total"
SPANS_DROPPED = "letta_exporter_spans_dropped_total"
SERIES_DROPPED = "letta_exporter_series_dropped_total"  # label sets folded to "other" by the series caps
AGENT_INFO = "letta_agent_info"  # only with per-agent labels enabled
STEP_COST = "letta_step_cost_usd_total"
UNPRICED_STEPS = "letta_exporter_unpriced_steps_total"
PRICE_TABLE_INFO = "letta_exporter_price_table_info"  # only with cost on (the default)
TOOL_CALLS = "letta_tool_calls_total"  # with --tool-metrics
TOOL_DURATION = "letta_tool_duration_seconds"
TOOL_MESSAGES_MISSING = "letta_runs_tool_messages_missing_total"

HISTOGRAMS = (RUN_DURATION, RUN_TTFT, RUN_STEPS, STEP_DURATION, API_REQUEST_DURATION, TOOL_DURATION)
ALL = (
    RUNS_CREATED,
    RUNS_FINISHED,
    RUN_DURATION,
    RUN_TTFT,
    RUN_STATUS_CHANGES,
    RUN_STEPS,
    RUNS_ACTIVE,
    RUNS_STUCK,
    RUN_OLDEST_ACTIVE_CREATED,
    STEPS,
    STEP_TOKENS,
    STEP_DURATION,
    UP,
    BUILD_INFO,
    LAST_POLL_SUCCESS,
    POLL_DURATION,
    API_REQUESTS,
    API_REQUEST_DURATION,
    PARSE_ERRORS,
    TRACKED_RUNS,
    SERVER_CLOCK_OFFSET,
    SPANS_EXPORTED,
    SPANS_DROPPED,
    SERIES_DROPPED,
    AGENT_INFO,
    STEP_COST,
    UNPRICED_STEPS,
    PRICE_TABLE_INFO,
    TOOL_CALLS,
    TOOL_DURATION,
    TOOL_MESSAGES_MISSING,
)

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
TOOL_ERROR = "error"  # a tool call's status: success, error, unknown (no return message)

# A run Letta completed with stop reason requires_approval is paused until a human approves a tool
# call: neither a success nor a failure yet. The run ratios leave these runs out (numerator and
# denominator) and the dashboards show them as their own "awaiting approval" series.
AWAITING_APPROVAL = (f'status="{STATUS_COMPLETED}"', f'stop_reason="{STOP_REASON_REQUIRES_APPROVAL}"')

# Labels that only exist when per-agent labels are enabled; aggregations drop it so that alerts
# keep one series per exporter either way.
AGENT_LABEL = "agent_id"
AGENT_NAME = "agent_name"  # on letta_agent_info only


def bucket(histogram: str) -> str:
    return f"{histogram}_bucket"


def count(histogram: str) -> str:
    return f"{histogram}_count"


def total(histogram: str) -> str:
    """The ``_sum`` series of a histogram (named ``total`` to keep clear of the builtin)."""
    return f"{histogram}_sum"
