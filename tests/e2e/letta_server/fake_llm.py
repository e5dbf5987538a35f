"""A fake OpenAI-compatible LLM for driving a real Letta server offline (stdlib only).

Adapted for the e2e tier from the tested offline Letta recipe: same
scenario markers and token usage, plus `--port 0` (the bound address is printed), a `/stats`
endpoint with the requests currently in flight per scenario (so a test can cancel a run exactly
while its LLM call is running, without sleeping), and type hints.

Endpoints
  GET  /v1/models             one chat model (FAKE_LLM_MODEL, default gpt-4o-mini)
  POST /v1/chat/completions   streaming (SSE) and non-streaming replies
  POST /v1/embeddings         deterministic fake vectors
  GET  /health, GET /stats

The behaviour is chosen by a marker in the text of the LAST user message:
  (none)      plain assistant text (a `send_message` tool call if the request offers that tool)
  [tool]      first a tool call (conversation_search, else the first tool offered), then text
  [fail500]   HTTP 500 (the OpenAI SDK retries twice)          [fail400] / [fail429] likewise
  [garbage]   HTTP 200 with a body that is not JSON
  [slow=N]    wait N seconds before answering; streams trickle out over N seconds
  [nousage]   no usage block

Usage of every successful reply: prompt_tokens = len(request body) // 4, completion_tokens = 7,
prompt_tokens_details.cached_tokens = 3, completion_tokens_details.reasoning_tokens = 2.

Connections are closed after every response: with keep-alive, Letta 0.16.8 stalls ~60 s in a
PostgreSQL connect after LLM calls (a pitfall the offline recipe records).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODEL = os.environ.get("FAKE_LLM_MODEL", "gpt-4o-mini")
CACHED = int(os.environ.get("FAKE_LLM_CACHED", "3"))
REASONING = int(os.environ.get("FAKE_LLM_REASONING", "2"))
COMPLETION_TOKENS = 7
MARKERS = (("[fail500]", "fail500"), ("[fail400]", "fail400"), ("[fail429]", "fail429"), ("[garbage]", "garbage"))

_lock = threading.Lock()
_stats: dict[str, dict[str, int]] = {"by_scenario": {}, "in_flight": {}, "by_path": {}}


def _bump(kind: str, key: str, amount: int = 1) -> None:
    with _lock:
        table = _stats[kind]
        table[key] = table.get(key, 0) + amount


def _text_of(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) if isinstance(p, dict) else str(p) for p in content)
    return str(content)


def pick_scenario(request: dict[str, Any]) -> dict[str, Any]:
    messages = request.get("messages") or []
    last_user = next((_text_of(m.get("content")).lower() for m in reversed(messages) if m.get("role") == "user"), "")
    scenario: dict[str, Any] = {
        "kind": "text",
        "slow": 0.0,
        "usage": "[nousage]" not in last_user,
        "last_role": messages[-1].get("role") if messages else None,
    }
    if match := re.search(r"\[slow=([0-9.]+)\]", last_user):
        scenario["slow"] = float(match.group(1))
    scenario["kind"] = next((kind for marker, kind in MARKERS if marker in last_user), "text")
    if scenario["kind"] == "text" and "[tool]" in last_user:
        scenario["kind"] = "tool"
    return scenario


def build_reply(request: dict[str, Any], scenario: dict[str, Any]) -> tuple[str | None, tuple[str, str] | None]:
    """(content, tool call as (name, arguments json) or None)."""
    tools = [t["function"]["name"] for t in request.get("tools") or [] if (t.get("function") or {}).get("name")]
    if scenario["kind"] == "tool" and scenario["last_role"] != "tool" and tools:
        name = "conversation_search" if "conversation_search" in tools else tools[0]
        return None, (name, json.dumps({"query": "hello"} if name == "conversation_search" else {}))
    if "send_message" in tools:
        return None, ("send_message", json.dumps({"message": "Hello from the fake LLM."}))
    return "Hello from the fake LLM.", None


def usage_block(request_bytes: int) -> dict[str, Any]:
    prompt = max(1, request_bytes // 4)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": COMPLETION_TOKENS,
        "total_tokens": prompt + COMPLETION_TOKENS,
        "prompt_tokens_details": {"cached_tokens": CACHED, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": REASONING,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


class Handler(BaseHTTPRequestHandler):
    server_version = "fake-llm/1.0"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"[fake-llm {time.strftime('%H:%M:%S')}] {format % args}\n")

    def _json(self, code: int, payload: object) -> None:
        body = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        path = self.path.split("?")[0].rstrip("/")
        _bump("by_path", "GET " + path)
        if path in ("/v1/models", "/models"):
            model = {"id": MODEL, "object": "model", "created": int(time.time()), "owned_by": "fake"}
            self._json(200, {"object": "list", "data": [{**model, "context_length": 128000}]})
        elif path == "/health":
            self._json(200, {"status": "ok"})
        elif path == "/stats":
            with _lock:
                snapshot = json.loads(json.dumps(_stats))
            self._json(200, snapshot)
        else:
            self._json(404, {"error": {"message": "not found: " + self.path}})

    def do_POST(self) -> None:
        path = self.path.split("?")[0].rstrip("/")
        _bump("by_path", "POST " + path)
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            request = json.loads(raw or b"{}")
        except ValueError:
            self._json(400, {"error": {"message": "bad json"}})
            return
        if path.endswith("/embeddings"):
            self._embeddings(request)
        elif path.endswith("/chat/completions"):
            scenario = pick_scenario(request)
            _bump("by_scenario", scenario["kind"])
            _bump("in_flight", scenario["kind"])
            try:
                self._chat(request, len(raw), scenario)
            finally:
                _bump("in_flight", scenario["kind"], -1)
        else:
            self._json(404, {"error": {"message": "not found: " + self.path}})

    def _embeddings(self, request: dict[str, Any]) -> None:
        items = request.get("input")
        items = items if isinstance(items, list) else [items]
        dim = int(request.get("dimensions") or 1536)
        data = []
        for i, item in enumerate(items):
            seed = sum(json.dumps(item).encode()) % 997
            data.append(
                {"object": "embedding", "index": i, "embedding": [((seed + j) % 13) / 13.0 for j in range(dim)]}
            )
        usage = {"prompt_tokens": 1, "total_tokens": 1}
        self._json(200, {"object": "list", "data": data, "model": request.get("model", "fake-embed"), "usage": usage})

    def _chat(self, request: dict[str, Any], request_bytes: int, scenario: dict[str, Any]) -> None:
        stream = bool(request.get("stream"))
        kind = scenario["kind"]
        if kind.startswith("fail"):
            if scenario["slow"]:
                time.sleep(scenario["slow"])
            code = int(kind.removeprefix("fail"))
            error_type = {500: "server_error", 400: "invalid_request_error", 429: "rate_limit_error"}[code]
            self._json(code, {"error": {"message": f"fake {kind}", "type": error_type, "code": None}})
            return
        if kind == "garbage":
            body = b"<<this is not json>>"
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream" if stream else "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.close_connection = True
            self.end_headers()
            self.wfile.write(body)
            return
        content, tool_call = build_reply(request, scenario)
        usage = usage_block(request_bytes) if scenario["usage"] else None
        completion_id = "chatcmpl-" + uuid.uuid4().hex[:24]
        created, model = int(time.time()), request.get("model") or MODEL
        if not stream:
            if scenario["slow"]:
                time.sleep(scenario["slow"])
            message: dict[str, Any] = {"role": "assistant", "content": content}
            finish = "stop"
            if tool_call:
                function = {"name": tool_call[0], "arguments": tool_call[1]}
                message["tool_calls"] = [
                    {"id": "call_" + uuid.uuid4().hex[:20], "type": "function", "function": function}
                ]
                finish = "tool_calls"
            choice = {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
            reply: dict[str, Any] = {"id": completion_id, "object": "chat.completion", "created": created}
            reply.update(model=model, choices=[choice], system_fingerprint="fp_fake")
            if usage:
                reply["usage"] = usage
            self._json(200, reply)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.close_connection = True
        self.end_headers()

        def chunk(delta: dict[str, Any] | None, finish: str | None = None, with_usage: object = None) -> None:
            choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]
            obj: dict[str, Any] = {"id": completion_id, "object": "chat.completion.chunk", "created": created}
            obj.update(model=model, system_fingerprint="fp_fake", choices=choices)
            if with_usage is not None:
                obj["usage"] = with_usage
            self.wfile.write(("data: " + json.dumps(obj) + "\n\n").encode())
            self.wfile.flush()

        pieces: list[dict[str, Any]] = []
        if tool_call:
            name, args = tool_call
            half = max(1, len(args) // 2)
            call = {"index": 0, "id": "call_" + uuid.uuid4().hex[:20], "type": "function"}
            pieces.append(
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [{**call, "function": {"name": name, "arguments": ""}}],
                }
            )
            pieces.append({"tool_calls": [{"index": 0, "function": {"arguments": args[:half]}}]})
            pieces.append({"tool_calls": [{"index": 0, "function": {"arguments": args[half:]}}]})
            finish = "tool_calls"
        else:
            pieces.append({"role": "assistant", "content": ""})
            pieces.extend({"content": word} for word in re.findall(r"\S+\s*", content or ""))
            finish = "stop"
        delay = scenario["slow"] / len(pieces) if scenario["slow"] else 0.0
        try:
            for piece in pieces:
                if delay:
                    time.sleep(delay)
                chunk(piece)
            chunk({}, finish=finish)
            if usage and (request.get("stream_options") or {}).get("include_usage"):
                chunk(None, with_usage=usage)
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            sys.stderr.write("[fake-llm] client went away mid-stream\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    host, port = server.server_address[:2]
    print(f"fake-llm listening on http://{host!s}:{port}/v1 model={MODEL}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
