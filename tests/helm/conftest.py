"""Session fixtures of the chart tests: one helm binary, values files, and the two renderings most tests read."""

from __future__ import annotations

import itertools
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.helm.support import (
    CHART,
    NAMESPACE,
    RELEASE,
    Docs,
    Helm,
    Render,
    Values,
    ValuesFile,
    all_options,
    require_tool,
)
from tests.support import ROOT


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    binary = require_tool("HELM", ROOT / ".tools" / "bin" / "helm", "helm")
    home = tmp_path_factory.mktemp("helm-home")
    env = {
        **os.environ,
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }

    def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(binary), *map(str, args)], capture_output=True, text=True, env=env, check=False, timeout=120
        )

    return run


@pytest.fixture(scope="session")
def values_file(tmp_path_factory: pytest.TempPathFactory) -> ValuesFile:
    directory = tmp_path_factory.mktemp("values")
    counter = itertools.count()

    def write(values: Values) -> Path:
        path = directory / f"values-{next(counter)}.yaml"
        path.write_text(yaml.safe_dump(values), encoding="utf-8")
        return path

    return write


@pytest.fixture(scope="session")
def render(helm: Helm, values_file: ValuesFile) -> Render:
    def run(values: Values | None = None, chart: Path = CHART, *extra: str) -> Docs:
        args: list[str | Path] = ["template", RELEASE, chart, "--namespace", NAMESPACE, *extra]
        if values is not None:
            args += ["-f", values_file(values)]
        result = helm(*args)
        assert result.returncode == 0, result.stderr
        return [doc for doc in yaml.safe_load_all(result.stdout) if doc]

    return run


@pytest.fixture(scope="session")
def default_docs(render: Render) -> Docs:
    return render()


@pytest.fixture(scope="session")
def full_docs(render: Render) -> Docs:
    return render(all_options())
