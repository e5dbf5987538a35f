"""values.schema.json: bad values are rejected with a message that names the setting, and `config`
accepts exactly the exporter's own settings."""

from __future__ import annotations

import json

import pytest

from tests.helm.support import CHART, RELEASE, Helm

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
def test_bad_values_are_rejected(helm: Helm, settings: list[str], message: str) -> None:
    result = helm("template", RELEASE, CHART, *[arg for setting in settings for arg in ("--set", setting)])
    assert result.returncode != 0, f"{settings} was accepted"
    assert message in result.stderr, result.stderr


def test_schema_config_keys_are_the_exporter_settings() -> None:
    """`config` accepts exactly the exporter's settings, less the four the chart manages (the API key
    from `apiKey`, `listen_address` from `listenHost`/`containerPort`, `state_path` from `persistence`,
    `web_config_file` from `webConfig`) and the other secrets (`ingest_token`, `redis_url`), which never
    go in a ConfigMap: `extraEnv` takes them from a Secret."""
    config_module = pytest.importorskip("exporter.config")
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    chart_managed = {"letta_api_key", "listen_address", "state_path", "web_config_file"}
    exporter_settings = {option.name for option in config_module.OPTIONS}
    assert chart_managed <= exporter_settings
    secrets = {option.name for option in config_module.OPTIONS if option.secret}
    assert set(schema["properties"]["config"]["properties"]) == exporter_settings - chart_managed - secrets
