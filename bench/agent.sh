#!/usr/bin/env bash
# Node agent benchmark (release build, agent in a network namespace of its own):
#   1. manifest written -> pod Ready, image already in the store: the median
#      of RUNS pods, each measured by polling the API every 2 ms;
#   2. a full node, for each size in SIZES (kubelet's default maximum is
#      110 pods): that many pods, each with an HTTP readiness and a TCP
#      liveness probe every second, arrive at once (a burst). Reported:
#      - the time until all are Ready, and p50/p99 of each pod's own time;
#      - then, over SECS steady seconds, the agent's peak RSS and its CPU;
#      - the PSS of the agent, the monitors and the pause processes;
#      and, at the end, how each figure grows from the smallest size.
#
#   sudo bench/agent.sh [RUNS] [SIZES] [SECS]     (SIZES: "10 50 110")
# Needs: umoci jq curl containernetworking-plugins (Debian).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}
sizes=${2:-10 50 110}
secs=${3:-60}
scripts/build-release.sh
# shellcheck source=bench/lib/agent-env.sh
. bench/lib/agent-env.sh
agent_env_up

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

pct() { # P < numbers: the P-th percentile (nearest rank)
  sort -n | awk -v p="$1" '{a[NR]=$1} END {i=int((p*NR+99)/100); if (i<1) i=1; print a[i]}'
}
pss_of() { # PIDS...: summed PSS in KiB
  local s=0 p
  for p in "$@"; do s=$((s + $(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0))); done
  echo $s
}
ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
sys_cpu() { awk '{print $15}' "/proc/$pid/stat"; }
summary=()
for pods in $sizes; do
  echo "== 2. a node of $pods pods, probed every second (burst, then ${secs}s steady)"
  mkdir -p "$work/staging"
  for i in $(seq "$pods"); do pod_yaml "probe-$i" > "$work/staging/probe-$i.yaml"; done
  declare -A ready_at=()
  polls=0
  t0=$(date +%s%N)
  mv "$work"/staging/*.yaml "$work/manifests/"
  while [ "${#ready_at[@]}" -lt "$pods" ]; do
    # A pod counts as Ready when a poll that saw it returns (an upper
    # bound: the poll's own duration is the resolution, printed below).
    names=$(curl -s --unix-socket "$sockpath" http://a/pods |
      jq -r '.items[] | select(.status.conditions[]? | .type=="Ready" and .status=="True") | .metadata.name')
    now=$(date +%s%N)
    polls=$((polls + 1))
    [ $(( (now - t0) / 1000000000 )) -lt 300 ] || { echo "only ${#ready_at[@]} of $pods Ready after 300 s" >&2; exit 1; }
    for n in $names; do
      [ -n "${ready_at[$n]:-}" ] || ready_at[$n]=$(( (now - t0) / 1000000 ))
    done
    sleep 0.1
  done
  all_ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  p50=$(printf '%s\n' "${ready_at[@]}" | pct 50)
  p99=$(printf '%s\n' "${ready_at[@]}" | pct 99)
  echo "all $pods Ready after ${all_ms} ms; per pod p50 ${p50} ms, p99 ${p99} ms (goal for 110: all within 30 s)"
  echo "  ($polls polls of /pods, one every $(( all_ms / polls )) ms on average: the resolution of p50 and p99)"
  unset ready_at
  c0=$(cpu); s0=$(sys_cpu); tc0=$(date +%s%N)
  rss_max=0
  for _ in $(seq "$secs"); do
    sleep 1
    r=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
    [ "$r" -gt "$rss_max" ] && rss_max=$r
  done
  c1=$(cpu); s1=$(sys_cpu); tc1=$(date +%s%N)
  cpu_pct=$(echo "$c0 $c1 $tc0 $tc1 $ticks" | awk '{printf "%.2f", 100 * ($2 - $1) / $5 / (($4 - $3) / 1e9)}')
  monitors=$(pgrep -f "skiff-(agent|monitor) monitor.*$work" | tr '\n' ' ')
  pauses=$(jq -r '.sandbox.pid // empty' "$work"/state/pods/*/pod.json 2>/dev/null | tr '\n' ' ')
  agent_pss=$(pss_of "$pid"); mon_pss=$(pss_of $monitors); pause_pss=$(pss_of $pauses)
  nmon=$(echo $monitors | wc -w)
  sys_share=$(( (c1 > c0) ? 100 * (s1 - s0) / (c1 - c0) : 0 ))
  echo "agent: RSS peak $rss_max KiB, PSS $agent_pss KiB, CPU ${cpu_pct}% of one core, ${sys_share}% of it in the kernel (goal at 110: <= 5%)"
  echo "monitors: $nmon, PSS $mon_pss KiB in all ($(( mon_pss / (nmon > 0 ? nmon : 1) )) KiB each); pauses PSS $pause_pss KiB"
  echo "node side in all (agent + monitors + pauses): PSS $(( (agent_pss + mon_pss + pause_pss) / 1024 )) MiB"
  summary+=("$pods $all_ms $p50 $p99 $rss_max $cpu_pct $agent_pss $mon_pss $pause_pss")
  rm -f "$work"/manifests/probe-*.yaml
  for _ in $(seq 1200); do [ "$(curl -s --unix-socket "$sockpath" http://a/pods | jq '.items | length')" = 0 ] && break; sleep 0.1; done
done

echo "== growth from the smallest size (each figure divided by its value there, and by the pod ratio)"
printf '%-6s %10s %8s %8s %10s %7s %10s %10s %10s\n' pods all-Ready p50 p99 agentRSS CPU% agentPSS monPSS pausePSS
printf '%s\n' "${summary[@]}" | awk '
  NR == 1 { for (i = 1; i <= 9; i++) b[i] = $i }
  { printf "%-6s %8sms %6sms %6sms %8sKiB %7s %8sKiB %8sKiB %8sKiB\n", $1, $2, $3, $4, $5, $6, $7, $8, $9
    if (NR > 1) printf "  x%-4.1f %9.2fx %7.2fx %7.2fx %9.2fx %6.2fx %9.2fx %9.2fx %9.2fx\n", $1/b[1], $2/b[2], $3/b[3], $4/b[4], $5/b[5], ($6+0.001)/(b[6]+0.001), $7/b[7], $8/b[8], $9/b[9] }'
