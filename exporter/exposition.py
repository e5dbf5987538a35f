"""`/metrics` bodies rendered once per poll, ahead of the scrapes.

Between two polls the data does not change, yet each scrape would walk every series again — with
~10 000 series that is ~100 ms of GIL the poll loop needs, per scraper, and every scraper waits for
it. Instead the poll loop `publish`es a rendering of each format scrapers asked for right after
each poll, and scrapes serve the latest one. A poll that runs long (Letta hanging) still gets a
fresh rendering on demand once the published one is older than `max_age`.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, cast

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.metrics_core import Metric

StartResponse = Callable[..., Any]
Encoder = Callable[[CollectorRegistry], bytes]


@dataclass(frozen=True)
class _Collected:
    """Families already collected, as the encoders read a registry."""

    families: list[Metric]

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


@dataclass(frozen=True)
class _Body:
    encoder: Encoder
    data: bytes
    at: float


class Snapshots:
    """A WSGI app like `prometheus_client.make_wsgi_app` that serves published renderings."""

    def __init__(
        self, registry: CollectorRegistry, max_age: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._registry = registry
        self._max_age = max_age
        self._clock = clock
        self._uncached = make_wsgi_app(registry)
        self._rendering = threading.Lock()  # one rendering at a time; scrapes never take it when fresh
        self._bodies: dict[tuple[str, bool], _Body] = {}
        self.renderings = 0

    def publish(self, families: list[Metric] | None = None) -> None:
        """Render every format asked for so far; called by the poll loop after each poll. With
        `families` (the registry collected once), from them: what else is made of the same
        collection (an OTLP push) then shows the same values."""
        source = cast(CollectorRegistry, _Collected(families)) if families is not None else None
        for key, body in list(self._bodies.items()):
            self._render(key, body.encoder, force=True, source=source)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") != "GET" or environ.get("QUERY_STRING"):
            return self._uncached(environ, start_response)  # type: ignore[no-any-return]  # name[] filters
        encoder, content_type = choose_encoder(environ.get("HTTP_ACCEPT") or "")
        gzipped = gzip_accepted(environ.get("HTTP_ACCEPT_ENCODING") or "")
        body = self._bodies.get((content_type, gzipped))
        if body is None or self._clock() - body.at > self._max_age:
            body = self._render((content_type, gzipped), encoder, seen=body)
        headers = [("Content-Type", content_type), ("Content-Length", str(len(body.data)))]
        start_response("200 OK", [*headers, ("Content-Encoding", "gzip")] if gzipped else headers)
        return [body.data]

    def _render(
        self,
        key: tuple[str, bool],
        encoder: Encoder,
        seen: _Body | None = None,
        force: bool = False,
        source: CollectorRegistry | None = None,
    ) -> _Body:
        """`key` is (content type, gzipped)."""
        with self._rendering:
            current = self._bodies.get(key)
            if not force and current is not None and current is not seen:
                return current  # rendered by someone else while this scrape waited
            data = encoder(source or self._registry)
            body = _Body(encoder, gzip.compress(data) if key[1] else data, self._clock())
            self._bodies[key] = body
            self.renderings += 1
            return body
