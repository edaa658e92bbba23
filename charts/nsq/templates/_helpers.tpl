{{/* Object name prefix: the release name (objects are <prefix>-nsqd, <prefix>-nsqlookupd,
<prefix>-nsqadmin: predictable, so other charts can template them). */}}
{{- define "nsq.fullname" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 36 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels of one component; call with (dict "ctx" $ "component" "nsqd"). */}}
{{- define "nsq.selectorLabels" -}}
app.kubernetes.io/name: {{ .component }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: bus
{{- end -}}

{{- define "nsq.labels" -}}
{{ include "nsq.selectorLabels" . }}
app.kubernetes.io/part-of: kubefuncs
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version | replace "+" "_" }}
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "nsq.image" -}}
{{- printf "%s:%s" .Values.image.repository (default (printf "v%s" .Chart.AppVersion) .Values.image.tag) -}}
{{- end -}}

{{/* Pod-level settings shared by every NSQ pod. */}}
{{- define "nsq.podCommon" -}}
automountServiceAccountToken: false
enableServiceLinks: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end -}}

{{/* nodeSelector/tolerations/affinity of one component's values. */}}
{{- define "nsq.placement" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* An HTTP /ping probe on a named port. */}}
{{- define "nsq.probe" -}}
httpGet:
  path: /ping
  port: {{ . }}
periodSeconds: 10
timeoutSeconds: 3
failureThreshold: 3
{{- end -}}

{{/* The nsqlookupd TCP addresses nsqd registers with: one per lookupd pod (pod DNS). */}}
{{- define "nsq.lookupdTCPAddresses" -}}
{{- $fullname := include "nsq.fullname" . -}}
{{- range $i := until (int .Values.nsqlookupd.replicas) }}
- --lookupd-tcp-address={{ $fullname }}-nsqlookupd-{{ $i }}.{{ $fullname }}-nsqlookupd-headless.{{ $.Release.Namespace }}.svc.{{ $.Values.clusterDomain }}:4160
{{- end }}
{{- end -}}
