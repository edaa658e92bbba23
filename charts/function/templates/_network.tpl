{{/*
NetworkPolicies, as functl/netpol.py renders them: egress only to DNS, the bus and the
function's network.egress, ingress only to the health/metrics port from network.metrics_from.
*/}}

{{- define "function.dnsRule" -}}
to:
  - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: kube-system}}
    podSelector: {matchLabels: {k8s-app: kube-dns}}
ports:
  - {port: 53, protocol: UDP}
  - {port: 53, protocol: TCP}
{{- end -}}

{{/*
Where one bus address is (netpol.classify); call with (dict "address" "host:port" "kind"
"valkey"|"nsq"). JSON {key, peer, port}: peer is null for "any destination".
*/}}
{{- define "function.netClassify" -}}
{{- $host := regexReplaceAll ":[0-9]*$" .address "" | trimPrefix "[" | trimSuffix "]" | lower -}}
{{- $port := regexFind ":[0-9]+$" .address | trimPrefix ":" | default "0" | atoi -}}
{{- $label := "[a-z0-9](?:[-a-z0-9]*[a-z0-9])?" -}}
{{- $service := printf "^(%s)-(valkey|nsqlookupd|nsqd)(?:\\.(%s)(?:\\.svc(?:\\.%s)*)?)?$" $label $label $label -}}
{{- $out := dict "key" "any" "peer" nil "port" $port -}}
{{- if regexMatch "^[0-9]+\\.[0-9]+\\.[0-9]+\\.[0-9]+$" $host -}}
{{- $_ := set $out "key" (printf "ip %s/32" $host) -}}
{{- $_ = set $out "peer" (dict "ipBlock" (dict "cidr" (printf "%s/32" $host))) -}}
{{- else if contains ":" $host -}}
{{- $_ := set $out "key" (printf "ip %s/128" $host) -}}
{{- $_ = set $out "peer" (dict "ipBlock" (dict "cidr" (printf "%s/128" $host))) -}}
{{- else if regexMatch $service $host -}}
{{- $svc := regexReplaceAll $service $host "${2}" -}}
{{- if or (and (eq .kind "valkey") (eq $svc "valkey")) (and (eq .kind "nsq") (ne $svc "valkey")) -}}
{{- $instance := regexReplaceAll $service $host "${1}" -}}
{{- $namespace := regexReplaceAll $service $host "${3}" -}}
{{- $match := dict "app.kubernetes.io/instance" $instance "app.kubernetes.io/component" "bus" -}}
{{- if eq .kind "valkey" -}}{{- $_ := set $match "app.kubernetes.io/name" "valkey" -}}{{- end -}}
{{- $peer := dict "podSelector" (dict "matchLabels" $match) -}}
{{- if $namespace -}}
{{- $_ := set $peer "namespaceSelector" (dict "matchLabels" (dict "kubernetes.io/metadata.name" $namespace)) -}}
{{- end -}}
{{- $_ := set $out "key" (printf "chart %s %s" $instance $namespace) -}}
{{- $_ = set $out "peer" $peer -}}
{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/*
Bus ports by destination in URL order (netpol.destinations); call with the parsed bus.
JSON [{key, peer, ports}]. The nsqd nodes nsqlookupd reports (4150, 4151) go with the
lookupd's destination when it is a chart Service, otherwise to any destination.
*/}}
{{- define "function.busDestinations" -}}
{{- $found := list -}}
{{- $adds := list -}}
{{- if eq .kind "valkey" -}}
{{- range $node := .nodes | default (list .address) -}}
{{- $adds = append $adds (include "function.netClassify" (dict "address" $node "kind" "valkey") | fromJson) -}}
{{- end -}}
{{- end -}}
{{- range .lookupd -}}
{{- $d := include "function.netClassify" (dict "address" . "kind" "nsq") | fromJson -}}
{{- $adds = append $adds $d -}}
{{- range $port := list 4150 4151 -}}
{{- if hasPrefix "chart " $d.key -}}
{{- $adds = append $adds (dict "key" $d.key "peer" $d.peer "port" $port) -}}
{{- else -}}
{{- $adds = append $adds (dict "key" "any" "peer" nil "port" $port) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range .nsqd -}}
{{- $adds = append $adds (include "function.netClassify" (dict "address" . "kind" "nsq") | fromJson) -}}
{{- end -}}
{{- $index := dict -}}
{{- range $a := $adds -}}
{{- if not (hasKey $index $a.key) -}}
{{- $_ := set $index $a.key (len $found) -}}
{{- $found = append $found (dict "key" $a.key "peer" $a.peer "ports" (list)) -}}
{{- end -}}
{{- $entry := index $found (int (get $index $a.key)) -}}
{{- $port := int64 $a.port -}}
{{- if and $port (not (has $port $entry.ports)) -}}
{{- $_ := set $entry "ports" (append $entry.ports $port) -}}
{{- end -}}
{{- end -}}
{{- toJson $found -}}
{{- end -}}

{{/*
Egress rules to the bus (netpol.bus_rules); call with (dict "bus" $bus "egress" rules).
The open rule keeps only the ports the function's own egress rules do not list.
*/}}
{{- define "function.busRules" -}}
{{- $covered := list -}}
{{- range .egress -}}
{{- range .ports -}}
{{- if eq (.protocol | default "TCP") "TCP" -}}{{- $covered = append $covered (int64 .port) -}}{{- end -}}
{{- end -}}
{{- end -}}
{{- $rules := list -}}
{{- range $d := include "function.busDestinations" .bus | fromJsonArray -}}
{{- $ports := list -}}
{{- range $d.ports -}}
{{- if or $d.peer (not (has (int64 .) $covered)) -}}
{{- $ports = append $ports (printf "%05d" (int64 .)) -}}
{{- end -}}
{{- end -}}
{{- if $ports -}}
{{- $rulePorts := list -}}
{{- range sortAlpha $ports -}}
{{- $rulePorts = append $rulePorts (dict "port" (atoi .) "protocol" "TCP") -}}
{{- end -}}
{{- $rule := dict "ports" $rulePorts -}}
{{- if $d.peer -}}{{- $_ := set $rule "to" (list $d.peer) -}}{{- end -}}
{{- $rules = append $rules $rule -}}
{{- end -}}
{{- end -}}
{{- toJson $rules -}}
{{- end -}}

{{/* A function's egress: DNS, the bus, network.egress (netpol.egress_rules). */}}
{{- define "function.egress" -}}
{{- $rules := list (include "function.dnsRule" . | fromYaml) -}}
{{- $rules = concat $rules (include "function.busRules" (dict "bus" .bus "egress" .fn.network.egress) | fromJsonArray) -}}
{{- range .fn.network.egress -}}
{{- $block := dict "cidr" .cidr -}}
{{- with .except -}}{{- $_ := set $block "except" . -}}{{- end -}}
{{- $rule := dict "to" (list (dict "ipBlock" $block)) -}}
{{- with .ports -}}
{{- $ports := list -}}
{{- range . -}}{{- $ports = append $ports (dict "port" .port "protocol" (.protocol | default "TCP")) -}}{{- end -}}
{{- $_ := set $rule "ports" $ports -}}
{{- end -}}
{{- $rules = append $rules $rule -}}
{{- end -}}
{{- toJson $rules -}}
{{- end -}}

{{/* A function's ingress: the health port from metrics_from, or none (netpol.ingress). */}}
{{- define "function.ingress" -}}
{{- $peers := list -}}
{{- range $entry := .network.metrics_from -}}
{{- $peer := dict -}}
{{- range $key := list "namespaceSelector" "podSelector" -}}
{{- if hasKey $entry $key -}}
{{- $labels := get $entry $key -}}
{{- $_ := set $peer $key (ternary (dict "matchLabels" $labels) (dict) (not (empty $labels))) -}}
{{- end -}}
{{- end -}}
{{- $peers = append $peers $peer -}}
{{- end -}}
{{- if $peers -}}
{{- toJson (list (dict "from" $peers "ports" (list (dict "port" 8081 "protocol" "TCP")))) -}}
{{- else -}}
[]
{{- end -}}
{{- end -}}

{{/*
One NetworkPolicy (netpol.policy); call with (dict "ctx" $ "fn" $fn "name" objectName
"component" "function"|"schedule" "ingress" rules "egress" rules).
*/}}
{{- define "function.networkPolicy" -}}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  {{- include "function.metadata" (dict "ctx" .ctx "name" .fn.name "fn" .fn "objectName" .name "component" "network-policy") | nindent 2 }}
spec:
  podSelector:
    matchLabels:
      {{- include "function.selectorLabels" (dict "ctx" .ctx "name" .fn.name "component" .component) | nindent 6 }}
  policyTypes: [Ingress, Egress]
  ingress:
    {{- toYaml .ingress | nindent 4 }}
  egress:
    {{- toYaml .egress | nindent 4 }}
{{- end -}}
