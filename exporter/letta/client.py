"""Async client for the Letta REST API: auth, retries, adaptive concurrency, telemetry and safe paging.

Only the endpoints the exporter needs are wrapped. Responses come back as raw JSON (lists of
dicts); turning them into `model` objects is the caller's job so that one bad record never costs
the rest of a page.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import re
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from datetime import UTC
from typing import Any, Protocol
from urllib.parse import quote

import httpx2

from exporter import __version__
from exporter.letta.limit import AdaptiveLimit
from exporter.letta.records import created_at
from exporter.types import ProblemKind

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
DATE_RESOLUTION = 2.0  # seconds: `Date` has whole seconds, plus latency; smaller offsets are noise
_PROJECT_ID = re.compile(r"^(project-)?[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE)
MAX_CLOCK_OFFSET = 86400.0  # a `Date` further off than this is a broken header, not a clock


class Observer(Protocol):
    """Where the client reports what it sees; implemented by `metrics.ExporterMetrics`."""

    def api_request(self, endpoint: str, code: str, seconds: float) -> None: ...

    def problem(self, kind: ProblemKind, context: str) -> None: ...


class LettaError(Exception):
    """A request failed for good (after retries). `kind` is a bounded label value."""

    def __init__(self, endpoint: str, kind: str, detail: str, status: int | None = None) -> None:
        super().__init__(f"{endpoint}: {detail}")
        self.endpoint = endpoint
        self.kind = kind
        self.status = status


class LettaClient:
    def __init__(
        self,
        base_url: str,
        observer: Observer,
        *,
        api_key: str | None = None,
        project: str | None = None,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        transport: httpx2.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
        clock: Callable[[], float] = time.time,
        max_concurrency: int = 64,
    ) -> None:
        headers = {"User-Agent": f"letta-exporter/{__version__}", "Accept": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        if project:
            headers["X-Project"] = project  # a slug (Letta Cloud); an id goes in X-Project-Id too
            if _PROJECT_ID.match(project):
                headers["X-Project-Id"] = project
        # as many kept-alive connections as requests in flight: no reconnecting under load
        pool = httpx2.Limits(max_connections=max_concurrency, max_keepalive_connections=max_concurrency)
        self._http = httpx2.AsyncClient(
            base_url=base_url, headers=headers, timeout=timeout, transport=transport, limits=pool
        )
        self._observer = observer
        self._secret = api_key
        self._retries = retries
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._sleep = sleep
        self._jitter = jitter
        self._clock = clock
        self.limit = AdaptiveLimit(max_concurrency, clock=clock, sleep=sleep)
        self.clock_offset = 0.0  # Letta's clock minus ours: its timestamps are compared with "now"
        self._last_date: str | None = None
        # Which cursor parameter pages to older runs on this server (0.14+: before; 0.12-0.13: after).
        self._older_cursor: str | None = None

    async def aclose(self) -> None:
        await self._http.aclose()

    async def get(self, endpoint: str, path: str, params: dict[str, Any] | None = None) -> Any:
        """GET `path` and decode JSON. `endpoint` is the route template used as a metric label."""
        attempt = 0
        while True:
            async with self.limit.slot():
                body, failure, retry_after = await self._attempt(endpoint, path, params)
            if failure is None:
                return body
            delay = self._delay(attempt, retry_after)
            if attempt >= self._retries or delay is None:
                raise failure
            attempt += 1
            await self._sleep(delay)

    async def _attempt(
        self, endpoint: str, path: str, params: dict[str, Any] | None
    ) -> tuple[Any, LettaError | None, str | None]:
        """One request: its decoded body, or a failure worth retrying with its `Retry-After`. A
        failure not worth retrying raises. What the answer says about load goes to the limit."""
        started = time.perf_counter()
        try:
            response = await self._http.get(path, params=params)
        except httpx2.TimeoutException as exc:
            seconds = time.perf_counter() - started
            self._observer.api_request(endpoint, "timeout", seconds)
            self.limit.overloaded(seconds)
            return None, LettaError(endpoint, "timeout", f"timed out ({type(exc).__name__})"), None
        except httpx2.RequestError as exc:  # transport failures, undecodable bodies, redirect loops
            seconds = time.perf_counter() - started
            self._observer.api_request(endpoint, "error", seconds)
            self.limit.overloaded(seconds)
            return None, LettaError(endpoint, "connection", f"{type(exc).__name__}: {exc}"), None
        seconds = time.perf_counter() - started
        self._observer.api_request(endpoint, str(response.status_code), seconds)
        self._observe_date(response.headers.get("Date"))
        if response.is_success:
            self.limit.succeeded(seconds)
            try:
                return _json(response), None, None
            except ValueError:
                raise LettaError(
                    endpoint, "malformed_json", "response is not valid JSON", response.status_code
                ) from None
        failure = LettaError(
            endpoint, f"http_{response.status_code}", _describe(response, self._secret), response.status_code
        )
        if response.status_code not in RETRY_STATUSES:
            raise failure
        retry_after = response.headers.get("Retry-After")
        hinted = _retry_after_seconds(retry_after)
        pause = None if hinted is None else min(hinted, self._max_backoff)
        self.limit.overloaded(seconds, pause, rate_limited=response.status_code == 429)
        return None, failure, retry_after

    def _observe_date(self, value: str | None) -> None:
        """Letta's clock from its `Date` header, parsed when the header changes (once a second)."""
        if not value or value == self._last_date:
            return
        self._last_date = value
        try:
            when = email.utils.parsedate_to_datetime(value)
            offset = when.replace(tzinfo=when.tzinfo or UTC).timestamp() - self._clock()
        except (TypeError, ValueError, OverflowError):
            return
        if abs(offset) <= MAX_CLOCK_OFFSET:
            self.clock_offset = offset if abs(offset) >= DATE_RESOLUTION else 0.0

    def _delay(self, attempt: int, retry_after: str | None) -> float | None:
        """Exponential backoff with jitter; a longer Retry-After wins. None: a Retry-After beyond
        `max_backoff` is honoured by giving up on this request rather than retrying early."""
        backoff = min(self._max_backoff, self._backoff * 2.0**attempt) * (0.5 + self._jitter() / 2)
        hinted = _retry_after_seconds(retry_after)
        if hinted is None:
            return backoff
        return max(backoff, hinted) if hinted <= self._max_backoff else None

    async def get_list(self, endpoint: str, path: str, params: dict[str, Any] | None = None) -> list[Any]:
        body = await self.get(endpoint, path, params)
        if not isinstance(body, list):
            raise LettaError(endpoint, "not_a_list", f"expected a JSON array, got {type(body).__name__}")
        return body

    async def health(self) -> dict[str, Any]:
        body = await self.get("/v1/health/", "/v1/health/")
        return body if isinstance(body, dict) else {}

    async def runs_newest_first(self, page_size: int, **filters: Any) -> AsyncGenerator[dict[str, Any], None]:
        """Every run matching `filters`, newest first, each at most once; stop iterating when done.

        Letta's run cursors mean opposite things on different versions and an unknown cursor
        silently returns the first page again, so the direction is learned from `created_at`
        and a page that brings nothing new ends the crawl (reported as `cursor_not_advancing`).
        """
        params: dict[str, Any] = {"order": "desc", "limit": page_size, **filters}
        page = await self.get_list("/v1/runs/", "/v1/runs/", params)
        seen: set[str] = set()
        while True:
            fresh = [item for item in page if isinstance(item, dict) and _id(item) not in seen]
            for item in fresh:
                seen.add(_id(item))
                yield item
            if len(page) < page_size:
                return
            if not fresh:
                self._observer.problem("cursor_not_advancing", f"GET /v1/runs/ {filters or ''}")
                return
            older = await self._older_page(params, fresh[-1], seen)
            if older is None:
                self._observer.problem("cursor_not_advancing", f"GET /v1/runs/ {filters or ''}")
                return
            page = older

    async def _older_page(self, params: dict[str, Any], last: dict[str, Any], seen: set[str]) -> list[Any] | None:
        last_created = created_at(last)
        candidates = [self._older_cursor] if self._older_cursor else ["before", "after"]
        for cursor in candidates:
            assert cursor is not None
            page = await self.get_list("/v1/runs/", "/v1/runs/", {**params, cursor: _id(last)})
            items = [item for item in page if isinstance(item, dict)]
            if not items:
                if self._older_cursor or cursor == "after":
                    return []
                continue  # an empty page says nothing about direction; try the other cursor
            created = [c for c in (created_at(item) for item in items) if c is not None]
            older = bool(created) and last_created is not None and max(created) <= last_created
            if older and any(_id(item) not in seen for item in items):
                self._older_cursor = cursor
                return page
        return None

    async def run(self, run_id: str) -> dict[str, Any]:
        return await self._object("/v1/runs/{run_id}", f"/v1/runs/{_segment(run_id)}")

    async def run_metrics(self, run_id: str) -> dict[str, Any]:
        return await self._object("/v1/runs/{run_id}/metrics", f"/v1/runs/{_segment(run_id)}/metrics")

    async def step_metrics(self, step_id: str) -> dict[str, Any]:
        return await self._object("/v1/steps/{step_id}/metrics", f"/v1/steps/{_segment(step_id)}/metrics")

    async def run_steps(self, run_id: str, page_size: int = 100) -> list[dict[str, Any]]:
        """All steps of a run in execution order. Step cursors keep their documented meaning."""
        path = f"/v1/runs/{_segment(run_id)}/steps"
        return await self._every("/v1/runs/{run_id}/steps", path, {"order": "asc"}, page_size)

    async def run_messages(self, run_id: str, filtered: bool, page_size: int = 100) -> list[dict[str, Any]]:
        """All messages of a run, oldest first. Letta filters a run's messages by its request's
        types *after* paging, so for such a run a short page is not the end: read until an empty one."""
        path = f"/v1/runs/{_segment(run_id)}/messages"
        return await self._every("/v1/runs/{run_id}/messages", path, {"order": "asc"}, page_size, filtered)

    async def agent_names(self, page_size: int = 100) -> dict[str, str]:
        """Every agent's id → name. `include_relationships=` (empty) keeps pages ~10x smaller."""
        agents = await self._every("/v1/agents/", "/v1/agents/", {"include_relationships": ""}, page_size)
        return {_id(a): str(a.get("name") or _id(a)) for a in agents}

    async def _every(
        self, endpoint: str, path: str, params: dict[str, Any], page_size: int, short_pages: bool = False
    ) -> list[dict[str, Any]]:
        """Every item of a list whose `after` cursor keeps its documented meaning (not runs')."""
        items: list[dict[str, Any]] = []
        seen: set[str] = set()
        params = {**params, "limit": page_size}
        while True:
            page = [item for item in await self.get_list(endpoint, path, params) if isinstance(item, dict)]
            fresh = [item for item in page if _id(item) not in seen]
            seen.update(_id(item) for item in fresh)
            items.extend(fresh)
            if not fresh or (len(page) < page_size and not short_pages):
                return items
            params = {**params, "after": _id(fresh[-1])}

    async def _object(self, endpoint: str, path: str) -> dict[str, Any]:
        body = await self.get(endpoint, path)
        if not isinstance(body, dict):
            raise LettaError(endpoint, "not_an_object", f"expected a JSON object, got {type(body).__name__}")
        return body


def _json(response: httpx2.Response) -> Any:
    """The decoded body. Lone UTF-16 surrogates are valid JSON but cannot be encoded anywhere else
    (URLs, SQLite, /metrics): they become "?". Nesting too deep to decode is malformed."""
    try:
        body = response.json()
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    return _scrub(body) if _SURROGATE_ESCAPE.search(response.content) else body


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode()
    if isinstance(value, list):
        return [_scrub(item) for item in value]
    if isinstance(value, dict):
        return {_scrub(key): _scrub(item) for key, item in value.items()}
    return value


def _segment(value: str) -> str:
    """An id as one URL path segment, whatever characters it holds."""
    return quote(value, safe="")


def _id(item: dict[str, Any]) -> str:
    return str(item.get("id"))


def _retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _describe(response: httpx2.Response, secret: str | None) -> str:
    """Status plus Letta's `detail`, trimmed: context for a log line. A server or proxy that echoes
    the request's credentials back must not get them into our logs."""
    try:
        body = _json(response)
        detail = body.get("detail") if isinstance(body, dict) else None
    except ValueError:
        detail = None
    text = str(detail if detail is not None else response.text)
    if secret:
        text = text.replace(secret, "<redacted>")
    return f"HTTP {response.status_code}: {text[:200]}"
