{{/*
The function chart mirrors functl's renderer (functl/render.py, workload.py, keda.py,
cron.py, resolve.py): same names, labels, environment and scalers. The one intended
difference is app.kubernetes.io/managed-by (Helm instead of functl, so `functl apply
--prune` never deletes what Helm installed) plus the helm.sh/chart label.
*/}}

{{/* Built-in settings, overridden by `defaults:` and then by the function (resolve.py BUILTIN). */}}
{{- define "function.builtin" -}}
concurrency: 1
timeout_s: 30
retry: {max_attempts: 5, backoff_s: 1, backoff_max_s: 60}
scaling: {keda: true, max: 10, target: 10, activation: 0, cooldown_s: 300, polling_s: 15, cpu_percent: 80}
resources:
  requests: {cpu: 50m, memory: 64Mi}
  limits: {memory: 256Mi}
run_as_user: 10001
log: {level: INFO, format: json}
network: {policy: true, metrics_from: [{podSelector: {}}], egress: []}
{{- end -}}

{{/* The HPA scale-down behaviour of a function (keda.scale_down_behavior), or nothing. */}}
{{- define "function.behavior" -}}
{{- with .scale_down -}}
scaleDown:
  stabilizationWindowSeconds: {{ int64 .stabilization_s }}
  policies:
    - type: Percent
      value: {{ int64 .percent }}
      periodSeconds: {{ int64 .period_s }}
{{- end -}}
{{- end -}}

{{- define "function.reservedEnv" -}}
[KF_BUS_URL, KF_BUS_PASSWORD, KF_FUNCTION_NAME, KF_TOPIC, KF_CHANNEL, KF_CONCURRENCY, KF_TIMEOUT_S, KF_MAX_ATTEMPTS, KF_BACKOFF_S, KF_BACKOFF_MAX_S, KF_GRACE_S, KF_HEALTH_ADDR, KF_LOG_LEVEL, KF_LOG_FORMAT, KF_BATCH, KF_BATCH_WAIT_S]
{{- end -}}

{{/* Seconds as the runtime parses them: 30 rather than 30.0 (workload.number). */}}
{{- define "function.number" -}}
{{- if eq (float64 .) (float64 (int64 .)) -}}{{ int64 . }}{{- else -}}{{ . }}{{- end -}}
{{- end -}}

{{/* A mapping-form env value as a string (resolve._env_value). */}}
{{- define "function.envValue" -}}
{{- if kindIs "bool" . -}}{{ ternary "true" "false" . }}
{{- else if or (kindIs "float64" .) (kindIs "int64" .) (kindIs "int" .) -}}{{ include "function.number" . }}
{{- else -}}{{ . }}{{- end -}}
{{- end -}}

{{/* env as a list of EnvVar objects; a mapping becomes [{name, value}] (in key order). */}}
{{- define "function.envList" -}}
{{- $out := list -}}
{{- if kindIs "map" . -}}
{{- range $k, $v := . -}}
{{- $out = append $out (dict "name" $k "value" (include "function.envValue" $v)) -}}
{{- end -}}
{{- else if . -}}
{{- $out = . -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/*
The bus URL as the renderer needs it (functl/busurl.py); call with the URL string.
Result (JSON): kind valkey|nsq|memory|unknown, address, db, tls, lookupd, passwordInUrl,
cluster, nodes (valkey host:port, every node a cluster URL names), prefix (valkey).
*/}}
{{- define "function.bus" -}}
{{- $url := . -}}
{{- $scheme := lower (regexReplaceAll "^([A-Za-z][A-Za-z0-9+.-]*)://.*$" $url "${1}") -}}
{{- $rest := regexReplaceAll "^[A-Za-z][A-Za-z0-9+.-]*://" $url "" -}}
{{- $netloc := regexReplaceAll "[/?#].*$" $rest "" -}}
{{- $tail := trimPrefix $netloc $rest -}}
{{- $hostport := regexReplaceAll "^.*@" $netloc "" -}}
{{- $userinfo := ternary (regexReplaceAll "@[^@]*$" $netloc "") "" (contains "@" $netloc) -}}
{{- $bus := dict "kind" "unknown" "address" "" "db" 0 "tls" false "lookupd" (list) "nsqd" (list) "passwordInUrl" (contains ":" $userinfo) "cluster" false "nodes" (list) "prefix" "" -}}
{{- if has $scheme (list "valkey" "redis" "valkeys" "rediss") -}}
{{- $host := regexReplaceAll ":[0-9]*$" $hostport "" -}}
{{- $port := regexFind ":[0-9]+$" $hostport | trimPrefix ":" | default "6379" -}}
{{- $path := regexReplaceAll "[?#].*$" $tail "" | trimAll "/" -}}
{{- $db := $path | default (regexReplaceAll "^[?&]db=" (regexFind "[?&]db=[^&#]*" $tail) "") | default "0" -}}
{{- if not $host -}}{{- fail (printf "bus.url: %q has no host" $url) -}}{{- end -}}
{{- if not (regexMatch "^[0-9]+$" $db) -}}{{- fail (printf "bus.url: %q: database must be a number, got %q" $url $db) -}}{{- end -}}
{{- $_ := set $bus "kind" "valkey" -}}
{{- $_ = set $bus "address" (printf "%s:%s" $host $port) -}}
{{- $_ = set $bus "db" (atoi $db) -}}
{{- $_ = set $bus "tls" (has $scheme (list "valkeys" "rediss")) -}}
{{- $_ = set $bus "nodes" (list $bus.address) -}}
{{- $_ = set $bus "prefix" (regexReplaceAll "^[?&]prefix=" (regexFind "[?&]prefix=[^&#]*" $tail) "" | default "kf") -}}
{{- else if has $scheme (list "valkey+cluster" "redis+cluster" "valkeys+cluster" "rediss+cluster") -}}
{{- $nodes := include "function.clusterNodes" (dict "url" $url "hostport" $hostport "tail" $tail) | fromJsonArray -}}
{{- $_ := set $bus "kind" "valkey" -}}
{{- $_ = set $bus "cluster" true -}}
{{- $_ = set $bus "nodes" $nodes -}}
{{- $_ = set $bus "address" (first $nodes) -}}
{{- $_ = set $bus "tls" (has $scheme (list "valkeys+cluster" "rediss+cluster")) -}}
{{- $_ = set $bus "prefix" (regexReplaceAll "^[?&]prefix=" (regexFind "[?&]prefix=[^&#]*" $tail) "" | default "kf") -}}
{{- else if eq $scheme "nsq" -}}
{{- $_ := set $bus "kind" "nsq" -}}
{{- $_ = set $bus "lookupd" (compact (splitList "," $netloc)) -}}
{{- /* direct nsqd addresses, TCP then HTTP (TCP port + 1 without nsqd_http; busurl._nsqd) */ -}}
{{- $tcp := compact (splitList "," (regexReplaceAll "^[?&]nsqd=" (regexFind "[?&]nsqd=[^&#]*" $tail) "")) -}}
{{- $http := compact (splitList "," (regexReplaceAll "^[?&]nsqd_http=" (regexFind "[?&]nsqd_http=[^&#]*" $tail) "")) -}}
{{- if not $http -}}
{{- range $tcp -}}
{{- $http = append $http (printf "%s:%d" (regexReplaceAll ":[0-9]+$" . "") (add1 (atoi (regexFind "[0-9]+$" .)))) -}}
{{- end -}}
{{- end -}}
{{- $_ = set $bus "nsqd" (concat $tcp $http) -}}
{{- else if eq $scheme "memory" -}}
{{- $_ := set $bus "kind" "memory" -}}
{{- end -}}
{{- toJson $bus -}}
{{- end -}}

{{/*
The nodes of a cluster bus URL (busurl._cluster); call with (dict "url" url "hostport"
netloc-without-userinfo "tail" path-and-query). JSON list of "host:port", duplicates dropped.
*/}}
{{- define "function.clusterNodes" -}}
{{- $url := .url -}}
{{- $nodes := list -}}
{{- range $raw := splitList "," .hostport -}}
{{- $n := trim $raw -}}
{{- if $n -}}
{{- $host := $n -}}
{{- $port := "" -}}
{{- if hasPrefix "[" $n -}}
{{- $host = regexReplaceAll "^\\[([^\\]]*)\\].*$" $n "${1}" -}}
{{- $port = regexReplaceAll "^\\[[^\\]]*\\]:?" $n "" -}}
{{- else if le (len (splitList ":" $n)) 2 -}}
{{- $host = regexReplaceAll ":.*$" $n "" -}}
{{- $port = regexReplaceAll "^[^:]*:?" $n "" -}}
{{- end -}}
{{- if not $host -}}{{- fail (printf "bus.url: %q: cluster node %q has no host" $url $n) -}}{{- end -}}
{{- if and $port (or (not (regexMatch "^[0-9]+$" $port)) (lt (atoi $port) 1) (gt (atoi $port) 65535)) -}}
{{- fail (printf "bus.url: %q: cluster node %q has a bad port %q - write host:port with a port from 1 to 65535" $url $n $port) -}}
{{- end -}}
{{- $address := printf (ternary "[%s]:%s" "%s:%s" (contains ":" $host)) $host ($port | default "6379") -}}
{{- if not (has $address $nodes) -}}{{- $nodes = append $nodes $address -}}{{- end -}}
{{- end -}}
{{- end -}}
{{- if not $nodes -}}
{{- fail (printf "bus.url: %q names no cluster node - write it as valkey+cluster://host:6379,host:6379[/?prefix=kf]" $url) -}}
{{- end -}}
{{- if or (regexReplaceAll "[?#].*$" .tail "" | trimAll "/") (regexMatch "[?&]db=" .tail) -}}
{{- fail (printf "bus.url: %q: a cluster has no database index (every node serves database 0 only) - remove it: write valkey+cluster://host:6379,host:6379[/?prefix=kf]" $url) -}}
{{- end -}}
{{- toJson $nodes -}}
{{- end -}}

{{/* The parsed bus, or a readable failure when it cannot be used in a cluster (render.deployable_bus). */}}
{{- define "function.deployableBus" -}}
{{- $v := .Values -}}
{{- if not (and $v.bus $v.bus.url) -}}
{{- fail "bus.url: missing - add bus: {url: valkey://valkey:6379/0} (or nsq://nsqlookupd:4161)" -}}
{{- end -}}
{{- $bus := include "function.bus" $v.bus.url | fromJson -}}
{{- if eq $bus.kind "unknown" -}}
{{- fail (printf "bus.url: unknown bus URL scheme in %q - use valkey://host:6379/0 or nsq://lookupd:4161" $v.bus.url) -}}
{{- else if eq $bus.kind "memory" -}}
{{- fail "bus.url: memory:// lives inside one process - use it with `functl dev`; deploy with valkey:// or nsq://" -}}
{{- else if $bus.passwordInUrl -}}
{{- fail "bus.url: the URL contains a password, which would end up in plain manifests - remove it and set bus.password_secret: {name:, key:}" -}}
{{- end -}}
{{- if and (eq $bus.kind "nsq") (not $bus.lookupd) -}}
{{- range $v.functions -}}
{{- $keda := include "function.setting" (dict "raw" . "defaults" ($v.defaults | default dict) "key" "scaling") | fromJson -}}
{{- if $keda.value.keda -}}
{{- fail "bus.url: KEDA's nsq scaler needs nsqlookupd HTTP addresses - use nsq://nsqlookupd:4161, or scaling.keda: false" -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toJson $bus -}}
{{- end -}}

{{/* One resolved setting, as JSON {"value": ...} (resolve.Resolver.setting). */}}
{{- define "function.setting" -}}
{{- $builtin := include "function.builtin" . | fromYaml -}}
{{- $key := .key -}}
{{- $own := index .raw $key -}}
{{- $default := index .defaults $key -}}
{{- $value := "" -}}
{{- if has $key (list "retry" "scaling" "nodeSelector" "labels" "annotations" "log" "network") -}}
{{- $value = dict -}}
{{- range $src := list (index $builtin $key) $default $own -}}
{{- range $k, $x := ($src | default dict) -}}{{- $_ := set $value $k $x -}}{{- end -}}
{{- end -}}
{{- else if has $key (list "envFrom" "secrets") -}}
{{- $value = concat ($default | default list) ($own | default list) -}}
{{- else if eq $key "env" -}}
{{- $base := include "function.envList" $default | fromJsonArray -}}
{{- $mine := include "function.envList" $own | fromJsonArray -}}
{{- $names := list -}}
{{- range $mine -}}{{- $names = append $names .name -}}{{- end -}}
{{- $value = list -}}
{{- range $base -}}{{- if not (has .name $names) -}}{{- $value = append $value . -}}{{- end -}}{{- end -}}
{{- $value = concat $value $mine -}}
{{- else if not (kindIs "invalid" $own) -}}
{{- $value = $own -}}
{{- else if not (kindIs "invalid" $default) -}}
{{- $value = $default -}}
{{- else -}}
{{- $value = index $builtin $key -}}
{{- end -}}
{{- toJson (dict "value" $value) -}}
{{- end -}}

{{/*
One function with every default filled in (resolve.Resolver.function), as JSON.
Call with (dict "raw" $fn "i" $index "Values" $.Values).
*/}}
{{- define "function.resolve" -}}
{{- $raw := .raw -}}
{{- $where := printf "functions[%d]" (int .i) -}}
{{- $defaults := .Values.defaults | default dict -}}
{{- $s := dict -}}
{{- range $key := list "concurrency" "timeout_s" "grace_s" "retry" "scaling" "resources" "env" "envFrom" "secrets" "nodeSelector" "tolerations" "affinity" "serviceAccountName" "run_as_user" "labels" "annotations" "log" "network" -}}
{{- $_ := set $s $key (include "function.setting" (dict "raw" $raw "defaults" $defaults "key" $key) | fromJson).value -}}
{{- end -}}
{{- /* entrypoint */ -}}
{{- if and (hasKey $raw "handler") (hasKey $raw "command") -}}
{{- fail (printf "%s.command: set either handler: or command:, not both - handler: runs `python -m kubefuncs module:function`; command: runs your own entrypoint" $where) -}}
{{- else if not (or (hasKey $raw "handler") (hasKey $raw "command") (hasKey $raw "image")) -}}
{{- fail (printf "%s: function %q has no handler:, command: or image: - add handler: module:function (Python), or image:/command: for another language" $where $raw.name) -}}
{{- end -}}
{{- /* env: the function's env plus secret variables; names functl sets are refused */ -}}
{{- $env := $s.env -}}
{{- $envFrom := $s.envFrom -}}
{{- range $s.secrets -}}
{{- if kindIs "string" . -}}
{{- $envFrom = append $envFrom (dict "secretRef" (dict "name" .)) -}}
{{- else -}}
{{- $ref := dict "name" .secret "key" .key -}}
{{- if hasKey . "optional" -}}{{- $_ := set $ref "optional" .optional -}}{{- end -}}
{{- $env = append $env (dict "name" .env "valueFrom" (dict "secretKeyRef" $ref)) -}}
{{- end -}}
{{- end -}}
{{- $reserved := include "function.reservedEnv" . | fromYamlArray -}}
{{- range $env -}}
{{- if has .name $reserved -}}
{{- fail (printf "%s.env: environment variable %s is set by functl - use the matching functions.yaml field (timeout_s, retry, log, ...) instead" $where .name) -}}
{{- end -}}
{{- end -}}
{{- /* scaling */ -}}
{{- $scaling := $s.scaling -}}
{{- if not (hasKey $scaling "min") -}}{{- $_ := set $scaling "min" (ternary 0 1 (eq $scaling.keda true)) -}}{{- end -}}
{{- if and (not $scaling.keda) (eq (int $scaling.min) 0) -}}
{{- fail (printf "%s.scaling.min: scaling.min 0 needs KEDA (keda: true) - a HorizontalPodAutoscaler cannot scale to zero: set min: 1 or keda: true" $where) -}}
{{- end -}}
{{- if gt (int $scaling.min) (int $scaling.max) -}}
{{- fail (printf "%s.scaling.max: scaling.max (%d) is below scaling.min (%d) - make max at least min" $where (int $scaling.max) (int $scaling.min)) -}}
{{- end -}}
{{- /* push, fallback, scale_down (keda.push_triggers, keda.degrading, resolve_scaling) */ -}}
{{- if not (hasKey $scaling "push") -}}{{- $_ := set $scaling "push" (and $scaling.keda (eq (int $scaling.min) 0) (not (empty $raw.routes))) -}}{{- end -}}
{{- $fb := $scaling.fallback -}}
{{- if kindIs "bool" $fb -}}{{- $_ := set $scaling "fallback" nil -}}
{{- else -}}
{{- $fb = $fb | default dict -}}
{{- $_ := set $scaling "fallback" (dict "failures" ($fb.failures | default 3) "replicas" (ternary $fb.replicas (max 1 (int $scaling.min)) (hasKey $fb "replicas"))) -}}
{{- end -}}
{{- $sd := $scaling.scale_down -}}
{{- if kindIs "bool" $sd -}}{{- $_ := set $scaling "scale_down" nil -}}
{{- else -}}{{- $_ := set $scaling "scale_down" (merge (dict) ($sd | default dict) (dict "stabilization_s" 300 "percent" 50 "period_s" 60)) -}}
{{- end -}}
{{- if and (not $scaling.keda) (not (hasKey ($s.resources.requests | default dict) "cpu")) -}}
{{- fail (printf "%s.resources: scaling.keda: false scales on CPU use, which needs a CPU request - set resources.requests.cpu (for example 100m)" $where) -}}
{{- end -}}
{{- /* retry */ -}}
{{- $retry := $s.retry -}}
{{- if lt (float64 $retry.backoff_max_s) (float64 $retry.backoff_s) -}}
{{- fail (printf "%s.retry.backoff_max_s: backoff_max_s (%v) is below backoff_s (%v) - make backoff_max_s at least backoff_s" $where $retry.backoff_max_s $retry.backoff_s) -}}
{{- end -}}
{{- /* schedules */ -}}
{{- $items := list -}}
{{- if kindIs "slice" $raw.schedule -}}{{- $items = $raw.schedule -}}{{- else if $raw.schedule -}}{{- $items = list $raw.schedule -}}{{- end -}}
{{- $schedules := list -}}
{{- $scheduleNames := list -}}
{{- range $j, $item := $items -}}
{{- $name := $item.name | default (ternary (printf "cron%d" $j) "cron" (gt (len $items) 1)) -}}
{{- if has $name $scheduleNames -}}
{{- fail (printf "%s.schedule: schedule name %q is used twice - give each schedule its own name:" $where $name) -}}
{{- end -}}
{{- $scheduleNames = append $scheduleNames $name -}}
{{- $schedules = append $schedules (dict "name" $name "cron" $item.cron "timezone" ($item.timezone | default "") "payload" $item.payload) -}}
{{- end -}}
{{- $timeout := float64 $s.timeout_s -}}
{{- $grace := ternary (addf $timeout 5) $s.grace_s (kindIs "invalid" $s.grace_s) -}}
{{- $fn := dict
  "name" $raw.name
  "topic" $raw.topic
  "channel" ($raw.channel | default $raw.name)
  "handler" ($raw.handler | default "")
  "command" $raw.command
  "args" ($raw.args | default list)
  "image" ($raw.image | default $defaults.image | default "")
  "concurrency" $s.concurrency
  "timeout_s" $timeout
  "grace_s" $grace
  "retry" $retry
  "scaling" $scaling
  "resources" $s.resources
  "env" $env
  "envFrom" $envFrom
  "nodeSelector" $s.nodeSelector
  "tolerations" ($s.tolerations | default list)
  "affinity" $s.affinity
  "serviceAccountName" ($s.serviceAccountName | default "")
  "run_as_user" $s.run_as_user
  "labels" $s.labels
  "annotations" $s.annotations
  "log" $s.log
  "network" $s.network
  "schedules" $schedules
  "batch" $raw.batch
  "batch_wait_s" $raw.batch_wait_s
-}}
{{- toJson $fn -}}
{{- end -}}

{{/* Object name <release>-<parts...>, failing above Kubernetes' limit (naming.object_name). */}}
{{- define "function.objectName" -}}
{{- $name := join "-" .parts -}}
{{- $limit := .limit | default 63 -}}
{{- if gt (len $name) (int $limit) -}}
{{- fail (printf "object name %q is %d characters, over Kubernetes' %d: use a shorter release or function/schedule name" $name (len $name) (int $limit)) -}}
{{- end -}}
{{- $name -}}
{{- end -}}

{{/* Labels of every object (naming.labels); call with (dict "ctx" $ "name" fn "component" c). */}}
{{- define "function.labels" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/part-of: kubefuncs
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "function.selectorLabels" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* metadata of a function's objects (naming.metadata). */}}
{{- define "function.metadata" -}}
name: {{ .objectName }}
namespace: {{ .ctx.Release.Namespace }}
labels:
  {{- include "function.labels" . | nindent 2 }}
annotations:
  kubefuncs.io/topic: {{ .fn.topic | quote }}
  kubefuncs.io/channel: {{ .fn.channel | quote }}
{{- end -}}

{{- define "function.authName" -}}
{{- include "function.objectName" (dict "parts" (list .Release.Name "bus")) -}}
{{- end -}}

{{/* Restricted container securityContext (workload.container_security). */}}
{{- define "function.containerSecurity" -}}
allowPrivilegeEscalation: false
capabilities:
  drop: [ALL]
readOnlyRootFilesystem: true
runAsNonRoot: true
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* KF_BUS_PASSWORD from the bus Secret (workload.bus_password_env). */}}
{{- define "function.busPasswordEnv" -}}
{{- with .Values.bus.password_secret -}}
- name: KF_BUS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .name | quote }}
      key: {{ .key | quote }}
{{- end }}
{{- end -}}

{{/* Pod spec fields around the containers (workload.pod_spec); call with (dict "fn" $fn). */}}
{{- define "function.podSpec" -}}
{{- $fn := .fn -}}
automountServiceAccountToken: false
enableServiceLinks: false
securityContext:
  runAsNonRoot: true
  runAsUser: {{ int64 $fn.run_as_user }}
  runAsGroup: {{ int64 $fn.run_as_user }}
  seccompProfile:
    type: RuntimeDefault
terminationGracePeriodSeconds: {{ add (ceil (maxf $fn.grace_s $fn.timeout_s)) 5 }}
volumes:
  - name: tmp
    emptyDir:
      sizeLimit: 64Mi
{{- with .restart }}
restartPolicy: {{ . }}
{{- end }}
{{- with $fn.serviceAccountName }}
serviceAccountName: {{ . }}
{{- end }}
{{- with $fn.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $fn.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $fn.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/*
redis-cluster-streams triggers of a function on a cluster bus (keda.cluster_triggers): the
four modes of the standalone triggers, every node in addresses, no databaseIndex, streams
with the topic as hash tag. Call with (dict "ctx" $ "fn" $fn "bus" $bus).
*/}}
{{- define "function.clusterTriggers" -}}
{{- $fn := .fn -}}
{{- $topicStream := printf "%s:topic:{%s}" .bus.prefix $fn.topic -}}
{{- $retryStream := printf "%s:retry:{%s}:%s" .bus.prefix $fn.topic $fn.channel -}}
{{- range $t := list (list "lag" $topicStream) (list "pending" $topicStream) (list "retry-lag" $retryStream) (list "retry-pending" $retryStream) }}
- type: redis-cluster-streams
  name: {{ index $t 0 }}
  metadata:
    addresses: {{ join "," $.bus.nodes | quote }}
    consumerGroup: {{ $fn.channel | quote }}
    {{- if $.bus.tls }}
    enableTLS: "true"
    {{- end }}
    stream: {{ index $t 1 | quote }}
    {{- if hasSuffix "lag" (index $t 0) }}
    lagCount: {{ int64 $fn.scaling.target | quote }}
    activationLagCount: {{ int64 $fn.scaling.activation | quote }}
    {{- else }}
    pendingEntriesCount: {{ int64 $fn.concurrency | quote }}
    {{- end }}
  {{- if $.ctx.Values.bus.password_secret }}
  authenticationRef:
    name: {{ include "function.authName" $.ctx }}
  {{- end }}
{{- end }}
{{- end -}}
