"""A lean OTLP/HTTP trace receiver in a process of its own: decodes each request, counts its spans,
keeps nothing. A separate process keeps its work off the exporter's GIL, so the ingest figure
measures the exporter's side of delivery, not the receiver's (tests/otlp_receiver.py keeps every
span as Python objects, which is right for assertions and too slow for a benchmark).

    python -m bench.otlp_sink      # prints "listening on http://127.0.0.1:PORT"; GET /count -> spans
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from bench.common import ROOT

_OK = ExportTraceServiceResponse().SerializeToString()


def serve() -> None:
    lock = threading.Lock()
    spans = [0, 0]  # spans, requests

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a collector would

        def do_POST(self) -> None:
            request = ExportTraceServiceRequest()
            request.ParseFromString(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            count = sum(len(s.spans) for r in request.resource_spans for s in r.scope_spans)
            with lock:
                spans[0] += count
                spans[1] += 1
            self._reply(_OK, "application/x-protobuf")

        def do_GET(self) -> None:
            with lock:
                self._reply(f'{{"spans": {spans[0]}, "requests": {spans[1]}}}'.encode(), "application/json")

        def _reply(self, body: bytes, content_type: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    server.serve_forever()


class Sink:
    def __init__(self, url: str) -> None:
        self.url = url

    def received(self) -> tuple[int, int]:
        """(spans, requests) received so far."""
        body = httpx2.get(f"{self.url}/count", timeout=10).json()
        return int(body["spans"]), int(body["requests"])


@contextlib.contextmanager
def running() -> Iterator[Sink]:
    process = subprocess.Popen([sys.executable, "-m", "bench.otlp_sink"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("listening on "):
            raise RuntimeError(f"OTLP sink did not start: {line!r}")
        yield Sink(line.split()[-1])
    finally:
        process.terminate()
        process.wait(10)


if __name__ == "__main__":
    serve()
