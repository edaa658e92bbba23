#!/bin/sh
# Create the Valkey Cluster once, then keep it whole (the chart's cluster-init Job, run after
# every install and upgrade). Environment:
#   NODES            every node as host:port, space-separated (the StatefulSet's pods)
#   REPLICAS         replicas per master
#   VALKEY_PASSWORD  the password, when auth is on
#   WAIT_S           how long to wait for the nodes (default 300)
# Steps: wait for every node to answer; no slot assigned anywhere -> create the cluster;
# otherwise a node that knows only itself (a new pod, an empty volume) joins as a replica,
# and every other node is met again (a node whose pod IP changed is found by its new IP).
set -eu

# the password goes in valkey-cli's environment, not on its command line
if [ -n "${VALKEY_PASSWORD:-}" ]; then export REDISCLI_AUTH="$VALKEY_PASSWORD"; fi
cli() { valkey-cli "$@"; }

host_of() { echo "${1%:*}"; }
port_of() { echo "${1##*:}"; }

# host:port -> ip:port (valkey-cli --cluster wants addresses it can compare with gossip)
resolve() {
  host=$(host_of "$1")
  case "$host" in
    *[!0-9.]*)
      ip=$(getent hosts "$host" 2>/dev/null | awk '{print $1; exit}')
      # no getent (a minimal image): busybox nslookup prints "Address: <ip>"
      [ -n "$ip" ] || ip=$(nslookup "$host" 2>/dev/null | awk '/^Address:? / && NR > 2 {print $NF; exit}')
      ;;
    *) ip=$host ;;
  esac
  [ -n "$ip" ] || { echo "cannot resolve $host" >&2; return 1; }
  echo "$ip:$(port_of "$1")"
}

info() { cli -h "$(host_of "$1")" -p "$(port_of "$1")" cluster info 2>/dev/null | tr -d '\r' | sed -n "s/^$2://p"; }

wait_for_nodes() {
  deadline=$(( $(date +%s) + ${WAIT_S:-300} ))
  for node in $NODES; do
    until [ "$(cli -h "$(host_of "$node")" -p "$(port_of "$node")" ping 2>/dev/null)" = PONG ]; do
      if [ "$(date +%s)" -ge "$deadline" ]; then
        echo "node $node did not answer within ${WAIT_S:-300} s" >&2
        exit 1
      fi
      sleep 2
    done
  done
}

wait_for_nodes
seed=""
for node in $NODES; do
  if [ "$(info "$node" cluster_slots_assigned)" = 16384 ]; then seed=$node; break; fi
done

if [ -z "$seed" ]; then
  addresses=""
  for node in $NODES; do addresses="$addresses $(resolve "$node")"; done
  echo "creating the cluster:$addresses"
  # shellcheck disable=SC2086  # one argument per address
  cli --cluster create $addresses --cluster-replicas "$REPLICAS" --cluster-yes
else
  seed_ip=$(resolve "$seed")
  for node in $NODES; do
    address=$(resolve "$node")
    if [ "$(info "$node" cluster_known_nodes)" = 1 ]; then
      echo "node $node is new: joining as a replica"
      cli --cluster add-node "$address" "$seed_ip" --cluster-slave
    else
      cli -h "$(host_of "$seed")" -p "$(port_of "$seed")" cluster meet "$(host_of "$address")" "$(port_of "$address")" >/dev/null
    fi
  done
fi

deadline=$(( $(date +%s) + ${WAIT_S:-300} ))
for node in $NODES; do
  until [ "$(info "$node" cluster_state)" = ok ]; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      echo "node $node: cluster_state is not ok" >&2
      exit 1
    fi
    sleep 1
  done
done
echo "cluster ok: $(echo $NODES | wc -w) nodes"
