"""Protected endpoints: TLS (and mutual TLS) and basic auth from an exporter-toolkit web config file.

Certificates are made with the real `openssl` CLI; the exporter runs as a real process; a real
Prometheus scrapes it over TLS with basic auth.
"""

from __future__ import annotations

import base64
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import bcrypt
import httpx2
import pytest

from exporter.config import ConfigError
from exporter.webconfig import WebConfig, load
from tests.support import Process, exporter_cmd, free_port, running, tool, wait_until

PASSWORD = "correct horse battery staple"
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode().replace("$2b$", "$2y$")


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not installed")
    d = tmp_path_factory.mktemp("pki")
    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=test-ca",
        cwd=d,
    )
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            "-subj",
            f"/CN={name}",
            cwd=d,
        )
        openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            f"{name}.crt",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            cwd=d,
        )
    return d


def write_config(directory: Path, text: str) -> Path:
    path = directory / "web.yml"
    path.write_text(text)
    return path


def test_basic_auth_checks_hashes_and_caches_the_verdict(monkeypatch: pytest.MonkeyPatch) -> None:
    config = WebConfig(users={"prometheus": HASH.encode()})
    assert config.authorized(basic("prometheus", PASSWORD))
    for header in (None, "", "Bearer x", basic("prometheus", "wrong"), basic("nobody", PASSWORD), "Basic !!!"):
        assert not config.authorized(header)
    calls: list[bytes] = []
    real = bcrypt.checkpw

    def counted_checkpw(password: bytes, hashed: bytes) -> bool:
        calls.append(password)
        return real(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", counted_checkpw)
    assert config.authorized(basic("prometheus", PASSWORD)) and not config.authorized(basic("prometheus", "wrong"))
    assert calls == []  # both verdicts came from the cache
    assert WebConfig().authorized(None)  # no users configured: open


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("basic_auth_users: {a: plain}\n", "basic_auth_users.a: not a bcrypt hash"),
        ("tls_server_config: {cert_file: missing.crt, key_file: missing.key}\n", "cert_file"),
        ("tls_server_config: {cert_file: server.crt}\n", "tls_server_config.key_file is required"),
        ("tls_server_config: {cert_file: server.crt, key_file: client.key}\n", "do not load together"),
        (
            "tls_server_config: {cert_file: server.crt, key_file: server.key, client_auth_type: Sometimes}\n",
            "client_auth_type",
        ),
        ("tls_server_config: {cert_file: server.crt, key_file: server.key, min_version: SSL3}\n", "min_version"),
        ("tls_server_config: {cert_file: server.crt, key_file: server.key, ciphers: [x]}\n", "unknown settings"),
        ("tls: {}\n", "unknown settings: tls"),
        ("- a\n", "must be a mapping"),
    ],
)
def test_invalid_web_configs_are_refused_naming_the_setting(pki: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(str(write_config(pki, text)))
    assert message in str(caught.value) and "--web-config-file" in str(caught.value)


def exporter_with(web_config: Path) -> list[str]:
    """An exporter (Letta unreachable: only its endpoints matter here) behind `web_config`."""
    return exporter_cmd(
        "run",
        "--letta-url",
        "http://127.0.0.1:9",
        "--listen-address",
        "127.0.0.1:0",
        "--log-format",
        "json",
        "--state-path",
        ":memory:",
        "--web-config-file",
        str(web_config),
    )


@pytest.fixture
def protected(pki: Path) -> Iterator[str]:
    config = write_config(
        pki,
        f"tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        f"basic_auth_users:\n  prometheus: '{HASH}'\n",
    )
    process = Process(exporter_with(config))
    try:
        listen = process.wait_for_line(r'"listen": "([^"]+)"').group(1)
        yield listen
    finally:
        process.stop()


def test_tls_and_basic_auth_over_real_connections(pki: Path, protected: str) -> None:
    with httpx2.Client(verify=ssl.create_default_context(cafile=str(pki / "ca.crt")), timeout=5) as client:
        base = f"https://{protected}"
        ok = client.get(f"{base}/metrics", headers={"Authorization": basic("prometheus", PASSWORD)})
        assert ok.status_code == 200 and "letta_up" in ok.text
        for headers in ({}, {"Authorization": basic("prometheus", "wrong")}, {"Authorization": basic("x", PASSWORD)}):
            denied = client.get(f"{base}/metrics", headers=headers)
            assert denied.status_code == 401 and denied.headers["WWW-Authenticate"].startswith("Basic")
        assert client.get(f"{base}/").status_code == 401
        assert client.get(f"{base}/healthz").status_code == 200  # probes need no credentials
    with pytest.raises(httpx2.HTTPError):
        httpx2.get(f"http://{protected}/healthz", timeout=5)  # plain HTTP to the TLS port
    with pytest.raises(httpx2.ConnectError):  # a client that does not trust the CA
        httpx2.get(f"https://{protected}/healthz", timeout=5)


def test_mutual_tls_requires_a_client_certificate_signed_by_the_ca(pki: Path) -> None:
    config = write_config(
        pki,
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
        "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n",
    )
    with running(exporter_with(config)) as process:
        listen = process.wait_for_line(r'"listen": "([^"]+)"').group(1)
        anonymous = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        with pytest.raises(httpx2.HTTPError):
            httpx2.get(f"https://{listen}/healthz", verify=anonymous, timeout=5)
        identified = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        identified.load_cert_chain(str(pki / "client.crt"), str(pki / "client.key"))
        assert httpx2.get(f"https://{listen}/healthz", verify=identified, timeout=5).status_code == 200
        assert "Traceback" not in process.text()


def test_a_bad_web_config_stops_the_exporter_at_start(tmp_path: Path) -> None:
    config = write_config(tmp_path, "basic_auth_users:\n  prometheus: hunter2\n")
    with running(exporter_cmd("run", "--web-config-file", str(config))) as process:
        assert process.proc.wait(30) == 2
    assert "basic_auth_users.prometheus: not a bcrypt hash" in process.text()
    assert "hunter2" not in process.text()


@pytest.mark.prometheus
def test_real_prometheus_scrapes_over_tls_with_basic_auth(pki: Path, protected: str, tmp_path: Path) -> None:
    prometheus = tool("prometheus")
    if prometheus is None:
        pytest.skip("prometheus not installed: run `make tools`")
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s}\nscrape_configs:\n  - job_name: letta-exporter\n    scheme: https\n"
        f"    tls_config: {{ca_file: {pki / 'ca.crt'}}}\n"
        f"    basic_auth: {{username: prometheus, password: '{PASSWORD}'}}\n"
        f"    static_configs: [{{targets: ['{protected}']}}]\n"
    )
    port = free_port()
    server = Process(
        [
            prometheus,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path}/d",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ]
    )
    try:

        def up() -> list[object] | None:
            body = httpx2.get(f"http://127.0.0.1:{port}/api/v1/query", params={"query": "letta_up"}, timeout=5).json()
            return body["data"]["result"] or None

        result = wait_until(up, timeout=60, what="Prometheus to scrape the protected exporter")
        assert len(result) == 1
    finally:
        server.stop()
