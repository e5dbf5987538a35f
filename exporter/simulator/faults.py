"""Fault modes for the simulated Letta API: wrap its handler to misbehave the ways real servers do.

    handler = inject(sim.handle, ErrorBursts(status=500, every=7, burst=3), TruncatedJson(every=11))

Each fault decides per request whether to act (deterministically, by request count or clock),
so a test can compare the exporter's counters with the simulator's ground truth afterwards.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx2

from exporter.letta.records import parse_timestamp

_EPOCH = datetime.fromtimestamp(0, UTC)

Handler = Callable[[httpx2.Request], httpx2.Response]


class Fault(Protocol):
    def __call__(self, request: httpx2.Request, forward: Handler) -> httpx2.Response: ...


def inject(handler: Handler, *faults: Fault) -> Handler:
    """`handler` with `faults` applied outermost first."""
    for fault in reversed(faults):
        handler = _bind(fault, handler)
    return handler


def _bind(fault: Fault, forward: Handler) -> Handler:
    return lambda request: fault(request, forward)


def _matches(request: httpx2.Request, route: str | None) -> bool:
    return route is None or request.url.path.startswith(route)


@dataclass
class _Counter:
    route: str | None = None
    seen: int = 0

    def tick(self, request: httpx2.Request) -> int | None:
        if not _matches(request, self.route):
            return None
        self.seen += 1
        return self.seen


@dataclass
class ErrorBursts(_Counter):
    """`burst` consecutive error answers every `every` requests (500 bursts, 429 with Retry-After)."""

    status: int = 500
    every: int = 10
    burst: int = 3
    retry_after: str | None = None

    def __call__(self, request: httpx2.Request, forward: Handler) -> httpx2.Response:
        n = self.tick(request)
        if n is not None and n % self.every < self.burst:
            headers = {"Retry-After": self.retry_after} if self.retry_after else {}
            return httpx2.Response(self.status, json={"detail": "injected"}, headers=headers)
        return forward(request)


@dataclass
class Unreachable:
    """Connection refused while `down()` says so (Letta restarting), timeouts when `hang` is set."""

    down: Callable[[], bool]
    hang: bool = False

    def __call__(self, request: httpx2.Request, forward: Handler) -> httpx2.Response:
        if self.down():
            if self.hang:
                raise httpx2.ReadTimeout("injected: no answer", request=request)
            raise httpx2.ConnectError("injected: connection refused", request=request)
        return forward(request)


@dataclass
class Latency:
    """Every answer held back `seconds`: a Letta far away (Letta Cloud from another region). On the
    real HTTP server each request waits in its own thread, so requests in flight overlap."""

    seconds: float
    sleep: Callable[[float], None] = time.sleep

    def __call__(self, request: httpx2.Request, forward: Handler) -> httpx2.Response:
        self.sleep(self.seconds)
        return forward(request)


@dataclass
class Slow(_Counter):
    """Every `every`-th answer held back `seconds` (an overloaded server; beyond the client's timeout, a hang)."""

    every: int = 5
    seconds: float = 1.0
    sleep: Callable[[float], None] = time.sleep

    def __call__(self, request: httpx2.Request, forward: Handler) -> httpx2.Response:
        n = self.tick(request)
        if n is not None and n % self.every == 0:
            self.sleep(self.seconds)
        return forward(request)


@dataclass
class TruncatedJson(_Counter):
    """Every `every`-th answer cut in half: a proxy timing out mid-body."""

    every: int = 10

    def __call__(self, request: httpx2.Request, forward: Handler) -> httpx2.Response:
        response = forward(request)
        n = self.tick(request)
        if n is not None and n % self.every == 0:
            return httpx2.Response(
                response.status_code,
                content=response.content[: len(response.content) // 2],
                headers={"Content-Type": "application/json"},
            )
        return response


@dataclass
class RewriteRuns:
    """Rewrite run objects in answers for the runs `select` picks (unknown enums, missing or extra
    fields, clocks that disagree); the same runs every time, so their ground truth is known."""

    select: Callable[[str], bool]
    rewrite: Callable[[dict[str, Any]], dict[str, Any]]
    resort: bool = False  # list pages re-sorted newest first, as Letta sorts rewritten created_at
    rewritten: set[str] = field(default_factory=set)

    def __call__(self, request: httpx2.Request, forward: Handler) -> httpx2.Response:
        response = forward(request)
        if not request.url.path.startswith("/v1/runs") or response.status_code != 200:
            return response
        body = response.json()

        def fix(run: Any) -> Any:
            if isinstance(run, dict) and str(run.get("id", "")).startswith("run-") and self.select(run["id"]):
                self.rewritten.add(run["id"])
                return self.rewrite(dict(run))
            return run

        if request.url.path.rstrip("/") == "/v1/runs":
            body = [fix(run) for run in body]
            if self.resort:
                body.sort(key=lambda run: parse_timestamp(run.get("created_at")) or _EPOCH, reverse=True)
        elif request.url.path.count("/") == 3:
            body = fix(body)
        return httpx2.Response(200, content=json.dumps(body).encode(), headers={"Content-Type": "application/json"})


@dataclass
class RepeatedItems(_Counter):
    """List pages that repeat items (an unstable sort under concurrent inserts)."""

    route: str | None = "/v1/runs/"

    def __call__(self, request: httpx2.Request, forward: Handler) -> httpx2.Response:
        response = forward(request)
        if self.tick(request) is None or request.url.path != "/v1/runs/" or response.status_code != 200:
            return response
        body = response.json()
        return httpx2.Response(
            200,
            content=json.dumps(body + body[: len(body) // 2]).encode(),
            headers={"Content-Type": "application/json"},
        )


@dataclass
class IgnoredCursor:
    """A server that ignores `before`/`after` and always answers with the first page."""

    def __call__(self, request: httpx2.Request, forward: Handler) -> httpx2.Response:
        if request.url.path == "/v1/runs/":
            params = {k: v for k, v in request.url.params.multi_items() if k not in ("before", "after")}
            request = httpx2.Request(request.method, request.url.copy_with(params=params), headers=request.headers)
        return forward(request)


@dataclass
class DeletedRuns:
    """Runs deleted right after they were first listed: later listings omit them and GETs of them
    and their sub-resources answer 404. `first_seen` keeps each as it was when listed."""

    select: Callable[[str], bool]
    first_seen: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __call__(self, request: httpx2.Request, forward: Handler) -> httpx2.Response:
        parts = request.url.path.strip("/").split("/")
        if len(parts) >= 3 and parts[:2] == ["v1", "runs"] and parts[2] in self.first_seen:
            return httpx2.Response(404, json={"detail": f"Run {parts[2]} not found"})
        response = forward(request)
        if request.url.path != "/v1/runs/" or response.status_code != 200:
            return response
        kept = []
        for run in response.json():
            run_id = str(run.get("id"))
            if run_id in self.first_seen:
                continue
            if self.select(run_id):
                self.first_seen[run_id] = run
            kept.append(run)
        return httpx2.Response(200, content=json.dumps(kept).encode(), headers={"Content-Type": "application/json"})
