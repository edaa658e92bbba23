{{/* Object name: <release>-gateway (predictable, so other charts and docs can name it). */}}
{{- define "gateway.fullname" -}}
{{- default (printf "%s-%s" .Release.Name .Chart.Name) .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "gateway.selectorLabels" -}}
app.kubernetes.io/name: gateway
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: gateway
{{- end -}}

{{- define "gateway.labels" -}}
{{ include "gateway.selectorLabels" . }}
app.kubernetes.io/part-of: kubefuncs
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "gateway.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "gateway.routesConfigMap" -}}
{{- default (include "gateway.fullname" .) .Values.existingRoutesConfigMap -}}
{{- end -}}

{{/* A setting as the gateway parses it: booleans true/false, whole numbers without ".0". */}}
{{- define "gateway.envValue" -}}
{{- if kindIs "bool" . -}}
{{- ternary "true" "false" . -}}
{{- else if and (kindIs "float64" .) (eq (float64 (int64 .)) .) -}}
{{- int64 . -}}
{{- else -}}
{{- . -}}
{{- end -}}
{{- end -}}

{{/* Seconds Kubernetes waits after SIGTERM: the gateway's shutdown delay and drain plus 5 s. */}}
{{- define "gateway.terminationGraceSeconds" -}}
{{- $s := .Values.settings -}}
{{- add (ceil (addf (default 0 $s.shutdown_delay_s) (default 30 $s.grace_s))) 5 -}}
{{- end -}}

{{- define "gateway.routesFile" -}}
routes:
  {{- toYaml .Values.routes | nindent 2 }}
{{- with .Values.publish }}
publish:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
