"""`/metrics` bodies rendered once per poll.

Between two polls the data does not change, yet each scrape would walk every series again — with
~10 000 series that is tens of milliseconds of GIL the poll loop needs, per scraper. Scrapes of one
poll generation therefore share one rendering (per format and encoding); a poll that runs long
still gets a fresh one every `max_age` seconds.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import choose_encoder, gzip_accepted

StartResponse = Callable[..., Any]


class Snapshots:
    """A WSGI app like `prometheus_client.make_wsgi_app`, caching bodies per `generation()`."""

    def __init__(
        self,
        registry: CollectorRegistry,
        generation: Callable[[], int],
        max_age: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._registry = registry
        self._generation = generation
        self._max_age = max_age
        self._clock = clock
        self._uncached = make_wsgi_app(registry)
        self._lock = threading.Lock()
        self._bodies: dict[tuple[str, bool], tuple[int, float, bytes]] = {}
        self.renderings = 0

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") != "GET" or environ.get("QUERY_STRING"):
            return self._uncached(environ, start_response)  # type: ignore[no-any-return]  # name[] filters
        encoder, content_type = choose_encoder(environ.get("HTTP_ACCEPT") or "")
        gzipped = gzip_accepted(environ.get("HTTP_ACCEPT_ENCODING") or "")
        with self._lock:  # concurrent scrapes wait for one rendering instead of each doing their own
            generation, now = self._generation(), self._clock()
            cached = self._bodies.get((content_type, gzipped))
            if cached is None or cached[0] != generation or now - cached[1] > self._max_age:
                body = encoder(self._registry)
                cached = (generation, now, gzip.compress(body) if gzipped else body)
                self._bodies[(content_type, gzipped)] = cached
                self.renderings += 1
        headers = [("Content-Type", content_type), ("Content-Length", str(len(cached[2])))]
        start_response("200 OK", [*headers, ("Content-Encoding", "gzip")] if gzipped else headers)
        return [cached[2]]
