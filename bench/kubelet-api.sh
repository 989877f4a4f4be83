#!/usr/bin/env bash
# Kubelet-API benchmark: a release skiff-agent as the node of a real
# Kubernetes 1.20 control plane (bench/lib/node-up.sh), used through the
# real API server with the real kubectl.
#   1. `kubectl exec POD -- true`, RUNS times one after another: the median
#      wall time, and the agent's own share of each (its debug log gives,
#      per exec, the time from the request's arrival to the end of the
#      session minus the wait for kubectl to open its streams);
#   2. `kubectl logs` of a container that wrote SIZE_MB MB: MB/s.
# The container writes its SIZE_MB MB first; both measurements start once
# it is done.
#
#   sudo bench/kubelet-api.sh [RUNS] [SIZE_MB]
# Targets (issue 14): the agent's share of an exec <= 20 ms. Reference
# for scale: one bare `kubectl get node` in the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-30}
size=${2:-50}
AGENT_LOG=info,skiff_agent::agent::kubelet_api=debug
# One log file for the whole output: nothing rotated away.
AGENT_FLAGS="--container-log-max-size $(((size + 10) * 2 * 1024 * 1024))"
# shellcheck source=lib/node-up.sh
. bench/lib/node-up.sh

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

cat > "$work/box.yaml" <<YAML
apiVersion: v1
kind: Pod
metadata: {name: box}
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: c
    image: localhost/busybox:bench
    command: [sh, -c, "yes $(printf '%099d' 0) | head -c $((size * 1048576)); exec sleep 100000"]
YAML
kc apply -f "$work/box.yaml" >/dev/null
kc wait --for=condition=Ready pod/box --timeout=120s >/dev/null

# Wait until the container has written it all: its log stops growing.
last=-1
for _ in $(seq 600); do
  got=$(du -sb "$work"/data/pod-logs/*_box_*/c | awk '{print $1}')
  [ "$got" = "$last" ] && break
  last=$got
  sleep 1
done
sleep 1

echo "== 1. kubectl exec box -- true, $runs runs"
kc exec box -- true  # warm: authentication and authorization are cached from here
before=$(grep -c "kubelet API: exec" "$work/agent.log" || true)
times=()
for _ in $(seq "$runs"); do
  t0=$(date +%s%N)
  kc exec box -- true
  t1=$(date +%s%N)
  times+=($(( (t1 - t0) / 1000 )))
done
wall=$(printf '%s\n' "${times[@]}" | median)
sleep 1
share=$(grep "kubelet API: exec" "$work/agent.log" | tail -n +$((before + 1)) |
  sed -E 's/.*: ([0-9.]+) ms in the agent.*/\1/' | median)
t0=$(date +%s%N); kc get "node/$node" >/dev/null; t1=$(date +%s%N)
echo "kubectl exec -- true: median $(awk -v u="$wall" 'BEGIN {printf "%.1f", u / 1000}') ms wall"
runtime=$(grep "kubelet API: skiff exec" "$work/agent.log" | tail -n "$runs" |
  sed -E 's/.* ran ([0-9.]+) ms.*/\1/' | median)
echo "the agent's share: median $share ms (target <= 20 ms), of which skiff exec itself $runtime ms"
echo "(one bare kubectl get: $(( (t1 - t0) / 1000000 )) ms)"

echo "== 2. kubectl logs of ${size} MB"
for i in 1 2 3; do
  t0=$(date +%s%N)
  bytes=$(kc logs box | wc -c)
  t1=$(date +%s%N)
  echo "run $i: $bytes bytes in $(( (t1 - t0) / 1000000 )) ms: $(awk -v b="$bytes" -v n=$((t1 - t0)) 'BEGIN {printf "%.1f", b / 1048576 / (n / 1e9)}') MB/s"
done
