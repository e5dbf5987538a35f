"""HTTP endpoints: `/` landing page, `/metrics`, `/healthz`, `/readyz`.

Served from threads of their own so that a slow poll never delays a scrape; the poller and the
server share only the thread-safe registry and a `PollStatus`.
"""

from __future__ import annotations

import html
import logging
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from socketserver import ThreadingMixIn
from typing import Any, Protocol
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.metrics_core import Metric

from exporter import __version__
from exporter.events.http import EventsEndpoint
from exporter.exposition import Snapshots
from exporter.webconfig import WebConfig

StartResponse = Callable[..., Any]
# Probes carry no credentials (Kubernetes cannot keep a password out of the pod spec); they reveal
# only liveness and the last poll error, never data.
UNAUTHENTICATED = frozenset({"/healthz", "/readyz"})
EVENTS_PATH = "/v1/events"
log = logging.getLogger(__name__)


class Push(Protocol):
    """Where collected families go besides `/metrics` (`otlp_metrics.MetricsPush`)."""

    def wanted(self) -> bool: ...

    def offer(self, families: list[Metric]) -> None: ...


@dataclass
class PollStatus:
    """What the poll loop last achieved; written by the poller, read by the server."""

    poll_interval: float
    last_success: float | None = None  # wall clock
    last_error: str | None = None
    polls: int = 0

    def ready(self, now: float) -> bool:
        """Ready once a poll succeeded within the last three intervals (at least 30 s)."""
        return self.last_success is not None and now - self.last_success <= max(3 * self.poll_interval, 30.0)


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    handshake_timeout = 10.0

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """TLS handshakes happen here, in the connection's own thread, so a slow or broken client
        never holds up the accept loop."""
        if isinstance(request, ssl.SSLSocket):
            try:
                request.settimeout(self.handshake_timeout)
                request.do_handshake()
            except (OSError, ssl.SSLError) as exc:
                log.debug("TLS handshake failed", extra={"client": client_address[0], "error": str(exc)})
                self.shutdown_request(request)
                return
        super().process_request_thread(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client hanging up mid-response is not the exporter's error; no traceback on stderr."""
        error = sys.exc_info()[1]
        log.debug("HTTP connection error", extra={"client": client_address[0], "error": repr(error)})


class _V6Server(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Access logs would drown the exporter's own logs; Prometheus has scrape metrics."""


class MetricsServer:
    def __init__(
        self,
        registry: CollectorRegistry,
        status: PollStatus,
        letta_url: str,
        host: str,
        port: int,
        clock: Callable[[], float] = time.time,
        web: WebConfig | None = None,
        snapshot_max_age: float | None = None,
        events: EventsEndpoint | None = None,
        push: Push | None = None,
    ) -> None:
        """With `snapshot_max_age`, `/metrics` serves what `publish` rendered after the last poll;
        with `events`, `POST /v1/events` takes event lines; `push` (OTLP metrics) is offered the
        families a publish collected, when it wants them, so both show the same values."""
        self._events = events
        self._registry = registry
        self._push = push
        self._snapshots = None if snapshot_max_age is None else Snapshots(registry, snapshot_max_age)
        self._metrics_app: Callable[[dict[str, Any], StartResponse], Iterable[bytes]] = (
            self._snapshots or make_wsgi_app(registry)
        )
        self._status = status
        self._letta_url = letta_url
        self._clock = clock
        server_class = _V6Server if ":" in host else _Server
        self._web = web or WebConfig()
        self._httpd = make_server(host, port, self._app, server_class=server_class, handler_class=_QuietHandler)
        if self._web.tls is not None:
            self._httpd.socket = self._web.tls.wrap_socket(
                self._httpd.socket, server_side=True, do_handshake_on_connect=False
            )
        self.port = self._httpd.server_port
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="http", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def publish(self, final: bool = False) -> None:
        """Render `/metrics` after a poll; collected once, for the push too when it is due (or `final`)."""
        pushing = self._push is not None and (final or self._push.wanted())
        families = list(self._registry.collect()) if pushing else None
        if self._snapshots is not None:
            self._snapshots.publish(families)
        if self._push is not None and families is not None:
            self._push.offer(families)

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _app(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == EVENTS_PATH:
            return self._ingest(environ, start_response)
        if path not in UNAUTHENTICATED and not self._web.authorized(environ.get("HTTP_AUTHORIZATION")):
            start_response(
                "401 Unauthorized",
                [
                    ("WWW-Authenticate", 'Basic realm="letta-exporter"'),
                    ("Content-Type", "text/plain"),
                    ("Content-Length", "13"),
                ],
            )
            return [b"unauthorized\n"]
        if path == "/metrics":
            return self._metrics_app(environ, start_response)
        if path == "/healthz":
            return _text(start_response, "200 OK", "ok\n")
        if path == "/readyz":
            if self._status.ready(self._clock()):
                return _text(start_response, "200 OK", "ready\n")
            reason = self._status.last_error or "no successful poll yet"
            return _text(start_response, "503 Service Unavailable", f"not ready: {reason}\n")
        if path == "/":
            return _text(start_response, "200 OK", self._landing(), "text/html; charset=utf-8")
        return _text(start_response, "404 Not Found", "not found\n")

    def _ingest(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """The ingest token or a web-config user; never open to anyone (no credentials configured: off)."""
        if self._events is None:
            return _text(start_response, "404 Not Found", "event ingest is off: set --ingest-token\n")
        header = environ.get("HTTP_AUTHORIZATION")
        if not self._events.authorized(header) and not (self._web.users and self._web.authorized(header)):
            challenge = 'Bearer realm="letta-exporter"' + (', Basic realm="letta-exporter"' if self._web.users else "")
            start_response(
                "401 Unauthorized",
                [("WWW-Authenticate", challenge), ("Content-Type", "text/plain"), ("Content-Length", "13")],
            )
            return [b"unauthorized\n"]
        return self._events(environ, start_response)

    def _landing(self) -> str:
        status = self._status
        ago = None if status.last_success is None else self._clock() - status.last_success
        last = "never" if ago is None else f"{ago:.1f} s ago"
        error = html.escape(status.last_error) if status.last_error else "none"
        return (
            "<!doctype html><html><head><title>letta-exporter</title></head><body>"
            f"<h1>letta-exporter {html.escape(__version__)}</h1>"
            f"<p>Letta: {html.escape(self._letta_url)}<br>polls: {status.polls}<br>"
            f"last successful poll: {last}<br>last error: {error}</p>"
            '<ul><li><a href="/metrics">/metrics</a></li><li><a href="/healthz">/healthz</a></li>'
            '<li><a href="/readyz">/readyz</a></li></ul></body></html>\n'
        )


def _text(start_response: StartResponse, status: str, body: str, content_type: str = "text/plain") -> list[bytes]:
    data = body.encode()
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(data)))])
    return [data]
