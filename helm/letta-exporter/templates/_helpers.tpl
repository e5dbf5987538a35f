{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "letta-exporter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name of the objects: <release>-<chart>, or the release name when it already holds the chart name. */}}
{{- define "letta-exporter.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "letta-exporter.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "letta-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "letta-exporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "letta-exporter.labels" -}}
helm.sh/chart: {{ include "letta-exporter.chart" . }}
{{ include "letta-exporter.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: letta-exporter
{{- end }}

{{- define "letta-exporter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "letta-exporter.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "letta-exporter.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* Name of the Secret holding the API key, empty when no key is configured. */}}
{{- define "letta-exporter.secretName" -}}
{{- if and .Values.apiKey.value .Values.apiKey.existingSecret }}
{{- fail "apiKey.value and apiKey.existingSecret are mutually exclusive: set only one" }}
{{- end }}
{{- if .Values.apiKey.existingSecret }}
{{- .Values.apiKey.existingSecret }}
{{- else if .Values.apiKey.value }}
{{- include "letta-exporter.fullname" . }}
{{- end }}
{{- end }}

{{/* The exporter's YAML config: .Values.config without empty values. */}}
{{- define "letta-exporter.config" -}}
{{- $config := dict }}
{{- range $key, $value := .Values.config }}
{{- if not (or (kindIs "invalid" $value) (and (kindIs "string" $value) (eq $value ""))) }}
{{- $_ := set $config $key $value }}
{{- end }}
{{- end }}
{{- toYaml $config }}
{{- end }}

{{- define "letta-exporter.stateDir" -}}
/var/lib/letta-exporter
{{- end }}

{{- define "letta-exporter.claimName" -}}
{{- default (include "letta-exporter.fullname" .) .Values.persistence.existingClaim }}
{{- end }}

{{/* The repository's alert rules, linked into the chart as files/letta-exporter.rules.yml. */}}
{{- define "letta-exporter.rulesFile" -}}
files/letta-exporter.rules.yml
{{- end }}

{{/* Where webConfig.existingSecret is mounted (its own directory: a mount inside the read-only
config volume would need a mount point the runtime cannot create there). */}}
{{- define "letta-exporter.webDir" -}}
/etc/letta-exporter-web
{{- end }}

{{/* Checks of the webConfig values against each other; renders nothing. */}}
{{- define "letta-exporter.validateWebConfig" -}}
{{- with .Values.webConfig }}
{{- if not .existingSecret }}
{{- if .tls }}
{{- fail "webConfig.tls needs webConfig.existingSecret: the Secret with web-config.yml and the certificate and key" }}
{{- end }}
{{- if .basicAuth }}
{{- fail "webConfig.basicAuth needs webConfig.existingSecret: the Secret with web-config.yml" }}
{{- end }}
{{- if .caKey }}
{{- fail "webConfig.caKey needs webConfig.existingSecret: the Secret that holds the CA certificate" }}
{{- end }}
{{- end }}
{{- if and .caKey (not .tls) }}
{{- fail "webConfig.caKey is only used with webConfig.tls=true" }}
{{- end }}
{{- end }}
{{- if .Values.webConfig.existingSecret }}
{{- range .Values.extraArgs }}
{{- if hasPrefix "--web-config-file" . }}
{{- fail (printf "extraArgs: %s conflicts with webConfig.existingSecret, which sets --web-config-file; use one of them" .) }}
{{- end }}
{{- end }}
{{- end }}
{{- if and $.Values.serviceMonitor.tlsConfig (not $.Values.webConfig.tls) }}
{{- fail "serviceMonitor.tlsConfig is only used with webConfig.tls=true (the ServiceMonitor scrapes over plain HTTP otherwise)" }}
{{- end }}
{{- end }}

{{/* `http` or `https`: how the endpoints are served. */}}
{{- define "letta-exporter.scheme" -}}
{{- if .Values.webConfig.tls }}https{{ else }}http{{ end }}
{{- end }}
