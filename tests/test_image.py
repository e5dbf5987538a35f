"""The container image: the Dockerfile's structure, its install steps, and a real build.

* Static checks of the Dockerfile (two stages, non-root user, exporter entry point, nothing but
  the virtualenv copied from the build stage, no build tools installed).
* The build stage's own RUN instruction, run verbatim (only the virtualenv path is moved into a
  temp dir) in a clean virtualenv, in a build context assembled from the stage's COPY
  instructions; pip reads only the wheelhouse .tools/wheels (scripts/install-tools.sh fills it),
  so the test is offline.
* A real build with buildah (Debian's package; chroot isolation, vfs storage in a temp dir). No
  container registry is reachable here, so BASE_IMAGE is a Debian bookworm rootfs with python3
  that scripts/install-tools.sh makes with mmdebstrap (.tools/containers/bookworm-python3.tar);
  the Dockerfile itself is unchanged. The built image is inspected and run: it must run as a
  non-root user, carry no pip/compiler, and serve /healthz and /metrics on 127.0.0.1.

A part skips, saying which, only when buildah / the base rootfs / the wheelhouse is not installed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
WHEELS = Path(os.environ.get("LETTA_WHEELHOUSE") or ROOT / ".tools" / "wheels")
BASE_TAR = Path(os.environ.get("LETTA_BASE_ROOTFS") or ROOT / ".tools" / "containers" / "bookworm-python3.tar")
BUILD_TOOLS = ("gcc", "cc", "c++", "make", "ld", "pip", "pip3", "git")


@dataclass(frozen=True)
class Instruction:
    stage: int
    keyword: str
    args: str


def parse_dockerfile(text: str) -> list[Instruction]:
    """Docker's own rules for what we use: comments, `\\` continuations, one instruction a line."""
    instructions: list[Instruction] = []
    stage = -1
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # a comment inside a continuation is dropped too
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        line, pending = pending + line, ""
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        instructions.append(Instruction(stage, keyword, args.strip()))
    assert not pending, "Dockerfile ends inside a continuation"
    return instructions


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))


def stage(instructions: list[Instruction], index: int) -> list[Instruction]:
    return [i for i in instructions if i.stage == index]


def venv_path(instructions: list[Instruction]) -> str:
    """The virtualenv the final stage copies out of the build stage."""
    final = stage(instructions, max(i.stage for i in instructions))
    copies = [i.args.split() for i in final if i.keyword == "COPY" and i.args.startswith("--from=")]
    assert len(copies) == 1, f"the final stage copies more than the virtualenv: {copies}"
    _, source, dest = copies[0]
    assert source == dest, "the virtualenv must keep its path (its scripts hard-code it)"
    return source


# --- the Dockerfile itself ------------------------------------------------------------------------


def test_dockerfile_is_multi_stage_with_a_slim_python_base(instructions: list[Instruction]) -> None:
    froms = [i.args for i in instructions if i.keyword == "FROM"]
    assert froms == ["${BASE_IMAGE} AS build", "${BASE_IMAGE}"], froms
    (base,) = [i.args for i in instructions if i.keyword == "ARG" and i.args.startswith("BASE_IMAGE=")]
    assert re.fullmatch(r"BASE_IMAGE=docker\.io/library/python:3\.1[1-9]-slim(-\w+)?", base), base


def test_final_stage_runs_the_exporter_as_non_root(instructions: list[Instruction]) -> None:
    final = stage(instructions, 1)
    users = [i.args for i in final if i.keyword == "USER"]
    assert users == ["${UID}:${UID}"]
    uid = [i.args for i in final if i.keyword == "ARG" and i.args.startswith("UID=")]
    assert uid == ["UID=10001"]
    assert [i.args for i in final if i.keyword == "ENTRYPOINT"] == ['["letta-exporter"]']
    assert [i.args for i in final if i.keyword == "CMD"] == ['["run"]']
    assert [i.args for i in final if i.keyword == "EXPOSE"] == ["9813"]
    # USER comes after every RUN: nothing runs as root once the user is set
    keywords = [i.keyword for i in final]
    assert keywords.index("USER") > max(n for n, k in enumerate(keywords) if k == "RUN")


def test_no_build_tools_are_installed(instructions: list[Instruction]) -> None:
    runs = " ".join(i.args for i in instructions if i.keyword == "RUN")
    for forbidden in ("apt-get install", "apk add", "build-essential", "gcc", "python3-dev"):
        assert forbidden not in runs
    # every dependency must come as a wheel: no compiler is needed or present
    assert "--only-binary=:all:" in runs
    assert venv_path(instructions) == "/opt/letta-exporter"


def test_dockerignore_keeps_the_context_small() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*"
    assert {"!pyproject.toml", "!exporter/"} <= set(patterns)


# --- the install steps, in a clean virtualenv ------------------------------------------------------


def build_context(instructions: list[Instruction], dest: Path) -> None:
    """Copy what the build stage's COPY instructions take from the context (globs as Docker)."""
    for instruction in stage(instructions, 0):
        if instruction.keyword != "COPY":
            continue
        *sources, target = shlex.split(instruction.args)
        for source in sources:
            matches = sorted(ROOT.glob(source.rstrip("/")))
            if not any(ch in source for ch in "*?[") and not matches:
                raise AssertionError(f"COPY {source}: not in the repository")
            for match in matches:  # `COPY dir/ dest/` copies the directory's contents
                if match.is_dir():
                    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
                    shutil.copytree(match, dest / target, dirs_exist_ok=True, ignore=ignore)
                else:
                    out = dest / target / match.name if target.endswith("/") else dest / target
                    out.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(match, out)


def offline_pip_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    if not list(WHEELS.glob("*.whl")):
        pytest.skip(f"no wheelhouse at {WHEELS} (run scripts/install-tools.sh or set $LETTA_WHEELHOUSE)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "VIRTUAL_ENV", "PYTHON"))}
    env.update(
        PIP_CONFIG_FILE=os.devnull,  # nothing from this machine's pip configuration
        PIP_NO_INDEX="1",
        PIP_FIND_LINKS=str(WHEELS),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    )
    env.update(extra or {})
    return env


def test_install_steps_work_in_a_clean_virtualenv(instructions: list[Instruction], tmp_path: Path) -> None:
    venv = venv_path(instructions)
    build = stage(instructions, 0)
    runs = [i.args for i in build if i.keyword == "RUN"]
    assert len(runs) == 1, runs
    workdir = [i.args for i in build if i.keyword == "WORKDIR"]
    assert workdir == ["/src"]
    context = tmp_path / "src"
    context.mkdir()
    build_context(instructions, context)
    assert (context / "pyproject.toml").exists() and (context / "exporter" / "__init__.py").exists()
    env_lines = [i.args for i in build if i.keyword == "ENV"]
    stage_env = dict(re.findall(r"(\w+)=(\S+)", " ".join(env_lines)))
    target = tmp_path / "venv"
    command = runs[0].replace(venv, str(target))  # the one change: where the virtualenv goes
    result = subprocess.run(
        ["/bin/sh", "-c", command],
        cwd=context,
        env=offline_pip_env(stage_env),
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    bin_dir = target / "bin"
    assert (bin_dir / "letta-exporter").exists()
    assert not (bin_dir / "pip").exists() and not list(bin_dir.glob("pip3*")), "pip left in the virtualenv"
    probe = subprocess.run(
        [
            bin_dir / "python",
            "-c",
            "import exporter, importlib.util as u; print(exporter.__file__, u.find_spec('pip'))",
        ],
        cwd=tmp_path,  # not the repository: the installed copy must be used
        capture_output=True,
        text=True,
        check=True,
    )
    module_file, pip_spec = probe.stdout.split()
    assert module_file.startswith(str(target)), module_file  # a real install, not an editable link
    assert pip_spec == "None"
    shown = subprocess.run([bin_dir / "letta-exporter", "--help"], capture_output=True, text=True, check=False)
    assert shown.returncode == 0, shown.stderr
    assert "run" in shown.stdout


# --- a real build with buildah ------------------------------------------------------------------------


@dataclass
class Buildah:
    binary: str
    root: Path

    def command(self, *args: str | Path) -> list[str]:
        storage = ["--storage-driver", "vfs", "--root", str(self.root / "root"), "--runroot", str(self.root / "run")]
        return [self.binary, *storage, *map(str, args)]

    def __call__(self, *args: str | Path, check: bool = True, timeout: float = 600) -> str:
        result = subprocess.run(self.command(*args), capture_output=True, text=True, check=False, timeout=timeout)
        if check:
            assert result.returncode == 0, f"buildah {args[0]}: {result.stderr[-3000:]}"
        return result.stdout


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Buildah, str]]:
    binary = shutil.which("buildah")
    if binary is None or os.geteuid() != 0:
        pytest.skip("buildah not installed or not root (scripts/install-tools.sh installs it as root)")
    if not BASE_TAR.is_file():
        pytest.skip(f"no base rootfs at {BASE_TAR} (scripts/install-tools.sh makes it with mmdebstrap)")
    env = offline_pip_env()
    work = tmp_path_factory.mktemp("buildah")
    buildah = Buildah(binary, work)
    pip_conf = work / "pip.conf"
    pip_conf.write_text("[global]\nno-index = true\nfind-links = /wheels\n", encoding="utf-8")
    try:
        base = buildah("from", "scratch").strip()
        buildah("add", base, BASE_TAR, "/")
        buildah("commit", "--quiet", "--rm", base, "localhost/letta-exporter-base:bookworm")
        buildah(
            "bud",
            "--isolation",
            "chroot",
            "--layers=false",
            "--quiet",
            "--build-arg",
            "BASE_IMAGE=localhost/letta-exporter-base:bookworm",
            "--volume",
            f"{env['PIP_FIND_LINKS']}:/wheels:ro",
            "--volume",
            f"{pip_conf}:/etc/pip.conf:ro",
            "--file",
            DOCKERFILE,
            "--tag",
            "localhost/letta-exporter:test",
            ROOT,
        )
        yield buildah, "localhost/letta-exporter:test"
    finally:
        buildah("rm", "--all", check=False)
        buildah("rmi", "--all", "--force", check=False)
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def container(image: tuple[Buildah, str]) -> Iterator[Callable[..., subprocess.CompletedProcess[str]]]:
    buildah, tag = image
    name = buildah("from", "--pull=false", "--name", "letta-exporter-test", tag).strip()

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            buildah.command("run", "--isolation", "chroot", name, "--", *args),
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )

    yield run
    buildah("rm", name, check=False)


def test_image_config(image: tuple[Buildah, str]) -> None:
    buildah, tag = image
    config = json.loads(buildah("inspect", "--type", "image", tag))["OCIv1"]["config"]
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["letta-exporter"]
    assert config["Cmd"] == ["run"]
    assert "9813/tcp" in config["ExposedPorts"]
    assert config["WorkingDir"] == "/var/lib/letta-exporter"
    assert any(e.startswith("PATH=/opt/letta-exporter/bin:") for e in config["Env"])


def test_image_runs_as_the_unprivileged_user(container: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    result = container("id")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("uid=10001(letta-exporter) gid=10001(letta-exporter)"), result.stdout
    # the state directory (WORKDIR, default --state-path) is the user's and writable
    result = container("sh", "-c", "touch letta-exporter-state.db && stat -c '%u %a' . && pwd")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["10001", "750", "/var/lib/letta-exporter"]


def test_image_has_no_build_tools(container: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    found = container("sh", "-c", "for t in " + " ".join(BUILD_TOOLS) + "; do command -v $t; done; true")
    assert found.stdout.strip() == "", f"build tools in the image: {found.stdout}"
    pip = container("python3", "-c", "import importlib.util as u; print(u.find_spec('pip'))")
    assert pip.stdout.strip() == "None", pip.stdout + pip.stderr


def test_image_entry_point(container: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    result = container("letta-exporter", "--help")
    assert result.returncode == 0, result.stderr
    assert "run" in result.stdout and "check" in result.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def wait_for_log(process: subprocess.Popen[str], message: str, timeout: float) -> list[str]:
    """Read the JSON log lines until one has `message` (the exporter logs it once it listens)."""
    assert process.stdout is not None
    deadline, lines = time.monotonic() + timeout, []
    while (remaining := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([process.stdout], [], [], remaining)
        if not ready:
            break
        line = process.stdout.readline()
        if not line:  # exited
            break
        lines.append(line)
        with contextlib.suppress(ValueError):
            if json.loads(line).get("message") == message:
                return lines
    raise AssertionError(f"no {message!r} log line within {timeout}s: {''.join(lines)[-3000:]}")


def test_image_serves_metrics(image: tuple[Buildah, str]) -> None:
    """The image's entry point, run (chroot isolation shares the host's network, so 127.0.0.1):
    with Letta unreachable it serves /healthz 200, /readyz 503 and letta_up 0."""
    buildah, tag = image
    name = buildah("from", "--pull=false", "--name", "letta-exporter-serve", tag).strip()
    port, dead = free_port(), free_port()
    process = subprocess.Popen(
        buildah.command(
            "run",
            "--isolation",
            "chroot",
            name,
            "--",
            "letta-exporter",
            "run",
            f"--letta-url=http://127.0.0.1:{dead}",
            f"--listen-address=127.0.0.1:{port}",
            "--poll-interval=1s",
            "--log-format=json",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        lines = wait_for_log(process, "letta-exporter started", timeout=60)
        started = json.loads(lines[-1])
        assert started["state"] == "letta-exporter-state.db"  # the default, in the WORKDIR
        base = f"http://127.0.0.1:{port}"
        assert get(base + "/healthz") == (200, "ok\n")
        status, body = get(base + "/readyz")
        assert status == 503, body
        status, body = get(base + "/metrics")
        assert status == 200
        assert re.search(r"^letta_up 0(\.0)?$", body, re.M), body[:2000]
        assert "letta_exporter_build_info{" in body
    finally:
        os.killpg(process.pid, signal.SIGTERM)  # our own process group (start_new_session)
        try:
            output, _ = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
        buildah("rm", name, check=False)
    assert "Traceback" not in output, output[-3000:]
