#!/usr/bin/env bash
# Shim benchmark: containerd-shim-skiff-v2 against containerd-shim-runc-v2,
# under one private containerd 1.6, in the same run.
#   1. resident memory per shim with 20 idle containers each: VmRSS, and
#      PSS (shared pages of the binary and libc split among the 20);
#   2. `ctr run --rm IMAGE ID true` wall time through each shim (hyperfine).
#
#   sudo bench/shim.sh [RUNS]
# Needs: containerd umoci skopeo hyperfine jq (Debian).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}
scripts/build-release.sh
bin="$PWD/target/x86_64-unknown-linux-gnu/release"
work=$(mktemp -d /tmp/skiff-shimbench.XXXXXX)
. bench/containerd-env.sh
cleanup() {
  ctrd_stop
  rm -rf "$work"
}
trap cleanup EXIT
ctrd_start "$work" shimbench "$bin"

for i in $(seq 1 20); do
  $C run -d --runtime io.containerd.skiff.v2 "$img" "sk-$i" sleep 100000 >/dev/null
  $C run -d "$img" "rc-$i" sleep 100000 >/dev/null
done
sleep 1
rss() { # average VmRSS and Pss (KiB) of the shims whose command line matches $1
  local total=0 pss=0 n=0
  for p in $(pgrep -f "$1 -namespace shimbench"); do
    total=$((total + $(awk '/VmRSS/ {print $2}' "/proc/$p/status")))
    pss=$((pss + $(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup"))); n=$((n + 1))
  done
  echo "$((total / n)) $((pss / n)) $n"
}
read -r rs ps ns < <(rss containerd-shim-skiff-v2)
# Where one skiff shim's resident pages are (KiB by mapping), and its threads.
one=$(pgrep -f "containerd-shim-skiff-v2 -namespace shimbench" | head -1)
echo "one skiff shim: $(awk '/^Threads/ {print $2}' "/proc/$one/status") threads; resident KiB by mapping:"
awk '/^[0-9a-f]+-[0-9a-f]+ / {n = ($6 == "" ? "[anon]" : $6)} /^Rss:/ {r[n] += $2}
     END {for (k in r) if (r[k] > 0) printf "  %6d %s\n", r[k], k}' "/proc/$one/smaps" | sort -rn | head -8
read -r rr pr nr < <(rss containerd-shim-runc-v2)

hyperfine --runs "$runs" --warmup 2 --shell=bash --export-json "$work/run.json" \
  -n skiff-shim "$C run --rm --runtime io.containerd.skiff.v2 $img sk-run-\$RANDOM\$RANDOM true" \
  -n runc-shim "$C run --rm $img rc-run-\$RANDOM\$RANDOM true" >/dev/null
median() { jq -r --arg n "$1" '.results[] | select(.command==$n) | .median * 1000' "$work/run.json"; }
ts=$(median skiff-shim); tr=$(median runc-shim)
printf '%-32s %12s %12s %8s\n' "" skiff-shim runc-shim ratio
awk -v s="$rs" -v r="$rr" -v ns="$ns" -v nr="$nr" 'BEGIN {printf "%-32s %12d %12d %8.2f\n", "RSS per idle shim KiB (" ns "/" nr ")", s, r, s/r}'
awk -v s="$ps" -v r="$pr" 'BEGIN {printf "%-32s %12d %12d %8.2f\n", "PSS per idle shim KiB", s, r, s/r}'
awk -v s="$ts" -v r="$tr" 'BEGIN {printf "%-32s %12.1f %12.1f %8.2f\n", "ctr run --rm true ms (median)", s, r, s/r}'
