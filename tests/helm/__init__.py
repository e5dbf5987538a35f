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
