"""`POST /v1/events`: NDJSON (optionally gzip) lines into the ingest path, answered after commit.

The body is read and decompressed within `max_bytes` (a gzip bomb stops at the limit), then every
line is parsed and the new ones are committed in one transaction before the answer says what
became of each (docs/event-sources.md §1).
"""

from __future__ import annotations

import hmac
import json
import zlib
from collections.abc import Callable, Iterable
from typing import Any

from exporter.events.ingest import Sink

StartResponse = Callable[..., Any]
_CHUNK = 65536


class TooLarge(Exception):
    pass


class EventsEndpoint:
    def __init__(self, sink: Sink, token: str | None, max_bytes: int) -> None:
        self._sink = sink
        self._token = f"Bearer {token}".encode() if token else None
        self._max_bytes = max_bytes

    def authorized(self, header: str | None) -> bool:
        """The ingest token, compared in constant time."""
        return self._token is not None and header is not None and hmac.compare_digest(header.encode(), self._token)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") != "POST":
            return _json(
                start_response, "405 Method Not Allowed", {"error": "POST NDJSON lines here"}, [("Allow", "POST")]
            )
        if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():  # wsgiref cannot read it
            return _json(start_response, "411 Length Required", {"error": "send Content-Length, not chunked"})
        try:
            body = self._body(environ)
        except TooLarge:
            error = f"body over {self._max_bytes} bytes (decompressed): split it, or raise --ingest-max-bytes"
            return _json(start_response, "413 Content Too Large", {"error": error})
        except (ValueError, zlib.error, OSError) as exc:
            return _json(start_response, "400 Bad Request", {"error": f"body cannot be read: {exc}"})
        result = self._sink.accept(body.split(b"\n"), "http")
        answer = {
            "accepted": result.accepted,
            "duplicate": result.duplicate,
            "ignored": result.ignored,
            "rejected": result.rejected,
            "errors": [{"line": line, "reason": reason} for line, reason in result.errors],
        }
        return _json(start_response, "200 OK", answer)

    def _body(self, environ: dict[str, Any]) -> bytes:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if length > self._max_bytes:
            raise TooLarge
        raw = environ["wsgi.input"].read(length) if length else b""
        encoding = environ.get("HTTP_CONTENT_ENCODING", "identity").strip().lower()
        if encoding in ("", "identity"):
            return raw
        if encoding not in ("gzip", "x-gzip"):
            raise ValueError(f"Content-Encoding {encoding!r} is not gzip")
        inflate = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)
        out = bytearray()
        data = raw
        while data:
            out += inflate.decompress(data, self._max_bytes + 1 - len(out))
            if len(out) > self._max_bytes:
                raise TooLarge
            data = inflate.unconsumed_tail
        if not inflate.eof:
            raise ValueError("gzip stream is truncated")
        return bytes(out)


def _json(
    start_response: StartResponse, status: str, body: dict[str, Any], headers: list[tuple[str, str]] | None = None
) -> list[bytes]:
    data = json.dumps(body).encode() + b"\n"
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(data))), *(headers or [])])
    return [data]
