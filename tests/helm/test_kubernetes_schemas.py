"""Rendered objects against the Kubernetes JSON schemas (strict) and the prometheus-operator CRD schemas."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helm.support import Docs, one
from tests.support import ROOT

# The chart's kubeVersion is >=1.25; kubernetes-validate bundles 1.25 .. 1.37.
KUBE_VERSIONS = ("1.25.0", "1.37.0")
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}
CRD_VALIDATOR = """
import { readFileSync } from "node:fs";
import * as v1 from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1";
const errors = [];
for (const doc of JSON.parse(readFileSync(0, "utf8"))) {
  const Model = v1[doc.kind];
  if (doc.apiVersion !== "monitoring.coreos.com/v1" || typeof Model !== "function") {
    errors.push(`${doc.apiVersion} ${doc.kind}: no schema`);
    continue;
  }
  try { new Model(doc).validate(); } catch (e) { errors.push(`${doc.kind}/${doc.metadata.name}: ${e.message}`); }
}
process.stdout.write(JSON.stringify(errors));
"""


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_defaults_match_kubernetes_schemas(default_docs: Docs, version: str) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    for doc in default_docs:
        kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_all_options_match_kubernetes_schemas(full_docs: Docs, version: str) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    core = [doc for doc in full_docs if doc["kind"] not in CRD_KINDS]
    assert len(core) >= 8
    for doc in core:
        kubernetes_validate.validate(doc, version, strict=True)


def test_kubernetes_validation_is_strict(full_docs: Docs) -> None:
    """The schema check is real: a misspelt field in the rendered Deployment fails it."""
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    deployment = json.loads(json.dumps(one(full_docs, "Deployment")))
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError, match="imagePullPolcy"):
        kubernetes_validate.validate(deployment, KUBE_VERSIONS[-1], strict=True)


@pytest.fixture(scope="session")
def crd_errors() -> Callable[[Docs], list[str]]:
    """Validates prometheus-operator objects with the npm package's compiled schemas; returns the errors."""
    npm_dir = Path(os.environ.get("CRD_SCHEMAS_DIR") or ROOT / ".tools" / "npm" / "prometheus-operator")
    package = npm_dir / "node_modules" / "@kubernetes-models" / "prometheus-operator" / "package.json"
    node = shutil.which("node")
    if node is None or not package.exists():
        pytest.skip(f"node or npm @kubernetes-models/prometheus-operator not installed in {npm_dir}")

    def validate(docs: Docs) -> list[str]:
        result = subprocess.run(
            [node, "--input-type=module", "-e", CRD_VALIDATOR],
            input=json.dumps(docs),
            capture_output=True,
            text=True,
            cwd=npm_dir,  # the bare import resolves through npm_dir/node_modules
            check=False,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        errors: list[str] = json.loads(result.stdout)
        return errors

    return validate


def test_crds_match_prometheus_operator_schemas(full_docs: Docs, crd_errors: Callable[[Docs], list[str]]) -> None:
    crds = [doc for doc in full_docs if doc["kind"] in CRD_KINDS]
    assert {doc["kind"] for doc in crds} == CRD_KINDS
    assert crd_errors(crds) == []


def test_crd_validation_is_real(full_docs: Docs, crd_errors: Callable[[Docs], list[str]]) -> None:
    monitor = json.loads(json.dumps(one(full_docs, "ServiceMonitor")))
    monitor["spec"]["endpoints"][0]["interval"] = "thirty"
    rule = json.loads(json.dumps(one(full_docs, "PrometheusRule")))
    del rule["spec"]["groups"][0]["rules"][0]["expr"]
    errors = crd_errors([monitor, rule])
    assert len(errors) == 2, errors
    assert "interval" in errors[0] and "expr" in errors[1]
