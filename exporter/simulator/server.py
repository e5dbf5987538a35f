"""The simulated Letta over real HTTP/1.1 on 127.0.0.1, for integration tests, benchmarks and the demo."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx2

from exporter.simulator.api import SimulatedLetta


class SimulatorServer:
    """``sim`` over real HTTP/1.1 on a daemon thread; ``url`` is ``http://host:port``. ``handle``
    replaces ``sim.handle``, e.g. with ``exporter.simulator.faults.inject(sim.handle, ...)``."""

    def __init__(
        self,
        sim: SimulatedLetta,
        host: str = "127.0.0.1",
        port: int = 0,
        handle: Callable[[httpx2.Request], httpx2.Response] | None = None,
    ) -> None:
        answer = handle or sim.handle

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall

            def do_GET(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                url = f"http://{self.headers.get('host') or host}{self.path}"
                response = answer(httpx2.Request(self.command, url, headers=self.headers.items(), content=body))
                self.send_response_only(response.status_code)  # the Date header is the simulator's clock
                for key, value in response.headers.items():
                    if key not in ("content-length", "connection"):
                        self.send_header(key, value)
                self.send_header("content-length", str(len(response.content)))
                self.end_headers()
                self.wfile.write(response.content)

            do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

            def log_message(self, format: str, *args: Any) -> None:  # stdout belongs to the caller
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.url = f"http://{host}:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="letta-sim", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> SimulatorServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve(
    sim: SimulatedLetta,
    host: str = "127.0.0.1",
    port: int = 0,
    handle: Callable[[httpx2.Request], httpx2.Response] | None = None,
) -> SimulatorServer:
    """Start serving ``sim`` on ``host:port`` (0: a free port) in the background; returns at once."""
    return SimulatorServer(sim, host, port, handle)
