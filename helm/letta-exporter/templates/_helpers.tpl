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
