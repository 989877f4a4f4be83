#!/usr/bin/env bash
# Node-mode benchmark: a release skiff-agent as the one node of a real
# Kubernetes 1.20 control plane (tests/k8s/control-plane.sh), in a network
# namespace of its own.
#   1. `kubectl apply` -> pod Ready (`kubectl wait`), through the real API
#      server and scheduler, image already on the node: median of RUNS pods,
#      one at a time (the service-account token volume included, as every
#      pod of a cluster has one). Beside it, from a watch, the time from the
#      pod's creation in the API to its Ready (the scheduler's and the
#      node's part), and the floor the two kubectl processes alone make;
#   2. node-side memory with PODS steady pods: the agent, the per-container
#      monitors and the pause processes (VmRSS and PSS sums), 5 s after all
#      are Ready, and again once they have been steady for MINUTES minutes;
#   3. API load with those PODS pods: requests per minute the node makes, as
#      the API server's audit log counts them, over MINUTES minutes.
#
#   sudo bench/node.sh [RUNS] [PODS] [MINUTES]
#
# BENCH_KUBECTL=/path/to/kubectl measures with another kubectl than the
# test bed's (the 1.20 one built from Debian's source), and
# BENCH_APPLY_FLAGS adds flags to each measured `kubectl apply`. For
# example, kubectl 1.20's apply always downloads and parses the API
# server's OpenAPI document (about 100 ms of its 150-160 here); kubectl
# 1.32 with --validate=false skips it (its apply took 53 ms here), though
# its `wait` took 170 ms.
# References (kubelet 1.20 + containerd 1.6 on this machine, DESIGN.md §7):
# apply -> Ready about 0.8 s; kubelet 86 MB and containerd 48 MB resident
# idle; kubelet's API pattern is the lease every 10 s (6/min) plus pod
# status only on change.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}
pods=${2:-50}
minutes=${3:-3}
# shellcheck source=lib/node-up.sh
. bench/lib/node-up.sh

pod() { # NAME LABEL
  printf 'apiVersion: v1\nkind: Pod\nmetadata:\n  name: %s\n  labels: {bench: %s}\nspec:\n  terminationGracePeriodSeconds: 0\n  containers:\n  - name: c\n    image: localhost/busybox:bench\n    imagePullPolicy: IfNotPresent\n    command: [sleep, "100000"]\n' "$1" "$2"
}

echo "== 1. kubectl apply -> pod Ready ($runs pods, one at a time)"
# A watch beside the measurement stamps each pod's creation in the API and
# its first Ready: the part of the latency that the scheduler and the node
# make, without the two kubectl processes' own start-up.
set -m # the watch pipeline gets a process group of its own, to end it whole
{
  kc get pods -l bench=latency -w --output-watch-events \
    -o jsonpath='{.type} {.object.metadata.name} {.object.status.conditions[?(@.type=="Ready")].status}{"\n"}' 2>/dev/null \
    | while read -r line; do echo "$(date +%s%3N) $line"; done >"$work/watch.log"
} &
watcher=$!
set +m
sleep 1
node_idle() { # until the agent runs no pod (its own API, not the cluster's)
  for _ in $(seq 300); do
    [ "$(curl -s --unix-socket "$work/agent.sock" http://a/pods | jq '.items | length')" = 0 ] && return
    sleep 0.02
  done
}
times=()
for i in $(seq "$runs"); do
  pod "lat-$i" latency > "$work/lat.yaml"
  t0=$(date +%s%N)
  # shellcheck disable=SC2086
  kc apply ${BENCH_APPLY_FLAGS:-} -f "$work/lat.yaml" >/dev/null
  kc wait --for=condition=Ready "pod/lat-$i" --timeout=60s >/dev/null
  t1=$(date +%s%N)
  times+=($(( (t1 - t0) / 1000000 )))
  kc delete pod "lat-$i" --grace-period=0 --force >/dev/null 2>&1
  # The next pod starts once the node has torn this one down (its
  # containers, CNI DEL, netns): a start is measured on a quiet node, not
  # against the last pod's teardown on the same two cores.
  node_idle
done
sleep 1
kill -- -"$watcher" 2>/dev/null || true
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
sorted=$(printf '%s\n' "${times[@]}" | sort -n)
echo "apply -> Ready ms: $(echo $sorted | tr '\n' ' ')"
echo "median $(echo "$sorted" | median) ms (kubelet 1.20 + containerd: about 800 ms; goal <= 200 ms)"
# Created in the API -> Ready, as the watch saw it.
node_part=$(awk '$2 == "ADDED" {c[$3] = $1} $2 == "MODIFIED" && $4 == "True" && ($3 in c) && !($3 in r) {r[$3] = $1 - c[$3]}
  END {for (p in r) print r[p]}' "$work/watch.log" | sort -n)
echo "created in the API -> Ready (scheduler and node) ms: $(echo $node_part | tr '\n' ' ')"
echo "median $(echo "$node_part" | median) ms"
# The two kubectl processes alone: the same apply and a get, of an object
# that needs no node (a ConfigMap); kubectl wait returns after one get when
# the pod is already Ready.
floor=()
for i in $(seq "$runs"); do
  printf 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: floor-%s\ndata: {a: b}\n' "$i" > "$work/cm.yaml"
  t0=$(date +%s%N)
  # shellcheck disable=SC2086
  kc apply ${BENCH_APPLY_FLAGS:-} -f "$work/cm.yaml" >/dev/null
  kc get "configmap/floor-$i" >/dev/null
  t1=$(date +%s%N)
  floor+=($(( (t1 - t0) / 1000000 )))
  kc delete configmap "floor-$i" >/dev/null
done
echo "the two kubectl processes alone (apply a ConfigMap, get it): median $(printf '%s\n' "${floor[@]}" | median) ms"
for _ in $(seq 300); do [ "$(kc get pods -o name | wc -l)" = 0 ] && break; sleep 0.2; done

echo "== 2. node-side memory with $pods pods"
for i in $(seq "$pods"); do pod "steady-$i" steady; echo ---; done > "$work/steady.yaml"
kc apply -f "$work/steady.yaml" >/dev/null
kc wait --for=condition=Ready pod -l bench=steady --timeout=600s >/dev/null
sleep 5
sum() { # FIELD-REGEX FILE-SUFFIX PIDS...
  local re=$1 f=$2 total=0 p
  shift 2
  for p in "$@"; do
    total=$((total + $(awk -v re="$re" '$0 ~ re {v = $2; exit} END {print v + 0}' "/proc/$p/$f" 2>/dev/null || echo 0)))
  done
  echo "$total"
}
# KiB, and MiB with two decimals, in PSS and in VmRSS; the goal is in MB
# (10^6 bytes) as the issue gives it, so that is printed too.
memory() { # WHEN
  # shellcheck disable=SC2086
  {
    echo "$1:"
    local monitors pauses
    monitors=$(pgrep -f "monitor.*$work" | tr '\n' ' ')
    pauses=$(jq -r '.sandbox.pid // empty' "$work"/state/pods/*/pod.json | tr '\n' ' ')
    echo "  agent:    VmRSS $(sum '^VmRSS' status $pid) KiB, PSS $(sum '^Pss:' smaps_rollup $pid) KiB"
    echo "  monitors: $(echo $monitors | wc -w), VmRSS $(sum '^VmRSS' status $monitors) KiB, PSS $(sum '^Pss:' smaps_rollup $monitors) KiB"
    echo "  pauses:   $(echo $pauses | wc -w), VmRSS $(sum '^VmRSS' status $pauses) KiB, PSS $(sum '^Pss:' smaps_rollup $pauses) KiB"
    local all="$pid $monitors $pauses" pss rss
    pss=$(sum '^Pss:' smaps_rollup $all)
    rss=$(sum '^VmRSS' status $all)
    echo "  in all:   VmRSS $(awk -v k="$rss" 'BEGIN {printf "%.2f", k / 1024}') MiB, PSS $(awk -v k="$pss" 'BEGIN {printf "%.2f MiB = %.2f MB", k / 1024, k * 1024 / 1e6}') (kubelet alone 86 MB + containerd 48 MB idle; goal <= 25 MB)"
  }
}
memory "5 s after all are Ready"

echo "== 3. API requests per minute with $pods steady pods, over $minutes min"
audit="$cp/logs/audit.log"
before=$(wc -l < "$audit")
sleep $((minutes * 60))
tail -n +$((before + 1)) "$audit" > "$work/window.log"
n=$(wc -l < "$work/window.log")
echo "requests: $n in $minutes min = $(awk -v n="$n" -v m="$minutes" 'BEGIN {printf "%.1f", n / m}') per minute (kubelet: the lease, 6 per minute, plus status on change)"
jq -r '"\(.verb) \(.objectRef.resource // .requestURI)\(if .objectRef.subresource then "/" + .objectRef.subresource else "" end)"' \
  "$work/window.log" | sort | uniq -c | sort -rn | head -12
# The same pods, steady for the minutes above: the agent has given back
# what the burst left free (agent/heap.rs, once a minute).
memory "after $minutes min steady"
