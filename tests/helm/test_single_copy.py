"""ONE copy of the rules and dashboards: the chart links to alerts/ and dashboards/, and `helm package`
turns the links into byte-identical copies, so the packaged chart needs no repository."""

from __future__ import annotations

import os
import subprocess
import tarfile
from pathlib import Path

from tests.helm.support import (
    CHART,
    DASHBOARDS,
    RULES,
    Helm,
    Render,
    dashboard_files,
    one,
    packaged,
    repository_groups,
)
from tests.support import ROOT


def test_chart_links_to_the_single_copies() -> None:
    rules_link = CHART / "files" / "letta-exporter.rules.yml"
    dashboards_link = CHART / "files" / "dashboards"
    assert rules_link.is_symlink() and dashboards_link.is_symlink()
    assert os.readlink(rules_link) == "../../../alerts/letta-exporter.rules.yml"  # relative: works in any clone
    assert os.readlink(dashboards_link) == "../../../dashboards"
    assert rules_link.resolve() == RULES.resolve()
    assert dashboards_link.resolve() == DASHBOARDS.resolve()
    tracked = subprocess.run(["git", "-C", ROOT, "ls-files", "-s", "helm"], capture_output=True, text=True)
    for line in tracked.stdout.splitlines():  # once committed, git must store them as links (mode 120000)
        if line.endswith(("files/letta-exporter.rules.yml", "files/dashboards")):
            assert line.startswith("120000 "), line


def test_helm_package_resolves_the_links(helm: Helm, tmp_path: Path) -> None:
    """`helm package` follows the links: the .tgz is self-contained with byte-identical copies."""
    files = packaged(helm, CHART, tmp_path)
    assert files["letta-exporter/files/letta-exporter.rules.yml"] == RULES.read_bytes()
    packaged_dashboards = {
        name.rsplit("/", 1)[1]: data
        for name, data in files.items()
        if name.startswith("letta-exporter/files/dashboards/")
    }
    assert packaged_dashboards == {path.name: path.read_bytes() for path in dashboard_files()}


def test_packaged_chart_renders_without_the_repository(helm: Helm, render: Render, tmp_path: Path) -> None:
    """What users install (the .tgz) needs neither alerts/ nor dashboards/ next to it."""
    packaged(helm, CHART, tmp_path)
    (archive,) = tmp_path.glob("letta-exporter-*.tgz")
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "unpacked", filter="data")
    chart = tmp_path / "unpacked" / "letta-exporter"
    assert not any(p.is_symlink() for p in chart.rglob("*"))
    rule = one(render({"prometheusRule": {"enabled": True}}, chart), "PrometheusRule")
    assert rule["spec"] == {"groups": repository_groups()}
    assert archive.stat().st_size < 1_000_000
