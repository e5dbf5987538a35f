"""Start and stop a real Letta server for the e2e tier: PostgreSQL + pgvector (0.12+), the fake LLM, Letta.

Adapted from the tested offline Letta recipe's start and stop scripts, as Python so
that pytest fixtures own every process: each one listens on 127.0.0.1 on a free port, and
`LettaStack.close()` stops exactly what was started (the server and the fake LLM by their own
process, postgres with `pg_ctl stop` on its own data directory), also when a test fails.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx2

from tests.support import ROOT, wait_until

HERE = Path(__file__).resolve().parent
TOOLS = Path(os.environ.get("TOOLS_DIR", ROOT / ".tools"))
# What the fake LLM serves; Letta 0.16 names it openai-proxy/... because the base URL is not OpenAI's.
FAKE_MODEL = "gpt-4o-mini"
# Head of letta's alembic migrations at 0.16.8, stamped by init_schema.py.
ALEMBIC_HEAD = "1c28e167b74f"
# Variables that would point Letta at something other than what this stack starts.
SCRUBBED = (
    "LETTA_PG_URI",
    "LETTA_PG_HOST",
    "LETTA_PG_PORT",
    "LETTA_REDIS_HOST",
    "LETTA_REDIS_PORT",
    "SENTRY_DSN",
    "ANTHROPIC_API_KEY",
    "GEMINI_API_KEY",
    "GROQ_API_KEY",
    "TOGETHER_API_KEY",
    "OLLAMA_BASE_URL",
    "VLLM_API_BASE",
    "LMSTUDIO_BASE_URL",
    "OPENROUTER_API_KEY",
    "CLICKHOUSE_ENDPOINT",
    "LETTA_OTEL_EXPORTER_OTLP_ENDPOINT",
    "LETTA_SERVER_PASSWORD",
    "LETTA_SERVER_SECURE",
    "LETTA_API_KEY",
    "LETTA_BASE_URL",
)


@dataclass(frozen=True)
class Target:
    """One Letta release the tier runs against."""

    version: str
    postgres: bool  # 0.12+ only runs on PostgreSQL; 0.11 still has SQLite

    @property
    def venv(self) -> Path:
        return TOOLS / f"letta-{self.version}" / "venv"

    def missing(self) -> str | None:
        """Why this target cannot run here, or None."""
        stamp = TOOLS / f"letta-{self.version}" / ".installed"
        if not (self.venv / "bin" / "letta").exists() or not stamp.exists():
            return (
                f"real Letta {self.version} not installed: run `make test-e2e` "
                f"or WITH_LETTA=1 scripts/install-tools.sh (tests/e2e/letta_server/install.sh {self.version})"
            )
        if self.postgres and self.pg_bin() is None:
            return f"pgserver's PostgreSQL binaries are missing from {self.venv}: rerun the install"
        return None

    def pg_bin(self) -> Path | None:
        found = sorted(self.venv.glob("lib/python3*/site-packages/pgserver/pginstall/bin"))
        return found[0] if found and (found[0] / "pg_ctl").exists() else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Service:
    """A child process with its output in a log file (kept for failure messages)."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], cwd: Path, log: Path) -> None:
        self.name, self.log = name, log
        self._out: IO[str] = log.open("w")
        self.proc = subprocess.Popen(
            args, stdout=self._out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd, env=env, text=True
        )

    def tail(self, lines: int = 60) -> str:
        text = self.log.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 30.0) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)  # uvicorn shuts down gracefully in ~5 s
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._out.close()


class LettaStack:
    """PostgreSQL (when the target needs it) and the fake LLM for the whole stack; Letta itself can be
    restarted with different settings (`start_letta` / `stop_letta`) on the same database."""

    def __init__(self, target: Target) -> None:
        self.target = target
        # Not under pytest's tmp dirs: those are 0700 root, and postgres runs as the `postgres` user.
        self.work = Path(tempfile.mkdtemp(prefix=f"letta-e2e-{target.version}-"))
        self.work.chmod(0o755)
        (self.work / "home" / ".letta").mkdir(parents=True)
        self.pg_port: int | None = None
        self.pg_started = False
        self.fake_llm: Service | None = None
        self.fake_llm_url = ""
        self.letta: Service | None = None
        self.letta_url = ""
        self.letta_port: int | None = None
        self.letta_starts = 0

    # ------------------------------------------------------------------ PostgreSQL + pgvector
    def _as_pg(self, *args: str) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else list(args)

    def start_postgres(self) -> None:
        pg_bin = self.target.pg_bin()
        assert pg_bin is not None
        if os.geteuid() == 0 and subprocess.run(["id", "postgres"], capture_output=True).returncode != 0:
            subprocess.run(
                ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "postgres"], check=True
            )
        data, sock = self.work / "pgdata", self.work / "pgsock"
        data.mkdir(mode=0o700)
        sock.mkdir()
        if os.geteuid() == 0:
            shutil.chown(data, "postgres")
            shutil.chown(sock, "postgres")
        log = self.work / "pg.log"
        run = subprocess.run
        initdb = ["-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"]
        run(self._as_pg(str(pg_bin / "initdb"), *initdb), check=True, capture_output=True, cwd=self.work)
        self.pg_port = free_port()
        options = f"-p {self.pg_port} -k {sock} -c listen_addresses=127.0.0.1 -c max_connections=200"
        run(["touch", str(log)], check=True)
        if os.geteuid() == 0:
            shutil.chown(log, "postgres")
        self.pg_started = True
        run(
            self._as_pg(str(pg_bin / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-o", options, "start"),
            check=True,
            capture_output=True,
            cwd=self.work,
        )
        connect = ["-h", "127.0.0.1", "-p", str(self.pg_port), "-U", "postgres"]
        psql = [str(pg_bin / "psql"), *connect, "-v", "ON_ERROR_STOP=1", "-qtA"]
        run([*psql, "-c", "CREATE ROLE letta LOGIN PASSWORD 'letta' SUPERUSER"], check=True, capture_output=True)
        run([*psql, "-c", "CREATE DATABASE letta OWNER letta"], check=True, capture_output=True)
        run([*psql, "-d", "letta", "-c", "CREATE EXTENSION IF NOT EXISTS vector"], check=True, capture_output=True)
        schema = run(
            [str(self.target.venv / "bin" / "python"), str(HERE / "init_schema.py"), ALEMBIC_HEAD],
            env=self._letta_env(None),
            cwd=self.work,
            capture_output=True,
            text=True,
        )
        if schema.returncode != 0:
            raise RuntimeError(f"init_schema.py failed:\n{schema.stdout}\n{schema.stderr[-3000:]}")

    def stop_postgres(self) -> None:
        pg_bin = self.target.pg_bin()
        if not self.pg_started or pg_bin is None:
            return
        self.pg_started = False
        subprocess.run(
            self._as_pg(str(pg_bin / "pg_ctl"), "-D", str(self.work / "pgdata"), "-m", "fast", "-w", "stop"),
            capture_output=True,
            timeout=60,
        )

    # ------------------------------------------------------------------ fake LLM
    def start_fake_llm(self) -> None:
        port = free_port()
        self.fake_llm = Service(
            "fake-llm",
            [sys.executable, str(HERE / "fake_llm.py"), "--host", "127.0.0.1", "--port", str(port)],
            dict(os.environ),
            self.work,
            self.work / "fake_llm.log",
        )
        self.fake_llm_url = f"http://127.0.0.1:{port}"
        wait_until(lambda: httpx2.get(f"{self.fake_llm_url}/health", timeout=2).status_code == 200, 30, "fake LLM up")

    def llm_stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = httpx2.get(f"{self.fake_llm_url}/stats", timeout=5).json()
        return stats

    def llm_in_flight(self, kind: str | None = None) -> int:
        in_flight: dict[str, int] = self.llm_stats()["in_flight"]
        return in_flight.get(kind, 0) if kind else sum(in_flight.values())

    # ------------------------------------------------------------------ Letta
    def _letta_env(self, otlp_endpoint: str | None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in SCRUBBED and not k.startswith("OTEL_")}
        env.update(
            HOME=str(self.work / "home"),  # isolates ~/.letta: config, tool sandbox dir, sqlite.db on 0.11
            LETTA_DIR=str(self.work / "home" / ".letta"),
            OPENAI_API_KEY="sk-fake-offline",
            OPENAI_BASE_URL=f"{self.fake_llm_url}/v1",
            LETTA_TELEMETRY_ENABLE_DATADOG="false",
            # Network jail: a stray outbound HTTP(S) call (nltk.download at startup) fails at once.
            HTTP_PROXY="http://127.0.0.1:9",
            HTTPS_PROXY="http://127.0.0.1:9",
            http_proxy="http://127.0.0.1:9",
            https_proxy="http://127.0.0.1:9",
            NO_PROXY="127.0.0.1,localhost",
            no_proxy="127.0.0.1,localhost",
            DO_NOT_TRACK="1",
            HF_HUB_OFFLINE="1",
            TRANSFORMERS_OFFLINE="1",
            LETTA_LLM_REQUEST_TIMEOUT_SECONDS="30",
        )
        if self.pg_port is not None:
            env["LETTA_PG_URI"] = f"postgresql://letta:letta@127.0.0.1:{self.pg_port}/letta"  # no ?sslmode: pg8000
        if otlp_endpoint:
            env["LETTA_OTEL_EXPORTER_OTLP_ENDPOINT"] = otlp_endpoint  # turns on tracing: steps get trace_id
            env["OTEL_METRIC_EXPORT_INTERVAL"] = "600000"  # Letta's OTel metrics are not what we compare
        return env

    def start_letta(self, otlp_endpoint: str | None = None, timeout: float = 180.0) -> str:
        assert self.letta is None, "Letta is already running"
        port = self.letta_port or free_port()  # a restart keeps the address the exporter polls
        self.letta_port = port
        self.letta_starts += 1
        self.letta = Service(
            "letta",
            [str(self.target.venv / "bin" / "letta"), "server", "--host", "127.0.0.1", "--port", str(port)],
            self._letta_env(otlp_endpoint),
            self.work,
            self.work / f"letta-{self.letta_starts}.log",
        )
        self.letta_url = f"http://127.0.0.1:{port}"
        letta = self.letta

        def healthy() -> bool:
            if not letta.alive():
                raise AssertionError(f"letta exited with {letta.proc.returncode}:\n{letta.tail()}")
            return httpx2.get(f"{self.letta_url}/v1/health/", timeout=5).status_code == 200

        try:
            wait_until(healthy, timeout, f"letta {self.target.version} healthy")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- letta log ---\n{letta.tail()}") from None
        return self.letta_url

    def stop_letta(self) -> None:
        if self.letta is not None:
            self.letta.stop()
            self.letta = None

    # ------------------------------------------------------------------ all of it
    def start(self) -> None:
        if self.target.postgres:
            self.start_postgres()
        self.start_fake_llm()

    def close(self) -> None:
        """Stop everything started, whatever state it is in; keep the work dir only on request."""
        started = time.monotonic()
        try:
            self.stop_letta()
        finally:
            try:
                if self.fake_llm is not None:
                    self.fake_llm.stop(10)
            finally:
                self.stop_postgres()
        if os.environ.get("LETTA_E2E_KEEP") != "1":
            shutil.rmtree(self.work, ignore_errors=True)
        else:
            print(f"letta e2e: kept {self.work} (stopped in {time.monotonic() - started:.1f}s)")
