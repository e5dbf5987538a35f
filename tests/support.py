"""Helpers for tests that start real processes on 127.0.0.1: start, wait for, scrape, compare with the
simulator's ground truth, stop."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx2
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")
# (name, sorted labels) -> value of every sample of a scrape
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
# Exporter flags that let the simulator's runs finish, get stuck and expire within seconds.
FAST = ("--poll-interval", "300ms", "--stuck-after", "2s", "--expire-after", "4s", "--backfill", "1h")


def wait_until(check: Callable[[], T | None], timeout: float = 30.0, what: str = "condition") -> T:
    """Poll `check` until it returns something truthy; the one place tests wait, always bounded."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
        except (httpx2.HTTPError, OSError, ValueError, KeyError) as exc:
            last_error, result = exc, None
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(
        f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last_error})" if last_error else "")
    )


class Process:
    """A child process whose stdout and stderr lines are collected by reader threads."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.args = args
        self.proc = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
            env={**os.environ, **(env or {})},
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(stream,), daemon=True)
            for stream in (self.proc.stdout, self.proc.stderr)
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            self.output.append(line)
            self.lines.put(line)

    def wait_for_line(self, pattern: str, timeout: float = 30.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if match := regex.search(line):
                return match
        raise AssertionError(f"{self.args[:3]} printed no line matching {pattern!r}:\n{''.join(self.output)[-3000:]}")

    def kill_after(self, seconds: float) -> None:
        """Let the process work for `seconds` (a chosen crash point, not a wait for an event), then
        `kill -9` it; it must still be running by then."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(seconds)
        assert self.proc.poll() is None, f"{self.args[:3]} exited early:\n{self.text()[-2000:]}"
        self.stop(signal.SIGKILL)

    def text(self) -> str:
        return "".join(self.output)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for reader in self._readers:
            reader.join(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        return self.proc.returncode


@contextmanager
def running(args: list[str], env: dict[str, str] | None = None) -> Iterator[Process]:
    process = Process(args, env)
    try:
        yield process
    finally:
        process.stop(signal.SIGKILL if process.proc.poll() is None else signal.SIGTERM)


def exporter_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "exporter", *args]


def start_simulator(*args: str) -> tuple[Process, str]:
    process = Process([sys.executable, "-m", "exporter.simulator", "--port", "0", *args])
    url = process.wait_for_line(r"listening on (http://\S+)").group(1)
    return process, url


def start_exporter(letta_url: str, *args: str, env: dict[str, str] | None = None) -> tuple[Process, str]:
    process = Process(
        exporter_cmd("run", "--letta-url", letta_url, "--listen-address", "127.0.0.1:0", "--log-format", "json", *args),
        env,
    )
    line = process.wait_for_line(r'"message": "letta-exporter started".*')
    listen = json.loads(line.string)["listen"]
    return process, f"http://{listen}"


def start_event_exporter(state: Path, *args: str, env: dict[str, str] | None = None) -> tuple[Process, str]:
    """An exporter taking only events (`--no-letta`), on a free port, its state in `state`."""
    process = Process(
        exporter_cmd(
            "run",
            "--no-letta",
            "--listen-address",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--state-path",
            str(state),
            *args,
        ),
        env,
    )
    line = process.wait_for_line(r'"message": "letta-exporter started".*')
    return process, "http://" + json.loads(line.string)["listen"]


def scrape(base_url: str, headers: dict[str, str] | None = None) -> Samples:
    text = httpx2.get(f"{base_url}/metrics", headers=headers, timeout=5).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def total(samples: Samples, name: str, **match: str) -> float:
    return sum(v for (n, labels), v in samples.items() if n == name and match.items() <= dict(labels).items())


def _expected_finished(truth: dict[str, Any]) -> Counter[str]:
    """Final status of every run (zombies are expired): what counted + status changes must add up to."""
    counts = Counter(r["status"] if r["status"] != "running" else r["first_terminal_status"] for r in truth["terminal"])
    counts["expired"] += sum(1 for r in truth["active"] if r["zombie"])
    return +counts


def _exported_finished(samples: Samples) -> dict[str, float]:
    """Runs by final status as exported: finished counts moved along by the terminal status changes."""
    counts: defaultdict[str, float] = defaultdict(float)
    for (name, pairs), value in samples.items():
        labels = dict(pairs)
        if name == "letta_runs_finished_total":
            counts[labels["status"]] += value
        elif name == "letta_run_terminal_status_changes_total":
            counts[labels["from"]] -= value
            counts[labels["to"]] += value
    return {status: count for status, count in counts.items() if count > 0}


def settled(sim_url: str, exporter_url: str, runs: int) -> bool:
    """All runs created and finished (or expired), and the exporter's counters equal the simulator's truth."""
    truth = httpx2.get(f"{sim_url}/_sim/truth", timeout=5).json()
    if truth["runs"]["total"] < runs or any(not r["zombie"] for r in truth["active"]):
        return False
    samples = scrape(exporter_url)
    return (
        _exported_finished(samples) == _expected_finished(truth) and total(samples, "letta_runs_created_total") == runs
    )


def spans_exported_caught_up(url: str, arrived: int) -> Samples:
    """/metrics once it counts `arrived` spans exported: it is published after each poll, and
    delivery confirms spans in between."""

    def caught_up() -> Samples | None:
        samples = scrape(url)
        return samples if samples[("letta_exporter_spans_exported_total", ())] == arrived else None

    return wait_until(caught_up, what="letta_exporter_spans_exported_total to match what arrived")


def memory_mb(pid: int, field: str = "VmRSS") -> float:
    """A process's memory from the kernel (/proc): VmRSS now, or VmHWM, the most it ever held."""
    status = Path(f"/proc/{pid}/status").read_text()
    return next(int(line.split()[1]) for line in status.splitlines() if line.startswith(f"{field}:")) / 1024


def free_port() -> int:
    """A loopback port nobody listens on right now (for servers that cannot report their own)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tool(name: str) -> str | None:
    """A real binary: $NAME (upper-cased), .tools/bin/NAME, or PATH."""
    explicit = os.environ.get(name.upper())
    if explicit:
        return explicit
    local = ROOT / ".tools" / "bin" / name
    return str(local) if local.exists() else shutil.which(name)


@contextmanager
def redis_server(*args: str, port: int | None = None) -> Iterator[str]:
    """A real redis-server (Debian's, from scripts/install-tools.sh) on 127.0.0.1, in memory only; yields
    its URL. `port`: the one of a server stopped before, to restart it in place. Missing: a skip, but a
    failure in CI, so that a green run cannot hide the tests it skipped."""
    import pytest

    binary = tool("redis-server")
    if binary is None:
        message = "redis-server is not installed: run `make tools` (scripts/install-tools.sh)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    port = port or free_port()
    process = Process([binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no", *args])

    def answers() -> bool:
        assert process.proc.poll() is None, f"redis-server exited:\n{process.text()[-2000:]}"
        with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(64).startswith((b"+PONG", b"-NOAUTH"))  # NOAUTH: up, with --requirepass

    try:
        wait_until(answers, timeout=10, what="redis-server to answer PING")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.stop()
