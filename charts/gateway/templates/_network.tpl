{{/*
The gateway's bus egress: a copy of the function chart's helpers (charts/function/templates
_helpers.tpl "function.bus" and _network.tpl), which mirror functl/netpol.py. Charts cannot
share templates without a library chart; tests/charts/test_charts_network.py checks that
the gateway renders the bus rules functl renders for the same bus URL.
*/}}

{{/*
The bus URL (functl/busurl.py); call with the URL string.
Result (JSON): kind valkey|nsq|memory|unknown, address, db, tls, lookupd, passwordInUrl,
cluster, nodes (valkey host:port, every node a cluster URL names), prefix (valkey).
*/}}
{{- define "gateway.bus" -}}
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
{{- $nodes := include "gateway.clusterNodes" (dict "url" $url "hostport" $hostport "tail" $tail) | fromJsonArray -}}
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
{{- define "gateway.clusterNodes" -}}
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

{{- define "gateway.dnsRule" -}}
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
{{- define "gateway.netClassify" -}}
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
{{- define "gateway.busDestinations" -}}
{{- $found := list -}}
{{- $adds := list -}}
{{- if eq .kind "valkey" -}}
{{- range $node := .nodes | default (list .address) -}}
{{- $adds = append $adds (include "gateway.netClassify" (dict "address" $node "kind" "valkey") | fromJson) -}}
{{- end -}}
{{- end -}}
{{- range .lookupd -}}
{{- $d := include "gateway.netClassify" (dict "address" . "kind" "nsq") | fromJson -}}
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
{{- $adds = append $adds (include "gateway.netClassify" (dict "address" . "kind" "nsq") | fromJson) -}}
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
{{- define "gateway.busRules" -}}
{{- $covered := list -}}
{{- range .egress -}}
{{- range .ports -}}
{{- if eq (.protocol | default "TCP") "TCP" -}}{{- $covered = append $covered (int64 .port) -}}{{- end -}}
{{- end -}}
{{- end -}}
{{- $rules := list -}}
{{- range $d := include "gateway.busDestinations" .bus | fromJsonArray -}}
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
