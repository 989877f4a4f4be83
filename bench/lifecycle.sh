#!/usr/bin/env bash
# Lifecycle benchmark: skiff against runc and crun, side by side in one run.
#
#   sudo bench/lifecycle.sh [RUNS]
#
# Measures, for each runtime, on the same busybox bundle running /bin/true:
#   1. create + start + wait + delete   (wait: `delete` retried until it succeeds)
#   2. the same, waiting as containerd's shim does: `create --pid-file`,
#      `start`, poll the init's /proc/PID/stat until it is gone or a zombie,
#      then one `delete`
#   3. run                              (foreground: create, start, wait, delete)
# and the peak RSS of `run` (/usr/bin/time -v "Maximum resident set size").
# Prints medians and the skiff/runc and skiff/crun ratios.
#
# With SKIFF_BASELINE=/path/to/another/skiff, that build runs in the same
# hyperfine runs as "base" and a skiff/base ratio is printed too (for
# before/after measurements of one change). SKIFF_BIN=/path/to/skiff
# measures that build as "skiff" instead of the release build.
#
# crun refuses hybrid cgroup hosts, so every runtime runs inside one private
# mount namespace where an empty file is bind-mounted over
# /sys/fs/cgroup/unified/cgroup.controllers (host mounts stay untouched): the
# same wrapper for all three keeps the comparison fair.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-30}

if [ -z "${SKIFF_BENCH_INNER:-}" ]; then
  scripts/build-release.sh
fi
# shellcheck source=bench/lib/crun-on-hybrid.sh
. bench/lib/crun-on-hybrid.sh
bench_in_private_mount_ns "$0" "$runs"

skiff="${SKIFF_BIN:-$PWD/target/x86_64-unknown-linux-gnu/release/skiff}"
work=$(mktemp -d /tmp/skiff-bench.XXXXXX)
trap 'for r in skiff runc crun base; do for id in $(ls "$work/root-$r" 2>/dev/null); do "${bin[$r]}" --root "$work/root-$r" delete -f "$id" >/dev/null 2>&1 || true; done; done; rm -rf "$work"' EXIT
declare -A bin=([skiff]="$skiff" [runc]="$(command -v runc)" [crun]="$(command -v crun)")
runtimes=(skiff runc crun)
if [ -n "${SKIFF_BASELINE:-}" ]; then
  bin[base]=$SKIFF_BASELINE
  runtimes+=(base)
fi

mkdir -p "$work/bundle/rootfs/bin"
cp /bin/busybox "$work/bundle/rootfs/bin/"
for a in sh true; do ln -s busybox "$work/bundle/rootfs/bin/$a"; done
(cd "$work/bundle" && "$skiff" spec)
sed -i -e 's/"terminal": true/"terminal": false/' -e 's|^\t\t\t"sh"$|\t\t\t"true"|' "$work/bundle/config.json"

lifecycle() { # runtime root id
  local r=$1 root=$2 id=$3
  "$r" --root "$root" create --bundle "$work/bundle" "$id"
  "$r" --root "$root" start "$id"
  until "$r" --root "$root" delete "$id" 2>/dev/null; do :; done
}
# As containerd's shim waits: the init's pid from --pid-file, its
# /proc/PID/stat polled until it has exited (state Z, or gone once reaped).
lifecycle_cd() { # runtime root id
  local r=$1 root=$2 id=$3 pid st
  "$r" --root "$root" create --pid-file "$root/$id.pid" --bundle "$work/bundle" "$id"
  "$r" --root "$root" start "$id"
  read -r pid <"$root/$id.pid"
  while read -r _ _ st _ 2>/dev/null <"/proc/$pid/stat" && [ "$st" != Z ]; do :; done
  "$r" --root "$root" delete "$id"
  rm -f "$root/$id.pid"
}
export -f lifecycle lifecycle_cd
export work

cmds_lc=() cmds_cd=() cmds_run=()
names=()
for r in "${runtimes[@]}"; do
  names+=(-n "$r")
  mkdir -p "$work/root-$r"
  cmds_lc+=("lifecycle ${bin[$r]} $work/root-$r lc-$r")
  cmds_cd+=("lifecycle_cd ${bin[$r]} $work/root-$r cd-$r")
  cmds_run+=("${bin[$r]} --root $work/root-$r run --bundle $work/bundle run-$r")
done

hyperfine --warmup 3 --runs "$runs" --export-json "$work/lc.json" --shell=bash \
  "${names[@]}" "${cmds_lc[@]}" >/dev/null
hyperfine --warmup 3 --runs "$runs" --export-json "$work/cd.json" --shell=bash \
  "${names[@]}" "${cmds_cd[@]}" >/dev/null
hyperfine -N --warmup 3 --runs "$runs" --export-json "$work/run.json" \
  "${names[@]}" "${cmds_run[@]}" >/dev/null

median_ms() { jq -r --arg n "$2" '.results[] | select(.command==$n) | .median * 1000' "$1"; }
rss_kb() { # median peak RSS of `run` over 15 runs
  local r=$1 out=()
  for i in $(seq 15); do
    out+=("$(/usr/bin/time -f %M "${bin[$r]}" --root "$work/root-$r" run --bundle "$work/bundle" "rss-$r" 2>&1 >/dev/null | tail -1)")
  done
  printf '%s\n' "${out[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}

printf '%-28s %10s %10s %10s %12s %12s\n' "benchmark (median)" skiff runc crun skiff/runc skiff/crun
for b in lc cd run; do
  case $b in
    lc) label="create+start+wait+delete ms" ;;
    cd) label="  waiting as containerd ms" ;;
    *) label="run ms" ;;
  esac
  s=$(median_ms "$work/$b.json" skiff); r=$(median_ms "$work/$b.json" runc); c=$(median_ms "$work/$b.json" crun)
  awk -v l="$label" -v s="$s" -v r="$r" -v c="$c" 'BEGIN {printf "%-28s %10.2f %10.2f %10.2f %12.2f %12.2f\n", l, s, r, c, s/r, s/c}'
done
s=$(rss_kb skiff); r=$(rss_kb runc); c=$(rss_kb crun)
awk -v s="$s" -v r="$r" -v c="$c" 'BEGIN {printf "%-28s %10d %10d %10d %12.2f %12.2f\n", "run peak RSS KiB", s, r, c, s/r, s/c}'
if [ -n "${SKIFF_BASELINE:-}" ]; then
  for b in lc cd run; do
    s=$(median_ms "$work/$b.json" skiff); x=$(median_ms "$work/$b.json" base)
    awk -v b="$b" -v s="$s" -v x="$x" 'BEGIN {printf "skiff/base %-4s %8.2f ms / %8.2f ms = %5.2f\n", b, s, x, s/x}'
  done
  s=$(rss_kb skiff); x=$(rss_kb base)
  awk -v s="$s" -v x="$x" 'BEGIN {printf "skiff/base rss  %8d KiB / %8d KiB = %5.2f\n", s, x, s/x}'
fi
