"""`/metrics` snapshots: rendered once per poll ahead of the scrapes, equal to prometheus_client's own."""

from __future__ import annotations

import gzip
from typing import Any

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from exporter.exposition import Snapshots


class World:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.counter = Counter("things", "Things.", registry=self.registry)
        self.now = 0.0
        self.app = Snapshots(self.registry, max_age=30.0, clock=lambda: self.now)

    def get(self, query: str = "", **headers: str) -> tuple[dict[str, str], bytes]:
        seen: dict[str, Any] = {}
        environ = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": "/metrics",
            "QUERY_STRING": query,
            **{f"HTTP_{k.upper()}": v for k, v in headers.items()},
        }
        body = b"".join(self.app(environ, lambda status, headers: seen.update(status=status, headers=dict(headers))))
        assert seen["status"] == "200 OK"
        return seen["headers"], body


def test_scrapes_between_polls_share_the_published_rendering() -> None:
    w = World()
    _, first = w.get()  # before the first poll: rendered on demand
    w.counter.inc()  # mid-poll change: not served until the poll publishes
    _, second = w.get()
    assert second == first and b"things_total 0.0" in first and w.app.renderings == 1
    w.app.publish()
    assert w.app.renderings == 2  # rendered by the poll loop, not by the next scrape
    headers, third = w.get()
    assert third == generate_latest(w.registry) and b"things_total 1.0" in third
    assert headers["Content-Length"] == str(len(third)) and w.app.renderings == 2


def test_a_long_poll_still_gets_a_fresh_rendering_after_max_age() -> None:
    w = World()
    w.get()
    w.counter.inc()
    w.now += 31.0
    assert b"things_total 1.0" in w.get()[1] and w.app.renderings == 2


def test_formats_and_encodings_are_rendered_kept_apart_and_all_published() -> None:
    w = World()
    headers, body = w.get(accept="application/openmetrics-text; version=1.0.0")
    assert headers["Content-Type"].startswith("application/openmetrics-text")
    assert body == generate_openmetrics(w.registry)
    headers, zipped = w.get(accept_encoding="gzip")
    assert headers["Content-Encoding"] == "gzip" and gzip.decompress(zipped) == generate_latest(w.registry)
    assert w.get()[1] == generate_latest(w.registry) and w.app.renderings == 3
    w.counter.inc()
    w.app.publish()
    assert w.app.renderings == 6 and b"things_total 1.0" in gzip.decompress(w.get(accept_encoding="gzip")[1])


def test_name_filters_are_rendered_as_asked() -> None:
    w = World()
    Counter("others", "Others.", registry=w.registry)
    _, body = w.get("name[]=things_total")
    assert b"things_total" in body and b"others" not in body
