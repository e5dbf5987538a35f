"""A run's messages as 0.16.8 lists them at `GET /v1/runs/{run_id}/messages` (LettaMessage objects).

One stored message is one listed message here (real Letta can split one into several sharing an
id, e.g. reasoning + assistant): ids are unique. A step's messages are written when it finishes,
none before: the user message (the first step's), an `assistant_message` when the last step
replies, then one `tool_call_message` listing all the step's calls (`tool_call` is the first of
`tool_calls`) and one `tool_return_message` with a return per call whose return was written
(top-level `status`, `tool_call_id`, `tool_return` and `name` are the first's). A call without a
return has no entry; a step none of whose calls returned has no return message. `date` has
one-second resolution, as Letta stores it.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from exporter.simulator.plan import INF, RunPlan, ToolCallPlan, uid

TOOL_MESSAGES = ("tool_call_message", "tool_return_message")
_PROMPTS = ("look this up for me", "summarise my week", "what did we decide yesterday?", "run the numbers", "hello")
_REPLIES = ("Here is what I found.", "Done - anything else?", "Hello from the simulated LLM.", "I saved that.")


@dataclass(frozen=True)
class Message:
    at: float  # listed once the run is this many seconds old (its step finished)
    type: str  # message_type
    body: dict[str, Any]


def _date(us: float) -> str:
    return datetime.fromtimestamp(us // 1_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


_WORDS = ("hello", "invoice 4411", "weekly report", "user preferences", "deploy logs", "refund policy", "python")


def _arguments(call: ToolCallPlan) -> str:
    """The call's arguments as the model wrote them (JSON text), derived from its id."""
    word = _WORDS[int(call.id[-6:], 16) % len(_WORDS)]
    args: dict[str, dict[str, object]] = {
        "conversation_search": {"query": word},
        "archival_memory_search": {"query": word, "page": 0},
        "archival_memory_insert": {"content": f"Remember: {word}"},
        "core_memory_append": {"label": "human", "content": f"Interested in {word}"},
        "web_search": {"query": word, "num_results": 5},
        "run_code": {"language": "python", "code": f"print({word!r})"},
        "fetch_webpage": {"url": f"https://example.com/{word.replace(' ', '-')}"},
    }
    return json.dumps(args.get(call.name, {"input": word}))


def _returned(call: ToolCallPlan) -> str:
    if call.status == "error":
        return f"Error executing function {call.name}: TimeoutError: the tool did not answer in time"
    return {
        "conversation_search": "{'message': 'Showing 3 results:', 'results': []}",
        "archival_memory_search": "([], 0)",
        "web_search": "{'results': [{'title': 'Example', 'url': 'https://example.com/'}]}",
        "run_code": "{'results': [], 'logs': {'stdout': [], 'stderr': []}}",
        "fetch_webpage": "Example Domain. This domain is for use in illustrative examples.",
    }.get(call.name, "None")


def build(seed: int, p: RunPlan) -> tuple[Message, ...]:
    """Every message the run will ever list, in order; ids drawn from their own generator."""
    rng = random.Random(f"{seed}:messages:{p.id}")
    out: list[Message] = []

    def add(at: float, date_s: float, kind: str, step_id: str, name: str | None, **fields: Any) -> None:
        message_id = uid(rng, "message")
        body = {
            "id": message_id,
            "date": _date(p.created_us + date_s * 1e6),
            "name": name,
            "message_type": kind,
            "otid": message_id.removeprefix("message-")[:-2] + "00",
            "sender_id": None,
            "step_id": step_id,
            "is_err": None,
            "seq_id": None,
            "run_id": p.id,
        }
        out.append(Message(at, kind, body | fields))

    for i, step in enumerate(p.steps):
        if step.end == INF:
            break
        start = step.end - step.step_ns / 1e9
        llm_done = start + step.llm_ns / 1e9
        if i == 0:
            add(step.end, 0.0, "user_message", step.id, None, content=rng.choice(_PROMPTS))
        if p.reply and i == len(p.steps) - 1:
            add(step.end, llm_done, "assistant_message", step.id, None, content=rng.choice(_REPLIES))
        calls = p.calls[i] if i < len(p.calls) else ()
        if not calls:
            continue
        listed = [{"name": c.name, "arguments": _arguments(c), "tool_call_id": c.id} for c in calls]
        add(step.end, llm_done, "tool_call_message", step.id, None, tool_call=listed[0], tool_calls=listed)
        returned = [c for c in calls if c.status is not None]
        if not returned:
            continue
        returns = [
            {
                "type": "tool",
                "tool_return": _returned(c),
                "status": c.status,
                "tool_call_id": c.id,
                "stdout": None,
                "stderr": None,
            }
            for c in returned
        ]
        first = returns[0]
        add(
            step.end,
            llm_done + (step.tool_ns or 0) / 1e9,
            "tool_return_message",
            step.id,
            returned[0].name,
            **{k: first[k] for k in ("tool_return", "status", "tool_call_id", "stdout", "stderr")},
            tool_returns=returns,
        )
    return tuple(out)


def shown(types: tuple[str, ...] | None, kind: str) -> bool:
    """Whether a run created with ``include_return_message_types=types`` lists messages of ``kind``."""
    return not types or kind in types  # Letta: an empty list filters nothing


def tools_filtered(types: tuple[str, ...] | None) -> bool:
    """Whether the run's message filter drops tool call or tool return messages."""
    return not all(shown(types, kind) for kind in TOOL_MESSAGES)
