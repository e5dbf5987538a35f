"""Settings: one table of every option, read from flags, `LETTA_EXPORTER_*` variables and YAML.

Precedence is flag > environment > `--config` file > default. Each option is declared once in
`OPTIONS`; the CLI flags, the environment names, the YAML keys and the README table derive from it.
Invalid values fail at start-up with a `ConfigError` naming the setting and where it came from.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from exporter.types import EVENT_RUNTIMES

ENV_PREFIX = "LETTA_EXPORTER_"


class ConfigError(ValueError):
    """A setting is invalid; the message names it and is safe to print (no secret values)."""


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, "y": 31536000.0}


def parse_duration(text: str) -> float:
    """`500ms`, `15s`, `5m`, `24h`, `1h30m`, or plain seconds; returns seconds. Prometheus's
    durations (`1w`, `1y`) read the same, so the alert and dashboard generators use it too."""
    value = text.strip()
    try:
        seconds = float(value)
    except ValueError:
        parts = _DURATION.findall(value)
        if not parts or "".join(n + u for n, u in parts) != value:
            raise ValueError(f"{text!r} is not a duration (use e.g. 500ms, 15s, 5m, 24h)") from None
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    if seconds < 0:
        raise ValueError(f"{text!r} is negative")
    return seconds


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{text!r} is not a boolean (use true or false)")


def _url(text: str) -> str:
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{text!r} is not an http(s) URL")
    return text.strip().rstrip("/")


def _listen(text: str) -> str:
    _host, sep, port = text.strip().rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r} is not HOST:PORT")
    return text.strip()


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text.strip().lower() not in allowed:
            raise ValueError(f"{text!r} is not one of {', '.join(allowed)}")
        return text.strip().lower()

    return parse


def _positive(parse: Callable[[str], float]) -> Callable[[str], float]:
    def checked(text: str) -> float:
        value = parse(text)
        if value <= 0:
            raise ValueError(f"{text!r} must be greater than zero")
        return value

    return checked


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise ValueError(f"{text!r} must be a whole number greater than zero")
    return value


def _text(text: str) -> str:
    return text


_SIZE = re.compile(r"(\d+)\s*(B|KiB|MiB|GiB)?")


def _size(text: str) -> int:
    """`16MiB`, `512KiB`, or plain bytes."""
    match = _SIZE.fullmatch(text.strip())
    if match is None or int(match[1]) == 0:
        raise ValueError(f"{text!r} is not a size (use e.g. 16MiB, 512KiB or bytes)")
    return int(match[1]) * {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}[match[2] or "B"]


def _redis_url(text: str) -> str:
    parts = urlsplit(text.strip())
    if parts.scheme not in ("redis", "rediss", "unix") or not (parts.netloc or parts.path):
        raise ValueError("not a redis://HOST:PORT/DB, rediss:// or unix:// URL")
    return text.strip()


def _runtimes(text: str) -> tuple[str, ...]:
    names = _names(text)
    unknown = [n for n in names if n not in EVENT_RUNTIMES]
    if unknown:
        raise ValueError(f"{', '.join(unknown)}: not an event runtime (use {', '.join(EVENT_RUNTIMES)})")
    return names


def _names(text: str) -> tuple[str, ...]:
    """A comma list; blanks and repeats dropped, order kept."""
    return tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))


@dataclass(frozen=True)
class Option:
    name: str  # attribute and YAML key; the flag is --name-with-dashes
    parse: Callable[[str], Any]
    default: str | None
    help: str
    secret: bool = False
    env_fallback: str | None = None  # a standard variable honoured after LETTA_EXPORTER_<NAME>

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()


OPTIONS: tuple[Option, ...] = (
    Option("letta_url", _url, "http://localhost:8283", "Letta server base URL", env_fallback="LETTA_BASE_URL"),
    Option(
        "letta_api_key",
        _text,
        None,
        "bearer token (server password or Letta Cloud key)",
        secret=True,
        env_fallback="LETTA_API_KEY",
    ),
    Option("letta_project", _text, None, "Letta Cloud project slug, sent as X-Project"),
    Option("listen_address", _listen, "0.0.0.0:9813", "where /metrics is served (HOST:PORT)"),
    Option("web_config_file", _text, None, "TLS and basic auth for the endpoints (exporter-toolkit format)"),
    Option("poll_interval", _positive(parse_duration), "15s", "time between polls"),
    Option("state_path", _text, "letta-exporter-state.db", "SQLite state file; :memory: for none"),
    Option("reset_state", parse_bool, "false", "discard an unreadable or unwanted state file at start-up"),
    Option("backfill", parse_duration, "0s", "at first start, also count runs created within this window"),
    Option("stuck_after", _positive(parse_duration), "15m", "an active run older than this is stuck"),
    Option("expire_after", _positive(parse_duration), "24h", "an active run older than this is expired"),
    Option("max_catchup", _positive(parse_duration), "24h", "after a restart, read back at most this far"),
    Option("step_timings", parse_bool, "true", "fetch /v1/steps/{id}/metrics (one request per step)"),
    Option("agent_labels", parse_bool, "false", "add an agent_id label to run, token, cost and tool metrics"),
    Option(
        "agent_allowlist",
        _names,
        "",
        "agent ids or names that get their own agent_id (comma list); empty = the first --max-agents seen",
    ),
    Option("max_agents", _positive_int, "50", "most agents labelled when no allowlist is given; the rest are other"),
    Option("tool_metrics", parse_bool, "false", "count tool calls from /v1/runs/{id}/messages (one request per run)"),
    Option("cost", parse_bool, "true", "price finished steps in USD from the bundled price table (no request)"),
    Option("price_table", _text, None, "YAML or JSON prices per model (USD per million tokens) over the bundled ones"),
    Option(
        "semconv_metrics",
        parse_bool,
        "false",
        "also serve the OpenTelemetry GenAI instruments on /metrics (gen_ai_*; always pushed with OTLP metrics)",
    ),
    Option("letta", parse_bool, "true", "poll the Letta server (--no-letta: event runtimes only)"),
    Option(
        "ingest_token",
        _text,
        None,
        "bearer token POST /v1/events requires; setting it turns the endpoint on (web-config users may post too)",
        secret=True,
    ),
    Option("ingest_max_bytes", _size, "16MiB", "largest POST /v1/events body, decompressed"),
    Option("redis_url", _redis_url, None, "read behest's Redis Stream here (redis://HOST:PORT/DB)", secret=True),
    Option("redis_stream", _text, "behest:events", "the Redis Stream behest publishes to (field event)"),
    Option("redis_group", _text, "letta-exporter", "the Redis consumer group the exporter reads through"),
    Option(
        "event_idle_expire_after",
        _positive(parse_duration),
        "15m",
        "an event runtime's run with no event for this long is expired",
    ),
    Option(
        "event_settle",
        parse_duration,
        "15s",
        "after a run's last event, wait this long for late ones before counting it",
    ),
    Option("event_spans", _runtimes, "behest,agent_sdk", "event runtimes whose runs become OTLP spans (comma list)"),
    Option("request_timeout", _positive(parse_duration), "10s", "timeout of one request to Letta"),
    Option(
        "max_concurrency",
        _positive_int,
        "64",
        "most requests to Letta in flight; below it the limit adapts to Letta's latency, 429s and 5xx",
    ),
    Option("page_size", _positive_int, "100", "runs per list request (Letta allows 1..1000)"),
    Option("otlp_queue_size", _positive_int, "2048", "finished runs whose spans wait for the collector in memory"),
    Option(
        "otlp_max_pending",
        _positive_int,
        "50000",
        "finished runs whose spans may wait in the state file through a collector outage (then the oldest drop)",
    ),
    Option("log_level", _choice("debug", "info", "warning", "error"), "info", "log level"),
    Option("log_format", _choice("auto", "json", "text"), "auto", "auto = JSON when stderr is not a TTY"),
)
_BY_NAME = {option.name: option for option in OPTIONS}


@dataclass(frozen=True)
class Settings:
    letta_url: str
    letta_api_key: str | None
    letta_project: str | None
    listen_address: str
    web_config_file: str | None
    poll_interval: float
    state_path: str
    reset_state: bool
    backfill: float
    stuck_after: float
    expire_after: float
    max_catchup: float
    step_timings: bool
    agent_labels: bool
    agent_allowlist: tuple[str, ...]
    max_agents: int
    tool_metrics: bool
    cost: bool
    price_table: str | None
    semconv_metrics: bool
    letta: bool
    ingest_token: str | None
    ingest_max_bytes: int
    redis_url: str | None
    redis_stream: str
    redis_group: str
    event_idle_expire_after: float
    event_settle: float
    event_spans: tuple[str, ...]
    request_timeout: float
    max_concurrency: int
    page_size: int
    otlp_queue_size: int
    otlp_max_pending: int
    log_level: str
    log_format: str

    def __repr__(self) -> str:
        """Never show secrets, even in a debugger or a traceback."""
        shown = {
            f.name: ("<hidden>" if _BY_NAME[f.name].secret and getattr(self, f.name) else getattr(self, f.name))
            for f in fields(self)
        }
        return f"Settings({shown})"

    @property
    def events(self) -> bool:
        """An event way in is configured: the event runtimes' families and loops exist."""
        return bool(self.ingest_token or self.redis_url)

    @property
    def listen_host_port(self) -> tuple[str, int]:
        host, _, port = self.listen_address.rpartition(":")
        return host.strip("[]"), int(port)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags default to None so that an absent flag falls through to env, file and default."""
    parser.add_argument("--config", metavar="FILE", help="YAML file with any of the settings below")
    for option in OPTIONS:
        if option.parse is parse_bool:
            parser.add_argument(option.flag, dest=option.name, action=argparse.BooleanOptionalAction)
            continue
        shown = "(hidden)" if option.secret else option.default
        parser.add_argument(
            option.flag, dest=option.name, metavar="VALUE", help=f"{option.help} [{option.env}; {shown}]"
        )


def _from_file(path: str) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"--config: cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--config: {path} is not valid YAML: {exc}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"--config: {path} must hold a mapping of setting: value")
    unknown = sorted(str(key) for key in loaded if str(key).replace("-", "_") not in _BY_NAME)
    if unknown:
        raise ConfigError(f"--config: {path} has unknown settings: {', '.join(unknown)}")
    return {str(key).replace("-", "_"): value for key, value in loaded.items()}


def load(args: argparse.Namespace | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Resolve every option; raise ConfigError naming the first bad one."""
    environ = os.environ if environ is None else environ
    flags = vars(args) if args is not None else {}
    config_path = flags.get("config") or environ.get(ENV_PREFIX + "CONFIG")
    file_values = _from_file(config_path) if config_path else {}
    values: dict[str, Any] = {}
    for option in OPTIONS:
        candidates: Sequence[tuple[str, object]] = (
            (option.flag, flags.get(option.name)),
            (option.env, environ.get(option.env)),
            (option.env_fallback or "", environ.get(option.env_fallback) if option.env_fallback else None),
            (f"{config_path}: {option.name}", file_values.get(option.name)),
            ("default", option.default),
        )
        source, raw = next(((s, v) for s, v in candidates if v is not None), ("default", None))
        if raw is None:
            values[option.name] = None
            continue
        if isinstance(raw, list):  # a YAML list (agent_allowlist): the comma list a flag would give
            text = ",".join(map(str, raw))
        else:
            text = str(raw).lower() if isinstance(raw, bool) else str(raw)
        try:
            values[option.name] = option.parse(text)
        except ValueError as exc:
            detail = "invalid value" if option.secret else str(exc)
            raise ConfigError(f"{option.flag} (from {source}): {detail}") from None
    settings = Settings(**values)
    if settings.expire_after <= settings.stuck_after:
        raise ConfigError("--expire-after must be longer than --stuck-after")
    if settings.page_size > 1000:
        raise ConfigError("--page-size: Letta accepts at most 1000")
    if not settings.letta and not settings.events:
        raise ConfigError("--no-letta leaves nothing to read: add --ingest-token and/or --redis-url")
    if settings.event_settle >= settings.event_idle_expire_after:
        raise ConfigError("--event-settle must be shorter than --event-idle-expire-after")
    return settings


def reference_table() -> str:
    """The README's configuration table, generated so docs and code cannot drift."""
    rows = ["| flag | environment | default | meaning |", "|---|---|---|---|"]
    for option in OPTIONS:
        env = f"`{option.env}`" + (f", `{option.env_fallback}`" if option.env_fallback else "")
        default = "—" if option.default is None else f"`{option.default}`"
        flag = f"`{option.flag}`" + (f" / `--no-{option.flag[2:]}`" if option.parse is parse_bool else "")
        rows.append(f"| {flag} | {env} | {default} | {option.help} |")
    return "\n".join(rows)
