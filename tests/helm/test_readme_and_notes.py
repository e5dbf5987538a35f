"""The chart's README documents every value, and NOTES.txt tells the installer what is (not) set up."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from tests.helm.support import CHART, FULLNAME, NAMESPACE, Render, notes

# Values whose content is Kubernetes' own (documented as one row each, not key by key).
OPAQUE = {"podSecurityContext", "securityContext", "resources", "livenessProbe", "readinessProbe"}


def value_keys(values: dict[str, Any], prefix: str = "") -> set[str]:
    keys = set()
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and key not in OPAQUE:
            keys |= value_keys(value, path + ".")
        else:
            keys.add(path)
    return keys


def test_readme_documents_every_value() -> None:
    readme = (CHART / "README.md").read_text(encoding="utf-8")
    table = set(re.findall(r"^\| `([\w.]+)` \|", readme, re.M))
    defaults = value_keys(yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8")))
    assert defaults - table == set(), "values missing from the README table"
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    config_keys = {f"config.{key}" for key in schema["properties"]["config"]["properties"]}
    assert table - defaults - config_keys == set(), "README rows for values that do not exist"
    assert config_keys <= table


def test_notes(render: Render, tmp_path: Path) -> None:
    text = notes(render, tmp_path, {})
    assert f"http://{FULLNAME}.{NAMESPACE}.svc:9813/metrics" in text
    assert f"kubectl -n {NAMESPACE} port-forward service/{FULLNAME} 9813:9813" in text
    assert "no API key configured" in text
    assert "State is on an emptyDir" in text
    assert "No ServiceMonitor" in text
    text = notes(
        render,
        tmp_path,
        {
            "apiKey": {"existingSecret": "creds"},
            "persistence": {"enabled": True},
            "serviceMonitor": {"enabled": True},
            "prometheusRule": {"enabled": True, "labels": {"release": "kps"}},
        },
    )
    assert "API key" not in text and "emptyDir" not in text
    assert "set\n  serviceMonitor.labels.release=" in text  # the missing release label is pointed out
    assert "set prometheusRule.labels.release" not in text
