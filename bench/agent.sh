#!/usr/bin/env bash
# Node agent benchmark (release build, agent in a network namespace of its own):
#   1. manifest written -> pod Ready, image already in the store: the median
#      of RUNS pods, each measured by polling the API every 2 ms;
#   2. the agent's resident memory and CPU with PODS pods whose containers
#      are probed every second (an HTTP readiness and a TCP liveness probe
#      each), over SECS seconds;
#   3. the per-container monitor's resident memory (VmRSS and PSS).
#
#   sudo bench/agent.sh [RUNS] [PODS] [SECS]
# Needs: umoci jq curl containernetworking-plugins (Debian).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}
pods=${2:-50}
secs=${3:-60}
scripts/build-release.sh
bin="$PWD/target/x86_64-unknown-linux-gnu/release"
agent="$bin/skiff-agent"
work=$(mktemp -d /tmp/skiff-agentbench.XXXXXX)
netns="skiff-bench-$$"
sockpath="$work/agent.sock"
sock="unix://$sockpath"
pid=""
cleanup() {
  set +e
  rm -f "$work"/manifests/*.yaml
  if [ -n "$pid" ]; then
    for _ in $(seq 600); do
      [ "$(curl -s --unix-socket "$sockpath" http://a/pods | jq '.items | length')" = 0 ] && break
      sleep 0.1
    done
    kill "$pid"; wait "$pid" 2>/dev/null
  fi
  ip netns delete "$netns" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
scripts/busybox-image.sh "$work/image" bench >/dev/null
"$agent" image --data-dir "$work/data" import "oci:$work/image:bench" --name localhost/busybox:bench >/dev/null
mkdir -p "$work/manifests" "$work/cni"
cat > "$work/cni/10-bench.conflist" <<JSON
{"cniVersion":"1.0.0","name":"skiffbench","plugins":[{"type":"bridge","bridge":"skbench0","isGateway":true,
 "ipam":{"type":"host-local","dataDir":"$work/ipam","ranges":[[{"subnet":"10.90.0.0/16"}]]}}]}
JSON
ip netns add "$netns"
ip -n "$netns" link set lo up
nsenter --net="/run/netns/$netns" "$agent" serve --manifests "$work/manifests" \
  --data-dir "$work/data" --state-dir "$work/state" --listen "$sock" \
  --cni-conf-dir "$work/cni" --runtime "$bin/skiff" >"$work/agent.log" 2>&1 &
pid=$!
for _ in $(seq 100); do curl -sf --unix-socket "$sockpath" http://a/healthz >/dev/null && break; sleep 0.1; done

ready() { # NAME -> 0 when the pod's Ready condition is True
  curl -s --unix-socket "$sockpath" "http://a/pods/default/$1" |
    jq -e '.status.conditions[]? | select(.type=="Ready" and .status=="True")' >/dev/null 2>&1
}
echo "== 1. manifest written -> pod Ready ($runs pods, one at a time)"
times=()
for i in $(seq "$runs"); do
  m="$work/manifests/lat-$i.yaml"
  printf 'apiVersion: v1\nkind: Pod\nmetadata:\n  name: lat-%s\nspec:\n  terminationGracePeriodSeconds: 0\n  containers:\n  - name: c\n    image: localhost/busybox:bench\n    command: [sleep, "1000"]\n' "$i" > "$work/.tmp"
  t0=$(date +%s%N)
  mv "$work/.tmp" "$m"
  until ready "lat-$i"; do sleep 0.002; done
  t1=$(date +%s%N)
  times+=($(( (t1 - t0) / 1000000 )))
  rm "$m"
done
sorted=$(printf '%s\n' "${times[@]}" | sort -n)
median=$(echo "$sorted" | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}')
echo "ready latency ms: $(echo $sorted | tr '\n' ' ')"
echo "median ${median} ms (goal <= 150 ms)"
for _ in $(seq 300); do [ "$(curl -s --unix-socket "$sockpath" http://a/pods | jq '.items | length')" = 0 ] && break; sleep 0.1; done

echo "== 2. $pods pods probed every second, for ${secs}s"
for i in $(seq "$pods"); do
  cat > "$work/manifests/probe-$i.yaml" <<YAML
apiVersion: v1
kind: Pod
metadata:
  name: probe-$i
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: web
    image: localhost/busybox:bench
    command: [httpd, -f, -p, "8080", -h, /www]
    readinessProbe:
      httpGet: {path: /healthz, port: 8080}
      periodSeconds: 1
    livenessProbe:
      tcpSocket: {port: 8080}
      periodSeconds: 1
YAML
done
for _ in $(seq 1200); do
  n=$(curl -s --unix-socket "$sockpath" http://a/pods | jq '[.items[] | select(.status.conditions[]? | .type=="Ready" and .status=="True")] | length')
  [ "$n" = "$pods" ] && break
  sleep 0.5
done
echo "ready pods: $n"
ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
c0=$(cpu); t0=$(date +%s%N)
rss_max=0
for _ in $(seq "$secs"); do
  sleep 1
  r=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
  [ "$r" -gt "$rss_max" ] && rss_max=$r
done
c1=$(cpu); t1=$(date +%s%N)
probes=$(curl -s --unix-socket "$sockpath" http://a/metrics | awk '/^skiff_probe_total/ {s += $2} END {print s}')
echo "agent RSS: $(awk '/VmRSS/ {print $2}' "/proc/$pid/status") KiB now, $rss_max KiB max (goal <= 30 MB)"
echo "agent CPU: $(echo "$c0 $c1 $t0 $t1 $ticks" | awk '{printf "%.2f", 100 * ($2 - $1) / $5 / (($4 - $3) / 1e9)}')% of one core (goal <= 2%)"
echo "probe attempts so far: $probes"

echo "== 3. monitor memory ($pods containers + $pods sandboxes)"
rss=0; pss=0; n=0
for m in $(pgrep -f "skiff-(agent|monitor) monitor.*$work"); do
  rss=$((rss + $(awk '/VmRSS/ {print $2}' /proc/$m/status)))
  pss=$((pss + $(awk '/^Pss:/ {print $2}' /proc/$m/smaps_rollup)))
  n=$((n + 1))
done
echo "monitors: $n; mean VmRSS $((rss / n)) KiB, mean PSS $((pss / n)) KiB"
