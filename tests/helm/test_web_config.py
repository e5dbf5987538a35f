"""Protected endpoints (`webConfig`): the Secret mounted and passed, HTTPS where TLS is on, and the
`helm test` pod's script run against a real exporter protected by TLS and basic auth."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helm.support import FULLNAME, NAMESPACE, Docs, Render, Values, all_options, container, notes, one

WEB_DIR = "/etc/letta-exporter-web"
HASH = "$2y$04$" + "a" * 53  # a bcrypt-shaped hash: no password matches, which is all the test needs
TLS_ONLY = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
TLS_AND_AUTH = TLS_ONLY + f"basic_auth_users:\n  prometheus: '{HASH}'\n"


def test_web_config_secret_is_mounted_read_only_and_passed(render: Render) -> None:
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


def test_tls_switches_probes_service_monitor_and_helm_test_to_https(render: Render) -> None:
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
    request = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}"]
    output = ["-keyout", f"{name}.key", "-out", f"{name}.crt"]
    subprocess.run(["openssl", *request, *output], cwd=directory, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def web_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("web")
    make_certificate(directory, "server")
    make_certificate(directory, "other")
    return directory


def run_helm_test_pod(
    render: Render, web_dir: Path, values: Values, web_config: str | None
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
    render: Render, web_dir: Path, web: Values, web_config: str | None, error: str | None
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


def test_notes_for_protected_endpoints(render: Render, tmp_path: Path) -> None:
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
