{{/* Labels of the monitoring objects of the umbrella chart. */}}
{{- define "kubefuncs.monitoringLabels" -}}
app.kubernetes.io/name: kubefuncs
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: monitoring
app.kubernetes.io/part-of: kubefuncs
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}
