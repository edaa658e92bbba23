{{/* Object name prefix: <release>-valkey (predictable, so other charts can template it). */}}
{{- define "valkey.fullname" -}}
{{- default (printf "%s-%s" .Release.Name .Chart.Name) .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "valkey.selectorLabels" -}}
app.kubernetes.io/name: valkey
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: bus
{{- end -}}

{{- define "valkey.labels" -}}
{{ include "valkey.selectorLabels" . }}
app.kubernetes.io/part-of: kubefuncs
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "valkey.secretName" -}}
{{- default (include "valkey.fullname" .) .Values.auth.existingSecret -}}
{{- end -}}

{{- define "valkey.image" -}}
{{- printf "%s:%s" .Values.image.repository (default (printf "%s-alpine" .Chart.AppVersion) .Values.image.tag) -}}
{{- end -}}
