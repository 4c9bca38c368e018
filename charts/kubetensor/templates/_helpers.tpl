{{/* The chart's name (nameOverride). */}}
{{- define "kubetensor.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Prefix of every object's name: the release name, plus the chart name unless it already holds it. */}}
{{- define "kubetensor.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "kubetensor.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "kubetensor.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "kubetensor.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component ({"root": $, "component": "operator"}). */}}
{{- define "kubetensor.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kubetensor.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* An image reference from {repository, tag}, falling back to images.kubetensor, then appVersion. */}}
{{- define "kubetensor.image" -}}
{{- $root := .root -}}
{{- $base := $root.Values.images.kubetensor -}}
{{- $repository := .image.repository | default $base.repository -}}
{{- $tag := .image.tag | default $base.tag | default $root.Chart.AppVersion -}}
{{- printf "%s:%s" $repository $tag -}}
{{- end -}}

{{- define "kubetensor.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (printf "%s-operator" (include "kubetensor.fullname" .)) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Name of the bundled NATS server's objects. */}}
{{- define "kubetensor.natsName" -}}
{{- printf "%s-nats" (include "kubetensor.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The NATS URL a Subnet's natsUrl should hold: the external one, else the bundled client Service. */}}
{{- define "kubetensor.natsUrl" -}}
{{- if .Values.nats.external.url -}}
{{- .Values.nats.external.url -}}
{{- else -}}
{{- printf "nats://%s.%s.svc:%d" (include "kubetensor.natsName" .) .Release.Namespace (int .Values.nats.port) -}}
{{- end -}}
{{- end -}}

{{/* The standard OTEL_* variables (none when otel.endpoint is empty). */}}
{{- define "kubetensor.otelEnv" -}}
{{- with .Values.otel -}}
{{- if .endpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ .endpoint | quote }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: {{ .protocol | quote }}
- name: OTEL_TRACES_SAMPLER
  value: parentbased_traceidratio
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ .samplingRatio | toString | quote }}
{{- if .resourceAttributes }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ include "kubetensor.resourceAttributes" .resourceAttributes | quote }}
{{- end }}
{{- end }}
{{- end -}}
{{- end -}}

{{/* key=value,key=value (sorted keys) of a map. */}}
{{- define "kubetensor.resourceAttributes" -}}
{{- $pairs := list -}}
{{- range $key := keys . | sortAlpha -}}
{{- $pairs = append $pairs (printf "%s=%s" $key (index $ $key | toString)) -}}
{{- end -}}
{{- join "," $pairs -}}
{{- end -}}

{{/*
Fails, saying what to do, when a value this chart reads is missing: `helm upgrade --reuse-values` from an
earlier version of the chart keeps that version's values and drops the defaults of the values added
since, which would otherwise render a nil-pointer error or an empty setting. Each template that reads
one of these values includes this first. Add a value here when a template starts reading a new one.
*/}}
{{- define "kubetensor.checkValues" -}}
{{- $added := list
  (list "operator" "releaseRetrySeconds")
  (list "operator" "metricsPort")
  (list "operator" "metricsService")
  (list "operator" "serviceMonitor")
  (list "nats" "auth")
  (list "nats" "networkPolicy")
  (list "examples" "natsAuthSecret") -}}
{{- range $added -}}
{{- $section := index $.Values (index . 0) | default dict -}}
{{- if not (hasKey $section (index . 1)) -}}
{{- fail (printf "values: %s.%s is missing, though this chart's values.yaml sets it. This is what `helm upgrade --reuse-values` from an earlier version of the chart does: it keeps that version's values and drops the defaults added since. Upgrade with --reset-then-reuse-values instead (Helm 3.14 or later): it keeps your settings and takes the new defaults." (index . 0) (index . 1)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
