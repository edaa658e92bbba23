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

{{/* The cluster bus port: the client port + 10000 (node-to-node traffic only). */}}
{{- define "valkey.clusterBusPort" -}}
{{- add .Values.service.port 10000 -}}
{{- end -}}

{{/* The host name the node of pod $POD_NAME announces (shell text, for the container). */}}
{{- define "valkey.announceHostname" -}}
{{- printf "$POD_NAME.%s-headless.%s.svc.%s" (include "valkey.fullname" .) .Release.Namespace .Values.cluster.clusterDomain -}}
{{- end -}}

{{/* Every cluster node as host:port (the cluster-init Job's NODES). */}}
{{- define "valkey.clusterNodes" -}}
{{- $fullname := include "valkey.fullname" . -}}
{{- $nodes := list -}}
{{- range $i := until (int .Values.cluster.nodes) -}}
{{- $nodes = append $nodes (printf "%s-%d.%s-headless.%s.svc.%s:%d" $fullname $i $fullname $.Release.Namespace $.Values.cluster.clusterDomain (int $.Values.service.port)) -}}
{{- end -}}
{{- join " " $nodes -}}
{{- end -}}

{{/* A readable failure when the cluster's shape cannot work. */}}
{{- define "valkey.checkCluster" -}}
{{- if .Values.cluster.enabled -}}
{{- $per := add1 (int .Values.cluster.replicasPerMaster) -}}
{{- $nodes := int .Values.cluster.nodes -}}
{{- if or (ne (mod $nodes $per) 0) (lt (div $nodes $per) 3) -}}
{{- fail (printf "cluster.nodes: %d nodes cannot make at least 3 masters with %d replicas each - use a multiple of %d, at least %d (e.g. cluster.nodes: %d)" $nodes (int .Values.cluster.replicasPerMaster) $per (mul 3 $per) (mul 3 $per)) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Labels of the cluster-init Job's pod: part of kubefuncs, not a bus pod. */}}
{{- define "valkey.initLabels" -}}
app.kubernetes.io/name: valkey-cluster-init
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: bus-init
app.kubernetes.io/part-of: kubefuncs
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}
