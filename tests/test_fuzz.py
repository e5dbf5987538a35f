"""Fuzzing: no JSON (or non-JSON) the Letta API can send makes parsing fail other than as designed, or a poll raise.

The Letta source relies on two contracts that example tests cannot exhaust:
- a reader of ``exporter.letta.records`` returns a model or raises ``InvalidRecord`` (the poller
  catches nothing else), and what it returns can be counted;
- ``PollLoop.poll()`` returns a bool whatever each endpoint answers: drawn JSON, damaged records,
  broken bytes, odd statuses, ``Retry-After`` and ``Date`` headers, transport errors; and ``/metrics``
  still renders afterwards.
A third property keeps fuzzing honest about counting: with a drawn subset of the simulator's answers
corrupted, polls still never raise, and no run is counted twice or without having finished.

Deterministic by default (``derandomize=True``, no example database): CI runs the same examples every
time, in well under a minute. To fuzz longer, with fresh random examples each run and 30x as many:

    HYPOTHESIS_PROFILE=long pytest tests/test_fuzz.py

A failure prints the minimal input and a ``@reproduce_failure`` blob to replay it.
"""

from __future__ import annotations

import email.utils
import json
import math
import os
import tempfile
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, cast

import httpx2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest
from pydantic import BaseModel

from exporter.ledger import Ledger
from exporter.letta import LettaSettings, records
from exporter.letta.records import InvalidRecord, parse_timestamp
from exporter.model import FinishedRun, Run, RunMetrics, Step, StepMetrics
from exporter.otlp import SpanDelivery
from exporter.simulator import Scenario
from exporter.simulator.faults import Handler
from exporter.types import (
    ACTIVE_STATUSES,
    NONE,
    OTHER,
    PROBLEM_KINDS,
    STEP_STATUSES,
    STOP_REASONS,
    TERMINAL_STATUSES,
    ProblemKind,
    TerminalStatus,
)
from tests.harness import SETTINGS, Harness, assert_counts_match_truth
from tests.samples import RECORDS, Reader

# -- budget ------------------------------------------------------------------------------------------

settings.register_profile(
    "letta-fuzz",
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
settings.register_profile("long", settings.get_profile("letta-fuzz"), derandomize=False, max_examples=3000)
PROFILE = settings.get_profile("long" if os.environ.get("HYPOTHESIS_PROFILE") == "long" else "letta-fuzz")


def examples(n: int) -> settings:
    """`n` examples in CI, scaled up by the `long` profile (its max_examples is 30x the default 100)."""
    return settings(PROFILE, max_examples=max(1, n * PROFILE.max_examples // 100))


# -- JSON and almost-valid records -------------------------------------------------------------------

# Strings a server, proxy or user input can put anywhere: control and URL characters, lone surrogates
# ("\ud800" is valid JSON), non-ASCII. Drawn by name: st.text() alone almost never yields them.
ODD_TEXT = st.sampled_from(
    [
        "",
        " ",
        "\x00",
        "\x1f",
        "\n",
        '"',
        "\\",
        "a/b",
        "../agents/",
        "run?limit=1",
        "run#0",
        "%2F",
        "ünïcödé",
        "🦙",
        "\ud800",
        "x\udfff",
        "\u2028",
    ]
)
TEXT = st.text(max_size=12) | ODD_TEXT
ODD_CHARS = st.sampled_from(["\ud800", "\udfff", "\x00", "\x1f", "\n", "/", "?", "#", "%", " ", "é", "🦙"])
HUGE = st.sampled_from([2**63, -(2**63) - 1, 10**30, 10**400, -(10**400)]) | st.integers(2**64, 10**4000)
NUMBERS = st.one_of(
    st.integers(-5, 10**10),
    st.integers(),
    HUGE,
    st.floats(),  # nan and +-inf: Python's json module reads and writes NaN / Infinity
    st.sampled_from(["12", "-3", "1e400", "nan", "-inf", "0x10", " 7 ", ""]),
)
SCALARS = st.none() | st.booleans() | NUMBERS | TEXT
# st.datetimes() alone almost never reaches the ends of the range, where UTC conversion overflows.
MOMENTS = st.sampled_from([datetime.min, datetime.max, datetime(1970, 1, 1), datetime(2038, 1, 19, 3, 14, 8)])
MOMENTS |= st.datetimes()
OFFSETS = st.sampled_from([timedelta(0), timedelta(hours=1), -timedelta(hours=1), timedelta(hours=23, minutes=59)])
OFFSETS |= st.timedeltas(timedelta(hours=-23, minutes=-59), timedelta(hours=23, minutes=59))
TIMESTAMPS = st.one_of(
    st.builds(lambda moment, tz: moment.replace(tzinfo=tz).isoformat(), MOMENTS, st.none() | OFFSETS.map(timezone)),
    MOMENTS.map(lambda moment: moment.isoformat() + "Z"),
    st.from_regex(r"\A\d{4}-\d\d-\d\d([T ]\d\d:\d\d(:\d\d(\.\d{1,9})?)?)?(Z|[+-]\d\d(:?\d\d)?)?\Z"),
    st.sampled_from(["", "Z", "now", "2026-11-22T12:40:37.967271ZZ", "2026-02-30T00:00:00Z", "0000-01-01"]),
)
RUN_IDS = tuple(f"run-{i}" for i in range(5))
STEP_IDS = tuple(f"step-{i}" for i in range(4))
AGENT_IDS = tuple(f"agent-{i}" for i in range(2))
IDS = st.sampled_from(RUN_IDS + STEP_IDS + AGENT_IDS) | ODD_TEXT | SCALARS  # ids end up in URLs, labels, SQLite
ENUMS = (
    st.sampled_from(
        [*ACTIVE_STATUSES, *TERMINAL_STATUSES, "not_started", *STEP_STATUSES, *STOP_REASONS, "COMPLETED", "weird"]
    )
    | SCALARS
)


def json_values(keys: st.SearchStrategy[str], max_leaves: int = 12) -> st.SearchStrategy[Any]:
    """Any JSON document, dict keys drawn from `keys` so that objects look like Letta's now and then."""
    return st.recursive(
        SCALARS,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
        max_leaves=max_leaves,
    )


def _details(*keys: str) -> st.SearchStrategy[Any]:
    return st.dictionaries(st.sampled_from(keys), NUMBERS | SCALARS, max_size=len(keys)) | SCALARS


COUNT_FIELDS = (
    "ttft_ns",
    "total_duration_ns",
    "prompt_tokens",
    "completion_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "run_ns",
    "run_start_ns",
    "num_steps",
    "llm_request_ns",
    "tool_execution_ns",
    "step_ns",
)
# What each field of a run, step or metrics object can plausibly be turned into.
FIELDS: dict[str, st.SearchStrategy[Any]] = {
    **dict.fromkeys(("id", "run_id", "job_id", "agent_id"), IDS),
    **dict.fromkeys(("status", "stop_reason"), ENUMS),
    **dict.fromkeys(("created_at", "completed_at"), TIMESTAMPS | SCALARS),
    **dict.fromkeys(COUNT_FIELDS, NUMBERS | SCALARS),
    **dict.fromkeys(("metadata", "metadata_"), _details("agent_id", "run_type", "error")),
    "prompt_tokens_details": _details("cached_tokens", "cache_read_tokens", "cache_creation_tokens"),
    "completion_tokens_details": _details("reasoning_tokens"),
    "error_data": _details("message", "traceback"),
    "trace_id": st.from_regex(r"\A[0-9a-fA-F]{30,33}\Z") | SCALARS,
    **dict.fromkeys(("model", "provider_name", "error_type", "name", "job_type"), ODD_TEXT | SCALARS),
    "background": SCALARS,
}
STRING_FIELDS = frozenset({"id", "run_id", "job_id", "agent_id", "model", "provider_name", "error_type", "name"})
KEYS = st.sampled_from(sorted(FIELDS)) | TEXT
JSON = json_values(KEYS)
RUN_BASES = [item for _, reader, item in RECORDS if reader is records.RUN]
STEP_BASES = [item for _, reader, item in RECORDS if reader is records.STEP]
RUN_METRICS_BASES = [item for _, reader, item in RECORDS if reader is records.RUN_METRICS]
STEP_METRICS_BASES = [item for _, reader, item in RECORDS if reader is records.STEP_METRICS]


@st.composite
def damaged(draw: st.DrawFn, record: dict[str, Any], protect: frozenset[str] = frozenset()) -> dict[str, Any]:
    """`record` with a few fields removed, set to odd values of their kind, or to any JSON.

    `protect`ed fields can only be removed: what the counting property needs to stay true."""
    out = dict(record)
    if draw(st.sampled_from([False, False, True]), label="odd strings"):  # a server with broken text handling
        odd = draw(ODD_CHARS)
        out |= {key: out[key] + odd for key in sorted(STRING_FIELDS - protect) if isinstance(out.get(key), str)}
    keys = st.sampled_from(sorted(FIELDS)) | st.sampled_from(sorted(out))  # mostly the fields the models read
    for key in draw(st.lists(keys, max_size=4, unique=True)):
        how = "delete" if key in protect else draw(st.sampled_from(("field", "json", "delete")))
        if how == "delete":
            out.pop(key, None)
        else:
            out[key] = draw(FIELDS.get(key, JSON) if how == "field" else JSON)
    return out


def almost_valid(bases: list[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """A recorded Letta 0.16.8 object, damaged: most parse, many just barely."""
    return st.sampled_from(bases).flatmap(damaged)


RECORDS_BY_READER: dict[Reader, list[dict[str, Any]]] = {
    records.RUN: RUN_BASES,
    records.STEP: STEP_BASES,
    records.RUN_METRICS: RUN_METRICS_BASES,
    records.STEP_METRICS: STEP_METRICS_BASES,
}
READERS = st.sampled_from(list(RECORDS_BY_READER))
A_RUN = records.RUN(RUN_BASES[0], [])


# -- 1. model parsing --------------------------------------------------------------------------------


def parse_or_reject(reader: Reader, raw: Any) -> BaseModel | None:
    """Parse like the poller: an InvalidRecord is a counted problem, any other exception escapes."""
    problems: list[ProblemKind] = []
    try:
        parsed = reader(raw, problems)
    except InvalidRecord:
        return None
    assert set(problems) <= set(PROBLEM_KINDS), problems  # they become label values: a bounded set
    return parsed


def assert_usable(parsed: BaseModel) -> None:
    """What the exporter does with a parsed record must not raise either: derived fields, then counting it.

    Rendering `/metrics` is checked by the poller tests, where text arrives as the client decodes it."""
    run, run_metrics = A_RUN, None
    steps: tuple[Step, ...] = ()
    timings: dict[str, StepMetrics] = {}
    if isinstance(parsed, Run):
        run = parsed
        assert run.status in (*ACTIVE_STATUSES, *TERMINAL_STATUSES)
        assert run.terminal == (run.status in TERMINAL_STATUSES)
        assert run.stop_reason in (*STOP_REASONS, OTHER, None)
        for moment in (run.created_at, run.completed_at):
            assert moment is None or (moment.tzinfo is UTC and math.isfinite(moment.timestamp()))
        assert all(n is None or n >= 0 for n in (run.ttft_ns, run.total_duration_ns))
    elif isinstance(parsed, Step):
        steps = (parsed,)
        assert parsed.status in (*STEP_STATUSES, OTHER, None)
        assert parsed.stop_reason in (*STOP_REASONS, OTHER, None)
        assert all(isinstance(n, int) and n >= 0 for n in parsed.tokens().values())
        timings = {parsed.id: StepMetrics(llm_request_ns=1, step_ns=2)}
    elif isinstance(parsed, StepMetrics):
        steps = (records.STEP(STEP_BASES[0], []),)
        timings = {steps[0].id: parsed}
    else:
        run, run_metrics = A_RUN.model_copy(update={"total_duration_ns": None}), cast(RunMetrics, parsed)
    ledger, status = Ledger(), cast(TerminalStatus, run.status) if run.terminal else "expired"
    ledger.record(FinishedRun(run=run, status=status, steps=steps, step_metrics=timings, run_metrics=run_metrics))
    assert ledger.value("letta_runs_finished", (status, run.stop_reason or NONE)) == 1


@examples(400)
@given(reader=READERS, raw=JSON)
def test_any_json_value_parses_or_is_rejected(reader: Reader, raw: Any) -> None:
    """Letta can answer anything: a record we cannot use must be a counted problem, not a crash."""
    parsed = parse_or_reject(reader, raw)
    if parsed is not None:
        assert_usable(parsed)


@examples(600)
@given(data=st.data(), reader=READERS)
def test_almost_valid_records_parse_or_are_rejected(data: st.DataObject, reader: Reader) -> None:
    """Real records with fields removed or retyped: payload drift between versions looks exactly like this."""
    raw = data.draw(almost_valid(RECORDS_BY_READER[reader]), label="record")
    parsed = parse_or_reject(reader, raw)
    if parsed is not None:
        assert_usable(parsed)


def test_almost_valid_records_mostly_still_parse() -> None:
    """Guards the strategy itself: damage that made every record unusable would test only the rejection path."""
    parsed: list[bool] = []

    @examples(100)
    @given(raw=almost_valid(RUN_BASES))
    def collect(raw: dict[str, Any]) -> None:
        parsed.append(parse_or_reject(records.RUN, raw) is not None)

    collect()
    assert 0.2 < sum(parsed) / len(parsed) < 1.0


@examples(500)
@given(value=TIMESTAMPS | SCALARS)
def test_parse_timestamp_returns_utc_or_raises_value_error(value: Any) -> None:
    """Both the client's cursor logic and the records reader catch ValueError, and only that, around it."""
    try:
        parsed = parse_timestamp(value)
    except ValueError:
        return
    assert parsed is None if value in (None, "") else parsed is not None and parsed.tzinfo is UTC


# -- 2. the poll loop against a fuzzed Letta -----------------------------------------------------------

RETRY_AFTER = (
    st.none()
    | st.sampled_from(
        [
            "",
            "0",
            "-1",
            "0.5",
            "31",
            "1e309",
            "nan",
            "inf",
            "-inf",
            "99999999",
            "soon",
            "Wed, 21 Oct 2015 07:28:00 GMT",
            "Fri, 31 Dec 9999 23:59:59 -2359",
            "Mon, 01 Jan 0001 00:00:00 +2359",
        ]
    )
    | st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30)
)


def dates(now: float) -> st.SearchStrategy[str | None]:
    """`Date` headers, which set the server clock offset: missing, broken, or some way off `now`."""
    broken = st.sampled_from(["", "soon", "Mon, 01 Jan 0001 00:00:00 GMT", "Fri, 31 Dec 9999 23:59:59 -2359"])
    offsets = st.sampled_from([-90000.0, -100.0, 0.0, 5.0, 100.0, 90000.0])
    return st.none() | broken | offsets.map(lambda offset: email.utils.formatdate(now + offset, usegmt=True))


ERROR_STATUSES = st.sampled_from([204, 301, 400, 404, 422, 429, 500, 502, 503])
TRANSPORT_ERRORS = st.sampled_from([httpx2.ConnectError, httpx2.ReadTimeout, httpx2.RemoteProtocolError])
# Seconds a run was created before the poll: around the visibility window, expiry and far back.
AGES = st.sampled_from([-40.0, -1.0, 0.0, 0.5, 5.0, 29.0, 31.0, 59.0, 61.0, 120.0, 1000.0, 90000.0])
ADVANCES = st.sampled_from([0.5, 1.0, 2.0, 15.0, 31.0, 61.0, 400.0, 90000.0])
LETTA_SETTINGS = st.builds(
    replace,
    st.just(SETTINGS),
    page_size=st.sampled_from([1, 2, 3, 100]),
    backfill=st.sampled_from([0.0, 600.0]),
    step_timings=st.booleans(),
    detail_attempts=st.sampled_from([1, 3]),
)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def _json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> httpx2.Response:
    content = json.dumps(body).encode()  # ensure_ascii: lone surrogates travel as \ud800 escapes
    return httpx2.Response(status, content=content, headers={"Content-Type": "application/json", **(headers or {})})


class RecordedSpans:
    """Stands in for `SpanDelivery`, so that polls also look up agent names and serialize exports."""

    def __init__(self) -> None:
        self.runs: list[FinishedRun] = []

    def submit(self, runs: list[FinishedRun]) -> None:
        self.runs.extend(runs)


class FuzzedLetta(Harness):
    """A poll loop whose Letta answers every request with content hypothesis draws then and there."""

    def __init__(self, data: st.DataObject, state_path: str, letta_settings: LettaSettings, spans: bool) -> None:
        self.data = data
        self.spans = RecordedSpans() if spans else None
        quiet = Scenario(runs_per_second=0.0, history=0)  # the simulator answers nothing here
        super().__init__(quiet, state_path, letta_settings, wrap=lambda _: self.answer, retries=1)

    def restart(self) -> None:
        super().restart()
        self.loop = self.make_loop(cast(SpanDelivery | None, self.spans))

    def draw(self, strategy: st.SearchStrategy[Any], label: str) -> Any:
        return self.data.draw(strategy, label=label)

    def answer(self, request: httpx2.Request) -> httpx2.Response:
        response = self.body(request)
        date = self.draw(dates(self.clock.now), "Date")
        if date is not None:
            response.headers["Date"] = date
        return response

    def body(self, request: httpx2.Request) -> httpx2.Response:
        path = request.url.path
        kind = self.draw(
            st.sampled_from(
                ["valid", "valid", "valid", "json", "bytes", "truncated", "nested", "encoding", "status", "raise"]
            ),
            f"{path} answer",
        )
        if kind == "raise":
            raise self.draw(TRANSPORT_ERRORS, "error")("fuzzed", request=request)
        if kind == "status":
            retry_after = self.draw(RETRY_AFTER, "Retry-After")
            body = self.draw(st.none() | JSON, "error body")
            headers = {} if retry_after is None else {"Retry-After": retry_after}
            return _json_response(body, self.draw(ERROR_STATUSES, "status"), headers)
        if kind == "json":
            return _json_response(self.draw(JSON, "body"))
        if kind == "bytes":
            return httpx2.Response(200, content=self.draw(st.binary(max_size=64), "body"))
        if kind == "nested":
            depth = self.draw(st.sampled_from([2, 100, 5000]), "depth")
            return httpx2.Response(200, content=b"[" * depth + b"]" * depth)
        if kind == "encoding":  # a proxy that labels a plain body as compressed
            encoding = self.draw(st.sampled_from(["gzip", "deflate", "identity", "x-unknown"]), "Content-Encoding")
            body = httpx2.ByteStream(b'[{"id": "run-0"}]')  # a stream: the client decodes it, as off the wire
            return httpx2.Response(200, stream=body, headers={"Content-Encoding": encoding})
        response = _json_response(self.draw(self.valid_body(path), "body"))
        if kind == "truncated":
            cut = self.draw(st.integers(0, max(0, len(response.content) - 1)), "cut at")
            return httpx2.Response(200, content=response.content[:cut])
        return response

    def valid_body(self, path: str) -> st.SearchStrategy[Any]:
        """What the endpoint would answer if the records were merely odd: ids from small pools so that
        runs are seen again, finish, disappear; creation times around the clock's interesting edges."""
        now, parts = self.clock.now, path.strip("/").split("/")
        if parts == ["v1", "runs"]:
            return st.lists(self.run_record(now, st.sampled_from(RUN_IDS)), max_size=4)
        if parts[:2] == ["v1", "runs"] and len(parts) == 3:
            return self.run_record(now, st.just(parts[2]) | st.sampled_from(RUN_IDS))
        if parts[:2] == ["v1", "runs"] and parts[3:] == ["steps"]:
            steps = st.builds(
                lambda base, i, s: {**base, "id": i, "run_id": parts[2], "status": s},
                st.sampled_from(STEP_BASES),
                st.sampled_from(STEP_IDS),
                st.sampled_from([*STEP_STATUSES, "weird"]),
            )
            return st.lists(steps.flatmap(damaged), max_size=3)
        if parts[:2] == ["v1", "runs"] and parts[3:] == ["metrics"]:
            return almost_valid(RUN_METRICS_BASES)
        if parts[:2] == ["v1", "steps"] and parts[3:] == ["metrics"]:
            return almost_valid(STEP_METRICS_BASES)
        if parts == ["v1", "agents"]:
            agent = st.fixed_dictionaries({"id": st.sampled_from(AGENT_IDS) | IDS, "name": SCALARS})
            return st.lists(agent, max_size=3)
        return JSON

    @staticmethod
    def run_record(now: float, ids: st.SearchStrategy[str]) -> st.SearchStrategy[dict[str, Any]]:
        return st.builds(
            lambda base, run_id, age, status, reason: {
                **base,
                "id": run_id,
                "created_at": _iso(now - age),
                "status": status,
                "stop_reason": reason,
                "agent_id": AGENT_IDS[0],
            },
            st.sampled_from(RUN_BASES),
            ids,
            AGES,
            st.sampled_from(
                ["created", "running", "completed", "failed", "cancelled", "expired", "not_started", "weird"]
            ),
            st.none() | st.sampled_from(STOP_REASONS),
        ).flatmap(damaged)


@examples(300)
@given(data=st.data())
def test_polls_never_raise_whatever_each_endpoint_answers(data: st.DataObject) -> None:
    """`poll()` is the daemon's loop body: an exception there stops all metrics, not just one run's.

    Restarts in between also read back whatever the odd answers left in the state file."""
    with tempfile.TemporaryDirectory() as tmp:
        letta_settings, spans = data.draw(LETTA_SETTINGS, label="settings"), data.draw(st.booleans(), label="spans")
        h = FuzzedLetta(data, os.path.join(tmp, "state.db"), letta_settings, spans)
        try:
            for _ in range(data.draw(st.integers(1, 5), label="polls")):
                if data.draw(st.booleans(), label="restart first"):
                    h.store.close()
                    h.restart()
                ok = h.poll()
                assert isinstance(ok, bool)
                assert h.value("letta_up") == (1.0 if ok else 0.0)
                assert h.value("letta_exporter_tracked_runs") == len(h.loop.lifecycle.runs)
                assert b"letta_up" in generate_latest(h.metrics.registry)
                h.clock.now += data.draw(ADVANCES, label="clock advances")
        finally:
            h.store.close()


# -- 3. the simulator, a drawn subset of its answers corrupted ---------------------------------------

# Slow runs (some outlive the listing window: active listings and GETs), many cancels, flips and lagging
# statuses; no zombies and no expiry, so that every run counted is one that finished.
MIXED = Scenario(
    seed=11,
    agents=2,
    runs_per_second=0.5,
    max_runs=25,
    history=8,
    history_span_s=120.0,
    zombie=0.0,
    duration_scale=10.0,
    flip=0.15,
    cancelled=0.1,
    lagging=0.1,
)
MIXED_SETTINGS = replace(SETTINGS, expire_after=3600.0)
MIXED_SECONDS = 150.0  # every run has finished by then: about 110 (every 13 s) to 280 (every 1 s) requests
# Corrupt bodies must not invent runs: without a `created_at` no drawn object parses as one.
NO_RUNS = json_values(st.sampled_from(sorted(set(FIELDS) - {"created_at"})) | TEXT.filter(lambda k: k != "created_at"))
# What a damaged answer may not change about a run: which it is, when it was created, that it finished.
RUN_IDENTITY = frozenset({"id", "created_at", "status", "stop_reason"})


class Corrupting:
    """`handle` with the answers to the requests numbered in `at` replaced by drawn corruption."""

    def __init__(self, handle: Handler, at: frozenset[int], data: st.DataObject) -> None:
        self.handle, self.at, self.data = handle, at, data
        self.seen = 0
        self.corrupted = 0

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        n, self.seen = self.seen, self.seen + 1
        if n not in self.at:
            return self.handle(request)
        self.corrupted += 1
        draw = self.data.draw
        kind = draw(st.sampled_from(["damage", "json", "bytes", "truncated", "status", "raise"]), f"#{n} corruption")
        if kind == "raise":
            raise draw(TRANSPORT_ERRORS, "error")("corrupted", request=request)
        response = self.handle(request)
        if kind == "status":  # not 404: that says "deleted", and a deleted run is one Letta no longer has
            code = draw(st.sampled_from([429, 500, 502, 503]), "status")
            retry_after = draw(RETRY_AFTER, "Retry-After")
            return _json_response(
                {"detail": "corrupted"}, code, {} if retry_after is None else {"Retry-After": retry_after}
            )
        if kind == "json":
            return _json_response(draw(NO_RUNS, "body"))
        if kind == "bytes":
            return httpx2.Response(200, content=draw(st.binary(max_size=64), "body"))
        if kind == "truncated":
            return httpx2.Response(200, content=response.content[: draw(st.integers(0, len(response.content)), "cut")])
        if response.status_code != 200:
            return response
        body = response.json()
        protect = (
            RUN_IDENTITY
            if request.url.path.startswith("/v1/runs") and "/steps" not in request.url.path
            else frozenset()
        )
        if isinstance(body, list):
            body = [draw(damaged(item, protect), "item") if isinstance(item, dict) else item for item in body]
        elif isinstance(body, dict):
            body = draw(damaged(body, protect), "object")
        return _json_response(body)


@examples(50)
@given(
    data=st.data(),
    at=st.frozensets(st.integers(0, 280), max_size=40),
    seed=st.integers(1, 3),
    every=st.sampled_from([1.0, 5.0, 13.0]),
)
def test_corrupted_answers_never_raise_nor_count_a_run_twice(
    data: st.DataObject, at: frozenset[int], seed: int, every: float
) -> None:
    """Corruption may cost counts (a run whose only listing was unreadable) but never invent or repeat one.

    Checked per run id rather than against the number of runs that finished after start: a run that
    existed at start but was unreadable in the first listing, created inside the visibility window, is
    later taken for a late-visible new run and counted (once), which is by design."""
    corrupting: list[Corrupting] = []

    def wrap(handle: Handler) -> Handler:
        corrupting.append(Corrupting(handle, at, data))
        return corrupting[0]

    h = Harness(replace(MIXED, seed=seed), settings=MIXED_SETTINGS, wrap=wrap, retries=1)
    counted: Counter[str] = Counter()
    record = h.metrics.ledger.record

    def spy(finished: FinishedRun) -> None:
        counted[finished.run.id] += 1
        record(finished)

    h.metrics.ledger.record = spy  # type: ignore[method-assign]  # the one call that counts a run
    try:
        h.run_for(MIXED_SECONDS, every=every)
        assert b"letta_runs_finished_total" in generate_latest(h.metrics.registry)
    finally:
        h.store.close()
    truth = h.sim.truth()
    assert set(counted) <= {r["id"] for r in truth["terminal"]}  # nothing invented, nothing counted early
    assert max(counted.values(), default=0) <= 1, counted.most_common(3)  # nothing counted twice
    assert sum(h.finished_by_status().values()) == counted.total()
    if corrupting[0].corrupted == 0:
        assert_counts_match_truth(h)
