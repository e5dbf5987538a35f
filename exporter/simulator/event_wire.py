"""What the simulated behest and agent-sdk hosts share: their timestamps, ids, JSON and a writer base.

A writer turns a run's plan into NDJSON lines byte for byte as the runtime (and, for agent-sdk, its
host wrapper) writes them: serde field order, chrono / `time` timestamps. The shapes were read in
the runtimes' sources at their tags (docs/event-sources.md §2).
"""

from __future__ import annotations

import functools
import itertools
import json
import random
import string
import time
from typing import Any

NS = 1_000_000_000
ENC = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False)  # as serde_json writes
_ALNUM = string.ascii_letters + string.digits
CACHE_FIELDS = ("cache_creation_input_tokens", "cache_read_input_tokens", "cached_input_tokens")
TOOLS = {  # name: (display_name, tier); agent-sdk hosts ask before the Confirm ones (sometimes)
    "web_search": ("Web Search", "Observe"),
    "read_file": ("Read File", "Observe"),
    "get_weather": ("Get Weather", "Observe"),
    "bash": ("Run Command", "Confirm"),
    "send_email": ("Send Email", "Confirm"),
}
TOPICS = ("rust async runtimes", "postgres vacuum tuning", "kubernetes pod eviction", "redis consumer groups")
ANSWERS = (
    "The deployment finished and all 12 health checks pass.",
    "I found three open incidents; the oldest is from Tuesday and concerns the billing worker.",
    "Tomorrow in Lisbon: sunny, 24 °C, light wind from the north-west.",
    "The config sets max_connections to 200, above the pool limit of 150 — that explains the errors.",
    "Done: the weekly report was sent to the finance team.",
)
PREAMBLES = ("Let me look that up.", "I'll check the logs first.", "I'll read the file to confirm.")
REFUSAL = "I can't help with that request."


@functools.lru_cache(maxsize=8192)
def second_text(s: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s))


def chrono_ts(ns: int) -> str:
    """chrono's `DateTime<Utc>` serde form: `SecondsFormat::AutoSi`, the fewest of 0/3/6/9 digits showing all."""
    s, f = divmod(ns, NS)
    if f == 0:
        return f"{second_text(s)}Z"
    if f % 1_000_000 == 0:
        return f"{second_text(s)}.{f // 1_000_000:03d}Z"
    if f % 1_000 == 0:
        return f"{second_text(s)}.{f // 1_000:06d}Z"
    return f"{second_text(s)}.{f:09d}Z"


def time_ts(ns: int) -> str:
    """`time::serde::rfc3339` (agent-sdk >= 0.9 envelopes): 1-9 digits, trailing zeros trimmed."""
    s, f = divmod(ns, NS)
    return f"{second_text(s)}Z" if f == 0 else f"{second_text(s)}.{f:09d}".rstrip("0") + "Z"


def host_ts(ns: int) -> str:
    """The agent-sdk host wrapper's `ts`: its receive time in ms, like docs/event-sources.md §2's example."""
    s, f = divmod(ns, NS)
    return f"{second_text(s)}.{f // 1_000_000:03d}Z"


# JSONEncoder.encode builds this C encoder anew for every object: built once, a line costs half as much
_C_ENCODER = getattr(json.encoder, "c_make_encoder", None)
_FAST = _C_ENCODER and _C_ENCODER(None, ENC.default, json.encoder.encode_basestring, None, ":", ",", False, False, True)


def encode(obj: dict[str, Any]) -> bytes:
    return "".join(_FAST(obj, 0)).encode() if _FAST else ENC.encode(obj).encode()


def uuid_of(n: int) -> str:
    h = f"{n:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def uuid4(rng: random.Random) -> str:
    """A UUID v4 from the seeded generator (`uuid.uuid4` would not be reproducible)."""
    return uuid_of(rng.getrandbits(128) & ~(0xF000 << 64 | 0xC000 << 48) | 0x4000 << 64 | 0x8000 << 48)


def uuid7(rng: random.Random, ns: int) -> str:
    """behest's `RuntimeEventId` (`Uuid::now_v7`): unix ms, version 7, random bits."""
    return uuid_of((ns // 1_000_000) << 80 | 7 << 76 | rng.getrandbits(12) << 64 | 2 << 62 | rng.getrandbits(62))


def token(rng: random.Random, k: int) -> str:
    return "".join(rng.choices(_ALNUM, k=k))


def log_uniform(rng: random.Random, lo: float, hi: float) -> float:
    return float(lo * (hi / lo) ** rng.random())


def chunks(rng: random.Random, text: str, n: int) -> tuple[str, ...]:
    """``text`` cut into ``n`` non-empty pieces at random places, as a stream delivers it."""
    n = max(1, min(n, len(text)))
    cuts = sorted(rng.sample(range(1, len(text)), n - 1)) if n > 1 else []
    return tuple(text[a:b] for a, b in itertools.pairwise([0, *cuts, len(text)]))


def arguments(rng: random.Random, name: str) -> dict[str, Any]:
    """A call's arguments; varied enough that no two calls repeat by chance (a repeat is a doom loop)."""
    if name == "web_search":
        return {"query": f"{rng.choice(TOPICS)} {rng.randint(2019, 2026)}", "max_results": rng.randint(3, 10)}
    if name == "read_file":
        return {"path": f"/srv/app/{rng.choice(('src', 'conf', 'data'))}/part-{rng.randint(1, 9999)}.txt", "limit": 200}
    if name == "bash":
        return {"command": f"tail -n {rng.randint(10, 999)} /var/log/app/{rng.choice(('api', 'worker'))}.log"}
    if name == "send_email":
        return {
            "to": f"{rng.choice(('ops', 'ana', 'li.wei'))}@example.com",
            "subject": f"Report #{rng.randint(1, 99999)}",
        }
    return {"city": rng.choice(("Lisbon", "Berlin", "Tokyo", "Austin")), "days": rng.randint(1, 7), "units": "metric"}


class Clock:
    """A run's event times (ns): strictly increasing (bare behest lines are identified by their timestamp),
    on the host clock's resolution (1: Linux ns; 1 000: a µs clock; 1 000 000: ms)."""

    def __init__(self, t: int, res: int = 1) -> None:
        self.res, self.started = res, False
        self.t = -(-t // res) * res

    def after(self, seconds: float) -> int:
        """The next event's time, ``seconds`` after the last one (the first event: the start time)."""
        if self.started:
            self.t = -(-(self.t + max(1, int(seconds * NS))) // self.res) * self.res
        self.started = True
        return self.t


class Writer:
    """One run's lines in its line format, each with the time (ns) it can first be sent."""

    def __init__(self, fmt: str, run_id: str, rng: random.Random) -> None:
        self.fmt, self.run_id, self.rng = fmt, run_id, rng
        self.lines: list[tuple[int, bytes]] = []
        self.seq = 0
        self.last = 0

    def put(self, ns: int, obj: dict[str, Any]) -> None:
        self.lines.append((ns, encode(obj)))
        self.last = ns  # a run's lines are written in time order

    def unknown(self) -> tuple[int, bytes]:
        """A line of a type a newer runtime writes, after the run's last one (not kept in `lines`)."""
        raise NotImplementedError
