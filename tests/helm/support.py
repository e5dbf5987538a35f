"""What the chart tests share: paths, release names, the all-options values and rendered-object lookups."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import pytest
import yaml

from tests.support import ROOT

CHART = ROOT / "helm" / "letta-exporter"
RULES = ROOT / "alerts" / "letta-exporter.rules.yml"
DASHBOARDS = ROOT / "dashboards"
NAMESPACE = "letta"
RELEASE = "rel"
FULLNAME = "rel-letta-exporter"

Values = dict[str, Any]
Docs = list[dict[str, Any]]
ValuesFile = Callable[[Values], Path]


class Helm(Protocol):
    """The `helm` fixture: the real binary with its own cache/config/data homes; any exit code returns."""

    def __call__(self, *args: str | Path) -> subprocess.CompletedProcess[str]: ...


class Render(Protocol):
    """The `render` fixture: `helm template` of `chart` with `values`, the non-empty documents."""

    def __call__(self, values: Values | None = None, chart: Path = CHART, *extra: str) -> Docs: ...


def require_tool(env: str, default: Path, what: str) -> Path:
    """$ENV or the installed default; skips the test (saying how to install it) when it is missing."""
    path = Path(os.environ.get(env) or default)
    if not (path.exists() and os.access(path, os.X_OK)):
        pytest.skip(f"{what} not installed at {path} (run scripts/install-tools.sh or set ${env})")
    return path


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARDS.glob("*.json"))


def all_options() -> Values:
    """Every optional object and knob of the chart switched on."""
    values: Values = {
        "image": {
            "repository": "registry.example.test/letta/letta-exporter",
            "tag": "0.1.0",
            "digest": "sha256:" + "ab" * 32,
            "pullPolicy": "Always",
        },
        "imagePullSecrets": [{"name": "regcred"}],
        "config": {
            "letta_url": "https://letta.letta.svc:8283",
            "letta_project": "default-project",
            "poll_interval": "10s",
            "backfill": "1h",
            "stuck_after": "10m",
            "expire_after": "12h",
            "max_catchup": "6h",
            "step_timings": False,
            "request_timeout": "5s",
            "max_concurrency": 16,
            "page_size": 200,
            "log_level": "debug",
            "log_format": "json",
        },
        "apiKey": {"value": "s3cret-key", "secretKey": "letta-api-key"},
        "otel": {
            "endpoint": "http://otel-collector.observability:4317",
            "protocol": "grpc",
            "serviceName": "letta-exporter-prod",
            "resourceAttributes": {"deployment.environment": "prod"},
        },
        "extraEnv": [
            {
                "name": "OTEL_EXPORTER_OTLP_HEADERS",
                "valueFrom": {"secretKeyRef": {"name": "otlp", "key": "headers"}},
            }
        ],
        "envFrom": [{"configMapRef": {"name": "letta-extra", "optional": True}}],
        "extraArgs": ["--log-level=debug"],
        "webConfig": {"existingSecret": "letta-exporter-web", "tls": True, "basicAuth": True, "caKey": "ca.crt"},
        "containerPort": 9900,
        "listenHost": "[::]",
        "service": {"type": "ClusterIP", "port": 9813, "annotations": {"a": "b"}, "labels": {"team": "ai"}},
        "persistence": {
            "enabled": True,
            "storageClass": "fast",
            "accessModes": ["ReadWriteOncePod"],
            "size": "2Gi",
            "annotations": {"helm.sh/resource-policy": "keep"},
        },
        "serviceAccount": {
            "create": True,
            "name": "letta-exporter-sa",
            "annotations": {"example.com/owner": "ai-platform"},
        },
        "podAnnotations": {"example.com/p": "1"},
        "podLabels": {"team": "ai"},
        "priorityClassName": "observability",
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "obs", "effect": "NoSchedule"}],
        "affinity": {
            "nodeAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 1,
                        "preference": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["obs"]}]},
                    }
                ]
            }
        },
        "extraVolumes": [{"name": "ca", "configMap": {"name": "letta-ca"}}],
        "extraVolumeMounts": [{"name": "ca", "mountPath": "/etc/ssl/letta", "readOnly": True}],
        "serviceMonitor": {
            "enabled": True,
            "namespace": "monitoring",
            "labels": {"release": "kube-prometheus-stack"},
            "annotations": {"note": "x"},
            "interval": "15s",
            "scrapeTimeout": "5s",
            "honorLabels": True,
            "relabelings": [
                {"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node", "action": "replace"}
            ],
            "metricRelabelings": [
                {
                    "sourceLabels": ["__name__"],
                    "regex": "letta_exporter_api_request_duration_seconds_bucket",
                    "action": "drop",
                }
            ],
            "tlsConfig": {
                "ca": {"secret": {"name": "letta-exporter-scrape", "key": "ca.crt"}},
                "cert": {"secret": {"name": "letta-exporter-scrape", "key": "tls.crt"}},
                "keySecret": {"name": "letta-exporter-scrape", "key": "tls.key"},
                "serverName": f"{FULLNAME}.{NAMESPACE}.svc",
                "insecureSkipVerify": False,
                "minVersion": "TLS12",
                "maxVersion": "TLS13",
            },
            "basicAuth": {
                "username": {"name": "letta-exporter-scrape", "key": "username"},
                "password": {"name": "letta-exporter-scrape", "key": "password", "optional": False},
            },
        },
        "prometheusRule": {
            "enabled": True,
            "namespace": "monitoring",
            "labels": {"release": "kube-prometheus-stack"},
            "annotations": {"note": "x"},
            "additionalRuleLabels": {"team": "ai-platform"},
        },
        "networkPolicy": {
            "enabled": True,
            "egress": {
                "enabled": True,
                "lettaTo": [{"podSelector": {"matchLabels": {"app": "letta"}}}],
                "extraRules": [
                    {
                        "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "obs"}}}],
                        "ports": [{"port": 4317, "protocol": "TCP"}],
                    }
                ],
            },
        },
    }
    if dashboard_files():  # dashboards.enabled with no dashboards is an error (test_dashboard_configmaps.py)
        values["dashboards"] = {
            "enabled": True,
            "namespace": "monitoring",
            "folder": "Letta agents",
            "labels": {"extra": "yes"},
            "annotations": {"note": "x"},
        }
    return values


def by_kind(docs: Docs, kind: str) -> Docs:
    return [doc for doc in docs if doc["kind"] == kind]


def one(docs: Docs, kind: str) -> dict[str, Any]:
    found = by_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {[d['metadata']['name'] for d in found]}"
    return found[0]


def container(docs: Docs) -> dict[str, Any]:
    """The Deployment's only container."""
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert len(pod["containers"]) == 1
    main: dict[str, Any] = pod["containers"][0]
    return main


def repository_groups() -> list[dict[str, Any]]:
    """The rule groups of the repository's rules file, the one copy the PrometheusRule must hold."""
    groups: list[dict[str, Any]] = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    assert groups, f"{RULES} has no groups"
    return groups


def packaged(helm: Helm, chart: Path, out: Path) -> dict[str, bytes]:
    """`helm package` of `chart` into `out`: the archive's regular files by name."""
    result = helm("package", chart, "--destination", out)
    assert result.returncode == 0, result.stderr
    (archive,) = out.glob("letta-exporter-*.tgz")
    with tarfile.open(archive) as tar:
        return {
            m.name: data.read() for m in tar.getmembers() if m.isfile() and (data := tar.extractfile(m)) is not None
        }


def notes(render: Render, tmp_path: Path, values: Values) -> str:
    """NOTES.txt as `helm install` would print it (install needs a cluster; this renders the same
    text through `tpl` in a copy of the chart)."""
    chart = tmp_path / "letta-exporter"
    if not chart.exists():
        shutil.copytree(CHART, chart, symlinks=False)
        shutil.copy(chart / "templates" / "NOTES.txt", chart / "files" / "NOTES.txt")
        (chart / "templates" / "notes-rendered.yaml").write_text(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n"
            '  NOTES.txt: {{ tpl (.Files.Get "files/NOTES.txt") . | toJson }}\n',
            encoding="utf-8",
        )
    docs = render(values, chart, "--show-only", "templates/notes-rendered.yaml")
    text: str = docs[0]["data"]["NOTES.txt"]
    return text
