#!/usr/bin/env bash
# What `--trace` costs when it is off (issue: "free when off").
#
#   sudo bench/trace-cost.sh [RUNS]
#
# Builds skiff twice, the same way except for the `trace` feature: once with
# it (the default; each span is then one atomic load when tracing is off)
# and once without it (the spans compile to nothing). Both are built without
# the link-order profile (SKIFF_LINK_ORDER=0): the profile names symbols of
# the default build only, and would lay out one binary and not the other.
# Then the two run side by side, and again in the other order (hyperfine
# runs its commands one after the other, and the later one tends to meet a
# warmer machine): `run` of /bin/true, and create+start+wait+delete. The
# cost is the with/without ratio of the medians, over both orders.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-100}
dir="$PWD/target/trace-cost"
# Both as the release skiff is built (scripts/build-release.sh: musl, and
# libseccomp from a directory of its own), each in a target directory of
# its own.
build() { # OUT FEATURE-ARGS...
  local out=$1
  shift
  SKIFF_LINK_ORDER=0 CARGO_TARGET_DIR="$dir/$out" scripts/build-release.sh skiff "$@"
  cp "$dir/$out/x86_64-unknown-linux-musl/release/skiff" "$dir/skiff-$out"
}
mkdir -p "$dir"
build with
build without --no-default-features --features cli
work=$(mktemp -d /tmp/skiff-trace-cost.XXXXXX)
trap 'for b in with without; do for id in $(ls "$work/root-$b" 2>/dev/null); do "$dir/skiff-$b" --root "$work/root-$b" delete -f "$id" >/dev/null 2>&1 || true; done; done; rm -rf "$work"' EXIT
mkdir -p "$work/bundle/rootfs/bin" "$work/root-with" "$work/root-without"
cp /bin/busybox "$work/bundle/rootfs/bin/"
for a in sh true; do ln -s busybox "$work/bundle/rootfs/bin/$a"; done
(cd "$work/bundle" && "$dir/skiff-with" spec)
sed -i -e 's/"terminal": true/"terminal": false/' -e 's|^\t\t\t"sh"$|\t\t\t"true"|' "$work/bundle/config.json"
lifecycle() { # skiff root id
  "$1" --root "$2" create --bundle "$work/bundle" "$3"
  "$1" --root "$2" start "$3"
  until "$1" --root "$2" delete "$3" 2>/dev/null; do :; done
}
export -f lifecycle
export work
cmd_run() { echo "$dir/skiff-$1 --root $work/root-$1 run --bundle $work/bundle run-$1"; }
cmd_lc() { echo "lifecycle $dir/skiff-$1 $work/root-$1 lc-$1"; }
i=0
for order in "with without" "without with"; do
  set -- $order
  i=$((i + 1))
  hyperfine -N --warmup 5 --runs "$runs" --export-json "$work/run-$i.json" \
    -n "$1" "$(cmd_run "$1")" -n "$2" "$(cmd_run "$2")" >/dev/null
  hyperfine --shell=bash --warmup 5 --runs "$runs" --export-json "$work/lc-$i.json" \
    -n "$1" "$(cmd_lc "$1")" -n "$2" "$(cmd_lc "$2")" >/dev/null
done
median_ms() { jq -r --arg n "$2" '.results[] | select(.command==$n) | .median * 1000' "$1"; }
printf '%-34s %10s %10s %8s\n' "median (ms)" with without ratio
for b in run lc; do
  for i in 1 2; do
    w=$(median_ms "$work/$b-$i.json" with); o=$(median_ms "$work/$b-$i.json" without)
    label="$b, $( [ $i = 1 ] && echo "with first" || echo "without first")"
    awk -v l="$label" -v w="$w" -v o="$o" 'BEGIN {printf "%-34s %10.2f %10.2f %8.3f\n", l, w, o, w/o}'
  done
done
printf '%-34s %10s %10s\n' "binary size (bytes)" "$(stat -c %s "$dir/skiff-with")" "$(stat -c %s "$dir/skiff-without")"
