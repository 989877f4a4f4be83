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
# Then bench/lifecycle.sh measures both in the same hyperfine runs, the
# build with tracing as "skiff" and the one without as "base": the
# skiff/base lines are the cost. runc and crun run beside them as usual.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-40}
dir="$PWD/target/trace-cost"
build() { # OUT FEATURE-ARGS...
  local out=$1
  shift
  SKIFF_LINK_ORDER=0 CARGO_TARGET_DIR="$dir/$out" \
    cargo build --release -q -p skiff-runtime --bin skiff "$@"
  cp "$dir/$out/x86_64-unknown-linux-gnu/release/skiff" "$dir/skiff-$out"
}
mkdir -p "$dir"
build with
build without --no-default-features --features cli
ls -l "$dir/skiff-with" "$dir/skiff-without" | awk '{print $5, $9}'
SKIFF_BIN="$dir/skiff-with" SKIFF_BASELINE="$dir/skiff-without" bench/lifecycle.sh "$runs"
