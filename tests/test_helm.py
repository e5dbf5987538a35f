"""The Helm chart in helm/letta-exporter, rendered by a real helm binary and validated.

* `helm lint --strict` with the defaults and with every option enabled;
* `helm template` output checked against the Kubernetes JSON schemas (kubernetes-validate, strict:
  unknown fields fail) for the oldest and newest Kubernetes version the chart supports, and the
  prometheus-operator kinds against the CRD schemas of npm `@kubernetes-models/prometheus-operator`;
* bad values rejected by values.schema.json, with a message that names the setting;
* protected endpoints (`webConfig`): the Secret mounted read-only and passed as `--web-config-file`,
  probes, Service and ServiceMonitor switched to HTTPS, and the `helm test` pod's script run against
  a real exporter HTTP server with TLS and basic auth (certificates by the openssl CLI);
* the PrometheusRule holds exactly the groups of alerts/letta-exporter.rules.yml, the dashboard
  ConfigMaps exactly dashboards/*.json, and the chart keeps ONE copy of both (symlinks, resolved by
  `helm package`).

Tools come from scripts/install-tools.sh: helm from $HELM or .tools/bin/helm, the npm package from
$CRD_SCHEMAS_DIR or .tools/npm/prometheus-operator, promtool from $PROMTOOL or .tools/bin/promtool. A test skips, saying
which, only when its tool is not installed. Nothing here uses the network.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "letta-exporter"
RULES = ROOT / "alerts" / "letta-exporter.rules.yml"
DASHBOARDS = ROOT / "dashboards"
NAMESPACE = "letta"
RELEASE = "rel"
FULLNAME = "rel-letta-exporter"
# The chart's kubeVersion is >=1.25; kubernetes-validate bundles 1.25 .. 1.37.
KUBE_VERSIONS = ("1.25.0", "1.37.0")
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}

Docs = list[dict[str, Any]]


def _tool(env: str, default: Path, what: str) -> Path:
    path = Path(os.environ.get(env) or default)
    if not (path.exists() and os.access(path, os.X_OK)):
        pytest.skip(f"{what} not installed at {path} (run scripts/install-tools.sh or set ${env})")
    return path


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., subprocess.CompletedProcess[str]]:
    binary = _tool("HELM", ROOT / ".tools" / "bin" / "helm", "helm")
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


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARDS.glob("*.json"))


def all_options() -> dict[str, Any]:
    """Every optional object and knob of the chart switched on."""
    values: dict[str, Any] = {
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
            "concurrency": 2,
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
    if dashboard_files():  # dashboards.enabled with no dashboards is an error (tested below)
        values["dashboards"] = {
            "enabled": True,
            "namespace": "monitoring",
            "folder": "Letta agents",
            "labels": {"extra": "yes"},
            "annotations": {"note": "x"},
        }
    return values


@pytest.fixture(scope="session")
def values_file(tmp_path_factory: pytest.TempPathFactory) -> Callable[[dict[str, Any]], Path]:
    directory = tmp_path_factory.mktemp("values")
    counter = iter(range(1_000_000))

    def write(values: dict[str, Any]) -> Path:
        path = directory / f"values-{next(counter)}.yaml"
        path.write_text(yaml.safe_dump(values), encoding="utf-8")
        return path

    return write


@pytest.fixture(scope="session")
def render(
    helm: Callable[..., subprocess.CompletedProcess[str]], values_file: Callable[[dict[str, Any]], Path]
) -> Callable[..., Docs]:
    def run(values: dict[str, Any] | None = None, chart: Path = CHART, *extra: str) -> Docs:
        args: list[str | Path] = ["template", RELEASE, chart, "--namespace", NAMESPACE, *extra]
        if values is not None:
            args += ["-f", values_file(values)]
        result = helm(*args)
        assert result.returncode == 0, result.stderr
        return [doc for doc in yaml.safe_load_all(result.stdout) if doc]

    return run


@pytest.fixture(scope="session")
def default_docs(render: Callable[..., Docs]) -> Docs:
    return render()


@pytest.fixture(scope="session")
def full_docs(render: Callable[..., Docs]) -> Docs:
    return render(all_options())


def by_kind(docs: Docs, kind: str) -> Docs:
    return [doc for doc in docs if doc["kind"] == kind]


def one(docs: Docs, kind: str) -> dict[str, Any]:
    found = by_kind(docs, kind)
    assert len(found) == 1, f"expected one {kind}, got {[d['metadata']['name'] for d in found]}"
    return found[0]


def container(docs: Docs) -> dict[str, Any]:
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert len(pod["containers"]) == 1
    return pod["containers"][0]


# --- lint -----------------------------------------------------------------------------------------


def test_lint_strict_defaults(helm: Callable[..., subprocess.CompletedProcess[str]]) -> None:
    result = helm("lint", "--strict", CHART)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


def test_lint_strict_all_options(
    helm: Callable[..., subprocess.CompletedProcess[str]], values_file: Callable[[dict[str, Any]], Path]
) -> None:
    result = helm("lint", "--strict", CHART, "-f", values_file(all_options()))
    assert result.returncode == 0, result.stdout + result.stderr


def test_lint_strict_catches_a_broken_template(
    helm: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    """The lint gate is real: the same chart with one undefined value path fails it."""
    broken = tmp_path / "letta-exporter"
    shutil.copytree(CHART, broken, symlinks=False)
    service = broken / "templates" / "service.yaml"
    service.write_text(
        service.read_text(encoding="utf-8") + "  clusterIP: {{ .Values.nope.deeper }}\n", encoding="utf-8"
    )
    result = helm("lint", "--strict", broken)
    assert result.returncode != 0
    assert "service.yaml" in result.stdout + result.stderr


# --- defaults -------------------------------------------------------------------------------------


def test_defaults_render_the_minimal_set(default_docs: Docs) -> None:
    kinds = sorted(doc["kind"] for doc in default_docs)
    assert kinds == ["ConfigMap", "Deployment", "Pod", "Service", "ServiceAccount"]
    assert all(doc["metadata"]["namespace"] == NAMESPACE for doc in default_docs)


def test_deployment_is_one_poller_with_probes_and_state(default_docs: Docs) -> None:
    deployment = one(default_docs, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    main = container(default_docs)
    assert main["args"] == [
        "run",
        "--config=/etc/letta-exporter/config.yaml",
        "--listen-address=0.0.0.0:9813",
        "--state-path=/var/lib/letta-exporter/state.db",
    ]
    assert main["ports"] == [{"name": "http-metrics", "containerPort": 9813, "protocol": "TCP"}]
    assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http-metrics"}
    assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http-metrics"}
    mounts = {m["name"]: m["mountPath"] for m in main["volumeMounts"]}
    assert mounts == {"config": "/etc/letta-exporter", "state": "/var/lib/letta-exporter", "tmp": "/tmp"}
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert "emptyDir" in volumes["state"]
    assert volumes["config"]["configMap"]["name"] == FULLNAME
    assert "LETTA_API_KEY" not in {e["name"] for e in main["env"]}
    assert main["resources"]["requests"] and main["resources"]["limits"]["memory"]


def test_security_context_is_hardened(default_docs: Docs, full_docs: Docs) -> None:
    for docs in (default_docs, full_docs):
        pod = one(docs, "Deployment")["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        ctx = container(docs)["securityContext"]
        assert ctx["runAsNonRoot"] is True and ctx["runAsUser"] != 0
        assert ctx["allowPrivilegeEscalation"] is False
        assert ctx["privileged"] is False
        assert ctx["readOnlyRootFilesystem"] is True
        assert ctx["capabilities"] == {"drop": ["ALL"]}
        assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}


def test_config_map_holds_the_exporter_settings(default_docs: Docs) -> None:
    config = yaml.safe_load(one(default_docs, "ConfigMap")["data"]["config.yaml"])
    assert config == {
        "letta_url": "http://letta:8283",
        "poll_interval": "15s",
        "backfill": "0s",
        "stuck_after": "15m",
        "expire_after": "24h",
        "step_timings": True,
        "log_level": "info",
        "log_format": "json",
    }  # the empty letta_project is left out, so the exporter's default applies


def test_config_map_is_accepted_by_the_exporter(full_docs: Docs, tmp_path: Path) -> None:
    """The rendered config.yaml plus the chart's flags load through the exporter's own parser."""
    config_module = pytest.importorskip("exporter.config")
    path = tmp_path / "config.yaml"
    configmaps = [d for d in by_kind(full_docs, "ConfigMap") if "config.yaml" in d["data"]]
    path.write_text(configmaps[0]["data"]["config.yaml"], encoding="utf-8")
    parser = argparse.ArgumentParser()
    config_module.add_arguments(parser)
    chart_args = [a for a in container(full_docs)["args"][1:] if not a.startswith("--config=")]
    args = parser.parse_args([f"--config={path}", *chart_args])
    settings = config_module.load(args, environ={"LETTA_API_KEY": "k"})
    assert settings.letta_url == "https://letta.letta.svc:8283"
    assert settings.poll_interval == 10.0
    assert settings.step_timings is False
    assert settings.state_path == "/var/lib/letta-exporter/state.db"
    assert settings.listen_address == "[::]:9900"
    assert settings.web_config_file == "/etc/letta-exporter-web/web-config.yml"


def test_service_selects_the_pod_and_keeps_not_ready_endpoints(default_docs: Docs) -> None:
    service = one(default_docs, "Service")
    labels = one(default_docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "http-metrics"
    assert service["spec"]["publishNotReadyAddresses"] is True


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_defaults_match_kubernetes_schemas(default_docs: Docs, version: str) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    for doc in default_docs:
        kubernetes_validate.validate(doc, version, strict=True)


# --- every option ---------------------------------------------------------------------------------


def test_all_options_render_every_object(full_docs: Docs) -> None:
    kinds = {doc["kind"] for doc in full_docs}
    assert kinds >= {
        "ConfigMap",
        "Deployment",
        "NetworkPolicy",
        "PersistentVolumeClaim",
        "Pod",
        "PrometheusRule",
        "Secret",
        "Service",
        "ServiceAccount",
        "ServiceMonitor",
    }
    secret = one(full_docs, "Secret")
    main = container(full_docs)
    env = {e["name"]: e for e in main["env"]}
    assert env["LETTA_API_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": secret["metadata"]["name"],
        "key": "letta-api-key",
    }
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"]["value"] == "http://otel-collector.observability:4317"
    assert "deployment.environment=prod" in env["OTEL_RESOURCE_ATTRIBUTES"]["value"]
    assert "OTEL_EXPORTER_OTLP_HEADERS" in env
    assert main["image"] == "registry.example.test/letta/letta-exporter:0.1.0@sha256:" + "ab" * 32
    pod = one(full_docs, "Deployment")["spec"]["template"]
    assert pod["metadata"]["annotations"]["checksum/secret"]
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["state"] == {"name": "state", "persistentVolumeClaim": {"claimName": FULLNAME}}
    pvc = one(full_docs, "PersistentVolumeClaim")
    assert pvc["spec"]["storageClassName"] == "fast"
    assert pvc["spec"]["resources"]["requests"]["storage"] == "2Gi"


def test_service_monitor(full_docs: Docs) -> None:
    monitor = one(full_docs, "ServiceMonitor")
    assert monitor["metadata"]["namespace"] == "monitoring"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    spec = monitor["spec"]
    assert spec["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert spec["selector"]["matchLabels"].items() <= one(full_docs, "Service")["metadata"]["labels"].items()
    assert spec["jobLabel"] == "app.kubernetes.io/name"  # -> job="letta-exporter"
    (endpoint,) = spec["endpoints"]
    assert endpoint["port"] == "http-metrics" and endpoint["path"] == "/metrics"
    assert (endpoint["interval"], endpoint["scrapeTimeout"]) == ("15s", "5s")
    assert endpoint["relabelings"][0]["targetLabel"] == "node"
    assert endpoint["metricRelabelings"][0]["action"] == "drop"
    assert endpoint["scheme"] == "https"  # webConfig.tls
    assert endpoint["tlsConfig"] == all_options()["serviceMonitor"]["tlsConfig"]
    assert endpoint["basicAuth"] == all_options()["serviceMonitor"]["basicAuth"]


def test_network_policy(full_docs: Docs) -> None:
    spec = one(full_docs, "NetworkPolicy")["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert spec["ingress"][0]["ports"] == [{"port": "http-metrics", "protocol": "TCP"}]
    assert spec["ingress"][0]["from"][0]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "prometheus"}
    egress_ports = [rule["ports"] for rule in spec["egress"]]
    assert [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}] in egress_ports
    assert [{"port": 8283, "protocol": "TCP"}] in egress_ports
    assert [{"port": 4317, "protocol": "TCP"}] in egress_ports


# --- protected endpoints (webConfig) -------------------------------------------------------------

WEB_DIR = "/etc/letta-exporter-web"


def test_web_config_secret_is_mounted_read_only_and_passed(render: Callable[..., Docs]) -> None:
    docs = render({"webConfig": {"existingSecret": "letta-exporter-web", "basicAuth": True}})
    main = container(docs)
    assert main["args"][-1] == f"--web-config-file={WEB_DIR}/web-config.yml"
    assert sum(a.startswith("--web-config-file") for a in main["args"]) == 1
    (mount,) = [m for m in main["volumeMounts"] if m["name"] == "web-config"]
    assert mount == {"name": "web-config", "mountPath": WEB_DIR, "readOnly": True}
    # its own directory, not inside the read-only config volume (no mount point could be made there)
    assert not any(m["mountPath"] == "/etc/letta-exporter" for m in main["volumeMounts"] if m["name"] == "web-config")
    volumes = {v["name"]: v for v in one(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["web-config"]["secret"] == {"secretName": "letta-exporter-web", "defaultMode": 0o440}
    # basic auth alone: everything stays plain HTTP
    assert "scheme" not in main["livenessProbe"]["httpGet"]
    assert "scheme" not in main["readinessProbe"]["httpGet"]
    assert one(docs, "Service")["spec"]["ports"][0]["appProtocol"] == "http"


def test_no_web_config_by_default(default_docs: Docs) -> None:
    main = container(default_docs)
    assert not any("web-config" in a for a in main["args"])
    assert "web-config" not in {m["name"] for m in main["volumeMounts"]}
    assert one(default_docs, "Service")["spec"]["ports"][0]["appProtocol"] == "http"
    assert "volumes" not in one(default_docs, "Pod")["spec"]


def test_tls_switches_probes_service_monitor_and_helm_test_to_https(render: Callable[..., Docs]) -> None:
    docs = render(
        {
            "webConfig": {"existingSecret": "web", "tls": True},
            "serviceMonitor": {"enabled": True, "tlsConfig": {"insecureSkipVerify": True}},
        }
    )
    main = container(docs)
    assert main["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http-metrics", "scheme": "HTTPS"}
    assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http-metrics", "scheme": "HTTPS"}
    assert one(docs, "Service")["spec"]["ports"][0]["appProtocol"] == "https"
    (endpoint,) = one(docs, "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["scheme"] == "https"
    assert endpoint["tlsConfig"] == {"insecureSkipVerify": True}
    assert "basicAuth" not in endpoint
    script = one(docs, "Pod")["spec"]["containers"][0]["command"][2]
    assert f'url = "https://{FULLNAME}:9813"' in script
    assert "ssl.CERT_NONE" in script  # no caKey: encrypted but not verified
    assert "volumes" not in one(docs, "Pod")["spec"]


def test_helm_test_pod_mounts_only_the_ca(full_docs: Docs) -> None:
    pod = one(full_docs, "Pod")["spec"]
    (volume,) = pod["volumes"]
    assert volume["secret"]["secretName"] == "letta-exporter-web"
    assert volume["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}]  # not the server's key
    (mount,) = pod["containers"][0]["volumeMounts"]
    assert mount == {"name": volume["name"], "mountPath": WEB_DIR, "readOnly": True}
    script = pod["containers"][0]["command"][2]
    assert f'cafile="{WEB_DIR}/ca.crt"' in script and "CERT_NONE" not in script


def make_certificate(directory: Path, name: str) -> None:
    """A self-signed certificate (its own CA) and key, by the real openssl CLI."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not installed")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
         "-keyout", f"{name}.key", "-out", f"{name}.crt"],
        cwd=directory, check=True, capture_output=True, timeout=60,
    )  # fmt: skip


@pytest.fixture(scope="module")
def web_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("web")
    make_certificate(directory, "server")
    make_certificate(directory, "other")
    return directory


def run_helm_test_pod(
    render: Callable[..., Docs], web_dir: Path, values: dict[str, Any], web_config: str | None
) -> subprocess.CompletedProcess[str]:
    """Run the `helm test` pod's script against a real exporter HTTP server (in this process) that
    is protected by `web_config`, with the Service name and the mount pointed at the local ones."""
    server_module = pytest.importorskip("exporter.server")
    webconfig = pytest.importorskip("exporter.webconfig")
    prometheus_client = pytest.importorskip("prometheus_client")
    script = one(render(values), "Pod")["spec"]["containers"][0]["command"][2]
    registry = prometheus_client.CollectorRegistry()
    prometheus_client.Info("letta_exporter_build", "build", registry=registry).info({"version": "test"})
    web = None
    if web_config is not None:
        (web_dir / "web-config.yml").write_text(web_config, encoding="utf-8")
        web = webconfig.load(str(web_dir / "web-config.yml"))
    status = server_module.PollStatus(poll_interval=15.0)
    server = server_module.MetricsServer(registry, status, "http://letta:8283", "127.0.0.1", 0, web=web)
    server.start()
    try:
        script = script.replace(f"{FULLNAME}:9813", f"127.0.0.1:{server.port}").replace(WEB_DIR, str(web_dir))
        return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=60)
    finally:
        server.close()


HASH = "$2y$04$" + "a" * 53  # a bcrypt-shaped hash: no password matches, which is all the test needs
TLS_ONLY = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
TLS_AND_AUTH = TLS_ONLY + f"basic_auth_users:\n  prometheus: '{HASH}'\n"


@pytest.mark.parametrize(
    ("web", "web_config", "error"),
    [
        ({}, None, None),
        ({"tls": True}, TLS_ONLY, None),  # unverified TLS, reads /metrics
        ({"tls": True, "caKey": "server.crt"}, TLS_ONLY, None),  # verified against the CA
        ({"tls": True, "caKey": "other.crt"}, TLS_ONLY, "CERTIFICATE_VERIFY_FAILED"),  # not signed by the CA
        ({"tls": True, "basicAuth": True, "caKey": "server.crt"}, TLS_AND_AUTH, None),  # /metrics: 401
        ({"tls": True, "basicAuth": True}, TLS_ONLY, "/metrics answered without credentials"),
        ({"tls": True}, TLS_AND_AUTH, "HTTP Error 401"),  # basic auth the chart was not told about
        ({}, TLS_ONLY, "Traceback"),  # plain HTTP against a TLS server: the first request fails
    ],
    ids=["http", "tls", "tls-ca", "tls-wrong-ca", "tls-basic-auth", "not-protected", "unexpected-auth", "no-tls"],
)
def test_helm_test_pod_against_a_protected_exporter(
    render: Callable[..., Docs], web_dir: Path, web: dict[str, Any], web_config: str | None, error: str | None
) -> None:
    values = {"webConfig": {"existingSecret": "web", **web}} if web else {}
    result = run_helm_test_pod(render, web_dir, values, web_config)
    output = result.stdout + result.stderr
    if error is not None:
        assert result.returncode != 0 and error in output, output
    else:
        assert result.returncode == 0, output
        assert "/healthz 200" in result.stdout
        assert ("/metrics 401" if web.get("basicAuth") else "/metrics 200") in result.stdout


def test_notes_for_protected_endpoints(render: Callable[..., Docs], tmp_path: Path) -> None:
    values = {
        "webConfig": {"existingSecret": "web", "tls": True, "basicAuth": True},
        "serviceMonitor": {"enabled": True},
    }
    text = notes(render, tmp_path, values)
    assert f"https://{FULLNAME}.{NAMESPACE}.svc:9813/metrics" in text
    assert "Protected endpoints: web config from Secret web" in text
    assert "served over TLS, /metrics behind basic auth" in text
    assert "curl -sk https://localhost:9813/metrics -u" in text
    assert "serviceMonitor.tlsConfig is empty" in text
    assert "serviceMonitor.basicAuth is empty" in text
    assert "rollout restart" in text
    text = notes(render, tmp_path, all_options())
    assert "Protected endpoints" in text and "is empty" not in text
    assert "Protected endpoints" not in notes(render, tmp_path, {})


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


# --- prometheus-operator CRDs -----------------------------------------------------------------------

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


@pytest.fixture(scope="session")
def crd_errors() -> Callable[[Docs], list[str]]:
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


# --- PrometheusRule = the repository's rules file ----------------------------------------------------


def repository_groups() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    assert groups, f"{RULES} has no groups"
    return groups  # type: ignore[no-any-return]


def test_prometheus_rule_is_exactly_the_rules_file(render: Callable[..., Docs]) -> None:
    rule = one(render({"prometheusRule": {"enabled": True}}), "PrometheusRule")
    assert rule["metadata"]["namespace"] == NAMESPACE
    assert rule["spec"] == {"groups": repository_groups()}


def test_additional_rule_labels_only_add_labels(full_docs: Docs) -> None:
    rendered = one(full_docs, "PrometheusRule")["spec"]["groups"]
    expected = repository_groups()
    alerts = 0
    for group, original in zip(rendered, expected, strict=True):
        for rule, source in zip(group["rules"], original["rules"], strict=True):
            if "alert" in source:
                alerts += 1
                assert rule["labels"] == {**source.get("labels", {}), "team": "ai-platform"}
                rule = {k: v for k, v in rule.items() if k != "labels"}
                source = {k: v for k, v in source.items() if k != "labels"}
            assert rule == source
    assert alerts >= 1


def test_rendered_rules_pass_promtool(render: Callable[..., Docs], tmp_path: Path) -> None:
    promtool = _tool("PROMTOOL", ROOT / ".tools" / "bin" / "promtool", "promtool")
    spec = one(render({"prometheusRule": {"enabled": True}}), "PrometheusRule")["spec"]
    path = tmp_path / "rendered.rules.yml"
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    result = subprocess.run([promtool, "check", "rules", path], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


# --- ONE copy of the rules and dashboards ------------------------------------------------------------


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


def packaged(helm: Callable[..., subprocess.CompletedProcess[str]], chart: Path, out: Path) -> dict[str, bytes]:
    result = helm("package", chart, "--destination", out)
    assert result.returncode == 0, result.stderr
    (archive,) = out.glob("letta-exporter-*.tgz")
    with tarfile.open(archive) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


def test_helm_package_resolves_the_links(helm: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path) -> None:
    """`helm package` follows the links: the .tgz is self-contained with byte-identical copies."""
    files = packaged(helm, CHART, tmp_path)
    assert files["letta-exporter/files/letta-exporter.rules.yml"] == RULES.read_bytes()
    packaged_dashboards = {
        name.rsplit("/", 1)[1]: data
        for name, data in files.items()
        if name.startswith("letta-exporter/files/dashboards/")
    }
    assert packaged_dashboards == {path.name: path.read_bytes() for path in dashboard_files()}


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
    render: Callable[..., Docs],
    helm: Callable[..., subprocess.CompletedProcess[str]],
    chart_copy: Path,
    tmp_path: Path,
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


def test_repository_dashboards_each_become_a_configmap(
    helm: Callable[..., subprocess.CompletedProcess[str]], values_file: Callable[[dict[str, Any]], Path]
) -> None:
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


# --- values.schema.json -------------------------------------------------------------------------------

BAD_VALUES = [
    # (--set arguments, text the error must contain)
    (["replicaCount=2"], "additional properties 'replicaCount' not allowed"),
    (["config.poll_interval=fast"], "/config/poll_interval"),
    (["config.letta_url=letta:8283"], "/config/letta_url"),
    (["config.listen_address=0.0.0.0:1"], "additional properties 'listen_address' not allowed"),
    (["config.letta_api_key=abc"], "additional properties 'letta_api_key' not allowed"),
    (["config.page_size=5000"], "/config/page_size"),
    (["config.log_level=verbose"], "/config/log_level"),
    (["securityContext.runAsNonRoot=false"], "/securityContext/runAsNonRoot"),
    (["securityContext.allowPrivilegeEscalation=true"], "/securityContext/allowPrivilegeEscalation"),
    (["podSecurityContext.runAsUser=0"], "/podSecurityContext/runAsUser"),
    (["serviceMonitor.interval=thirty"], "/serviceMonitor/interval"),
    (["serviceMonitor.relabelings[0].action=explode"], "/serviceMonitor/relabelings/0/action"),
    (["persistence.size=lots"], "/persistence/size"),
    (["containerPort=70000"], "/containerPort"),
    (["image.digest=abc"], "/image/digest"),
    (["otel.protocol=thrift"], "/otel/protocol"),
    (["dashboards.labelValue=1"], "/dashboards/labelValue"),  # a number, not the string "1"
    (["service.type=ExternalName"], "/service/type"),
    (["apiKey.value=a", "apiKey.existingSecret=b"], "mutually exclusive"),
    # protected endpoints
    (["config.web_config_file=/w.yml"], "additional properties 'web_config_file' not allowed"),
    (["webConfig.secretName=web"], "additional properties 'secretName' not allowed"),
    (["webConfig.tls=yes"], "at '/webConfig/tls': got string, want boolean"),
    (["webConfig.existingSecret=Web_Config"], "/webConfig/existingSecret"),
    (["webConfig.tls=true"], "webConfig.tls needs webConfig.existingSecret"),
    (["webConfig.basicAuth=true"], "webConfig.basicAuth needs webConfig.existingSecret"),
    (
        ["webConfig.existingSecret=web", "webConfig.caKey=ca.crt"],
        "webConfig.caKey is only used with webConfig.tls=true",
    ),
    (
        ["webConfig.existingSecret=web", "extraArgs[0]=--web-config-file=/x.yml"],
        "conflicts with webConfig.existingSecret",
    ),
    (["serviceMonitor.tlsConfig.serverName=x"], "serviceMonitor.tlsConfig is only used with webConfig.tls=true"),
    (["serviceMonitor.tlsConfig.caFile=/ca.crt"], "at '/serviceMonitor/tlsConfig': additional properties 'caFile'"),
    (["serviceMonitor.tlsConfig.minVersion=TLS1.2"], "/serviceMonitor/tlsConfig/minVersion"),
    (
        ["serviceMonitor.tlsConfig.ca.secret.name=ca"],
        "at '/serviceMonitor/tlsConfig/ca/secret': missing property 'key'",
    ),
    (
        [
            "serviceMonitor.tlsConfig.ca.secret.name=a",
            "serviceMonitor.tlsConfig.ca.secret.key=k",
            "serviceMonitor.tlsConfig.ca.configMap.name=b",
            "serviceMonitor.tlsConfig.ca.configMap.key=k",
        ],
        "at '/serviceMonitor/tlsConfig/ca': maxProperties",
    ),
    (
        ["serviceMonitor.tlsConfig.cert.secret.name=c", "serviceMonitor.tlsConfig.cert.secret.key=tls.crt"],
        "properties 'keySecret' required, if 'cert' exists",
    ),
    (
        ["serviceMonitor.basicAuth.username.name=s", "serviceMonitor.basicAuth.username.key=u"],
        "at '/serviceMonitor/basicAuth': properties 'password' required, if 'username' exists",
    ),
    (["serviceMonitor.basicAuth.user=x"], "at '/serviceMonitor/basicAuth': additional properties 'user'"),
]


@pytest.mark.parametrize(("settings", "message"), BAD_VALUES, ids=[b[1] for b in BAD_VALUES])
def test_bad_values_are_rejected(
    helm: Callable[..., subprocess.CompletedProcess[str]], settings: list[str], message: str
) -> None:
    result = helm("template", RELEASE, CHART, *[arg for setting in settings for arg in ("--set", setting)])
    assert result.returncode != 0, f"{settings} was accepted"
    assert message in result.stderr, result.stderr


def test_existing_secret_is_used_without_creating_one(render: Callable[..., Docs]) -> None:
    docs = render({"apiKey": {"existingSecret": "letta-credentials", "secretKey": "password"}})
    assert not by_kind(docs, "Secret")
    env = {e["name"]: e for e in container(docs)["env"]}
    assert env["LETTA_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "letta-credentials", "key": "password"}


def test_packaged_chart_renders_without_the_repository(
    helm: Callable[..., subprocess.CompletedProcess[str]], render: Callable[..., Docs], tmp_path: Path
) -> None:
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


def test_job_label_matches_the_alerts_selector(full_docs: Docs) -> None:
    """The ServiceMonitor's job label is the one the alerts (and dashboards) select."""
    monitor = one(full_docs, "ServiceMonitor")
    job = one(full_docs, "Service")["metadata"]["labels"][monitor["spec"]["jobLabel"]]
    selectors = set(re.findall(r'job="([^"]*)"', RULES.read_text(encoding="utf-8")))
    assert selectors <= {job}, f"alerts select {selectors}, the ServiceMonitor gives job={job!r}"


# --- documentation ----------------------------------------------------------------------------------

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


def test_schema_config_keys_are_the_exporter_settings() -> None:
    """`config` accepts exactly the exporter's settings, less the four the chart manages (the API key
    from `apiKey`, `listen_address` from `listenHost`/`containerPort`, `state_path` from `persistence`,
    `web_config_file` from `webConfig`)."""
    config_module = pytest.importorskip("exporter.config")
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    chart_managed = {"letta_api_key", "listen_address", "state_path", "web_config_file"}
    exporter_settings = {option.name for option in config_module.OPTIONS}
    assert chart_managed <= exporter_settings
    assert set(schema["properties"]["config"]["properties"]) == exporter_settings - chart_managed


def notes(render: Callable[..., Docs], tmp_path: Path, values: dict[str, Any]) -> str:
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


def test_notes(render: Callable[..., Docs], tmp_path: Path) -> None:
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
