"""What `helm template` renders: the minimal set with the defaults, every object with every option."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import yaml

from tests.helm.support import FULLNAME, NAMESPACE, Docs, Render, by_kind, container, one


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


def test_existing_secret_is_used_without_creating_one(render: Render) -> None:
    docs = render({"apiKey": {"existingSecret": "letta-credentials", "secretKey": "password"}})
    assert not by_kind(docs, "Secret")
    env = {e["name"]: e for e in container(docs)["env"]}
    assert env["LETTA_API_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "letta-credentials", "key": "password"}
