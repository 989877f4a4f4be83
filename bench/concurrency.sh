#!/usr/bin/env bash
# Concurrency benchmark: N container lifecycles at once, for skiff, runc
# and crun in one run.
#
#   sudo bench/concurrency.sh [TOTAL]      (default TOTAL=128 containers per cell)
#
# For N = 1, 4, 16 and 64 workers sharing one state root (per runtime),
# each worker runs TOTAL/N lifecycles one after the other:
#   create --pid-file, start, poll /proc/PID/stat until the init has exited,
#   delete
# (the containerd-style wait of bench/lifecycle.sh), each with its own id.
# Reported per runtime and N: throughput (containers/s over the wall time
# of the whole cell) and the p50 and p99 latency of one lifecycle. After
# every cell the state root must be empty and no cgroup or process of the
# cell may be left: a leak or a failed lifecycle fails the benchmark.
#
# As in bench/lifecycle.sh, crun refuses hybrid cgroup hosts, so all three
# run in one private mount namespace where an empty file covers
# /sys/fs/cgroup/unified/cgroup.controllers.
set -euo pipefail
cd "$(dirname "$0")/.."
total=${1:-128}

if [ -z "${SKIFF_BENCH_INNER:-}" ]; then
  scripts/build-release.sh
fi
# shellcheck source=bench/lib/crun-on-hybrid.sh
. bench/lib/crun-on-hybrid.sh
bench_in_private_mount_ns "$0" "$total"

skiff="$PWD/target/x86_64-unknown-linux-gnu/release/skiff"
work=$(mktemp -d /tmp/skiff-bench-conc.XXXXXX)
declare -A bin=([skiff]="$skiff" [runc]="$(command -v runc)" [crun]="$(command -v crun)")
runtimes=(skiff runc crun)
cleanup() {
  for r in "${runtimes[@]}"; do
    for id in $(ls "$work/root-$r" 2>/dev/null); do
      [ -d "$work/root-$r/$id" ] && "${bin[$r]}" --root "$work/root-$r" delete -f "$id" >/dev/null 2>&1 || true
    done
  done
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/bundle/rootfs/bin"
cp /bin/busybox "$work/bundle/rootfs/bin/"
for a in sh true; do ln -s busybox "$work/bundle/rootfs/bin/$a"; done
(cd "$work/bundle" && "$skiff" spec)
sed -i -e 's/"terminal": true/"terminal": false/' -e 's|^\t\t\t"sh"$|\t\t\t"true"|' "$work/bundle/config.json"

# worker RUNTIME ROOT PREFIX COUNT OUT: COUNT lifecycles, one latency (µs) a line
worker() {
  local r=$1 root=$2 prefix=$3 count=$4 out=$5 i id pid st t0 t1
  set +e   # a failed step is counted, not fatal to the worker
  for ((i = 0; i < count; i++)); do
    id="$prefix-$i"
    t0=$(date +%s%N)
    "$r" --root "$root" create --pid-file "$root/$id.pid" --bundle "$work/bundle" "$id" || { echo "FAIL create $id" >>"$out"; continue; }
    "$r" --root "$root" start "$id" || echo "FAIL start $id" >>"$out"
    pid=$(<"$root/$id.pid")   # no trailing newline: not `read`
    while read -r _ _ st _ 2>/dev/null <"/proc/$pid/stat" && [ "$st" != Z ]; do sleep 0.001; done
    "$r" --root "$root" delete "$id" || { echo "FAIL delete $id" >>"$out"; "$r" --root "$root" delete -f "$id" || true; }
    t1=$(date +%s%N)
    rm -f "$root/$id.pid"
    echo $(((t1 - t0) / 1000)) >>"$out"
  done
}

leaks() { # runtime root prefix: what the cell left behind
  local root=$2 prefix=$3
  ls "$root" | grep -v '\.pid$' || true
  find /sys/fs/cgroup -maxdepth 5 -type d -name "$prefix-*" 2>/dev/null || true
  pgrep -f -- "$prefix-" || true
}

printf 'each cell: %s lifecycles (create --pid-file, start, wait, delete), N at once\n' "$total"
printf '%-6s %4s %12s %10s %10s %8s\n' runtime N "containers/s" "p50 ms" "p99 ms" failures
status=0
declare -A tput
for n in 1 4 16 64; do
  for r in "${runtimes[@]}"; do
    root="$work/root-$r"; mkdir -p "$root"
    prefix="c$n-$r-$$"
    per=$(( (total + n - 1) / n ))
    : >"$work/lat-$r-$n"
    t0=$(date +%s%N)
    for ((w = 0; w < n; w++)); do
      worker "${bin[$r]}" "$root" "$prefix-w$w" "$per" "$work/lat-$r-$n" 2>>"$work/err-$r-$n" &
    done
    wait
    t1=$(date +%s%N)
    fails=$(grep -c FAIL "$work/lat-$r-$n" || true)
    done_n=$(grep -vc FAIL "$work/lat-$r-$n" || true)
    left=$(leaks "$r" "$root" "$prefix")
    if [ -n "$left" ]; then
      echo "$r N=$n left behind:" >&2; echo "$left" >&2; status=1
    fi
    [ "$fails" = 0 ] || { echo "$r N=$n: $fails failures; first errors:" >&2; head -5 "$work/err-$r-$n" >&2; status=1; }
    tput[$r-$n]=$(awk -v c="$done_n" -v t="$((t1 - t0))" 'BEGIN { printf "%.1f", c / (t / 1e9) }')
    grep -v FAIL "$work/lat-$r-$n" | sort -n | awk -v r="$r" -v n="$n" -v tp="${tput[$r-$n]}" -v f="$fails" '
      { a[NR] = $1 }
      END { p50 = a[int((NR + 1) / 2)]; p99 = a[int(NR * 0.99 + 0.999)];
            printf "%-6s %4d %12s %10.1f %10.1f %8d\n", r, n, tp, p50 / 1000, p99 / 1000, f }'
  done
  awk -v s="${tput[skiff-$n]}" -v c="${tput[crun-$n]}" -v r="${tput[runc-$n]}" -v n="$n" \
    'BEGIN { printf "       %4d   throughput skiff/crun %.2fx, skiff/runc %.2fx\n", n, s / c, s / r }'
done
exit $status
