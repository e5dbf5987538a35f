"""Dashboards as ConfigMaps for the Grafana sidecar: one per dashboards/*.json, nothing else shipped."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from dashboards import generate as dash
from tests.helm.support import (
    CHART,
    FULLNAME,
    NAMESPACE,
    RELEASE,
    RULES,
    Helm,
    Render,
    ValuesFile,
    by_kind,
    dashboard_files,
    packaged,
)


@pytest.fixture
def chart_copy(tmp_path: Path) -> Iterator[Path]:
    """The repository layout (chart with its links, alerts/, dashboards/) copied to a temp dir, with
    two dashboards and non-dashboard files next to them, to exercise the dashboards mechanism
    independent of which dashboards exist right now."""
    shutil.copytree(CHART, tmp_path / "helm" / "letta-exporter", symlinks=True)
    (tmp_path / "alerts").mkdir()
    shutil.copy(RULES, tmp_path / "alerts" / RULES.name)
    dashboards = tmp_path / "dashboards"
    dashboards.mkdir()
    (dashboards / "letta_overview.json").write_text(
        json.dumps({"title": "Letta overview", "uid": "letta-overview", "panels": [], "schemaVersion": 41}, indent=2)
        + "\n",
        encoding="utf-8",
    )
    (dashboards / "by-model.json").write_text('{"title": "By model", "uid": "letta-by-model"}', encoding="utf-8")
    (dashboards / "generate.py").write_text("print('not a dashboard')\n", encoding="utf-8")
    (dashboards / "schema").mkdir()
    (dashboards / "schema" / "dashboard.schema.json").write_text("{}", encoding="utf-8")
    yield tmp_path / "helm" / "letta-exporter"


def test_dashboard_configmaps_for_the_grafana_sidecar(
    render: Render, helm: Helm, chart_copy: Path, tmp_path: Path
) -> None:
    values = {
        "dashboards": {
            "enabled": True,
            "label": "grafana_dashboard",
            "labelValue": "1",
            "folderAnnotation": "grafana_folder",
            "folder": "Letta",
        }
    }
    configmaps = [d for d in by_kind(render(values, chart_copy), "ConfigMap") if "config.yaml" not in d["data"]]
    source = chart_copy.parent.parent / "dashboards"
    assert sorted(cm["metadata"]["name"] for cm in configmaps) == [
        f"{FULLNAME}-dashboard-by-model",
        f"{FULLNAME}-dashboard-letta-overview",
    ]
    for cm in configmaps:
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert cm["metadata"]["annotations"] == {"grafana_folder": "Letta"}
        ((name, text),) = cm["data"].items()
        original = (source / name).read_text(encoding="utf-8")
        assert text.rstrip("\n") == original.rstrip("\n")
        assert json.loads(text) == json.loads(original)
    # label and folder annotation are configurable; no folder -> no annotation
    custom = {"dashboards": {"enabled": True, "label": "my_dash", "labelValue": "yes", "folder": ""}}
    for cm in [d for d in by_kind(render(custom, chart_copy), "ConfigMap") if "config.yaml" not in d["data"]]:
        assert cm["metadata"]["labels"]["my_dash"] == "yes"
        assert "grafana_dashboard" not in cm["metadata"]["labels"]
        assert "annotations" not in cm["metadata"]
    # the generator code and schemas beside the dashboards stay out of the packaged chart
    names = packaged(helm, chart_copy, tmp_path / "pkg")
    assert sorted(n for n in names if "/files/dashboards/" in n) == [
        "letta-exporter/files/dashboards/by-model.json",
        "letta-exporter/files/dashboards/letta_overview.json",
    ]


def test_repository_dashboards_each_become_a_configmap(helm: Helm, values_file: ValuesFile) -> None:
    files = dashboard_files()
    result = helm(
        "template", RELEASE, CHART, "--namespace", NAMESPACE, "-f", values_file({"dashboards": {"enabled": True}})
    )
    if not files:  # nothing to ship: enabling dashboards must fail loudly, not render nothing
        assert result.returncode != 0
        assert "no files/dashboards/*.json" in result.stderr
        return
    assert result.returncode == 0, result.stderr
    docs = [d for d in yaml.safe_load_all(result.stdout) if d and d["kind"] == "ConfigMap"]
    shipped = {name: text for d in docs for name, text in d["data"].items() if name.endswith(".json")}
    assert sorted(shipped) == [path.name for path in files]
    for path in files:
        assert json.loads(shipped[path.name]) == json.loads(path.read_text(encoding="utf-8"))


def test_every_runtimes_dashboards_ship(render: Render) -> None:
    """Each runtime's overview and by-model dashboard (dashboards.generate.RUNTIME_DASHBOARDS) is a
    ConfigMap of its own, named after the file."""
    docs = render({"dashboards": {"enabled": True}})
    configmaps = [d for d in by_kind(docs, "ConfigMap") if "config.yaml" not in d["data"]]
    shipped = {name: cm["metadata"]["name"] for cm in configmaps for name in cm["data"]}
    files = [name for names in dash.RUNTIME_DASHBOARDS.values() for name in names]
    assert sorted(shipped) == sorted(files) == sorted(dash.DASHBOARDS)
    assert shipped == {name: f"{FULLNAME}-dashboard-{name.removesuffix('.json')}" for name in files}
