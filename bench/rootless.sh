#!/usr/bin/env bash
# Rootless benchmark: skiff, runc and crun run by an ordinary user, side by
# side in one run.
#
#   sudo bench/rootless.sh [RUNS]
#
# As root, the script makes a throw-away user with subordinate id ranges and
# an $XDG_RUNTIME_DIR, and a busybox bundle it owns with the config of
# `runc spec --rootless` running /bin/true. Then, as that user, for each
# runtime:
#   1. create + start + wait + delete
#   2. run (foreground)
# Prints medians and the skiff/runc and skiff/crun ratios. The user and its
# files are removed at the end.
#
# crun refuses hybrid cgroup hosts (cgroup2 with controllers beside v1), so,
# as bench/lifecycle.sh does, all three run in one private mount namespace
# where an empty file covers /sys/fs/cgroup/unified/cgroup.controllers; the
# user's commands start inside it (setpriv keeps the namespace).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-30}
[ "$(id -u)" = 0 ] || { echo "bench/rootless.sh: run as root (it makes the user it measures as)" >&2; exit 1; }

if [ -z "${SKIFF_BENCH_INNER:-}" ]; then
  scripts/build-release.sh
fi
# shellcheck source=bench/lib/crun-on-hybrid.sh
. bench/lib/crun-on-hybrid.sh
bench_in_private_mount_ns "$0" "$runs"

skiff="$PWD/target/x86_64-unknown-linux-gnu/release/skiff"
user="skbench$$"
work=$(mktemp -d /tmp/skiff-bench-rootless.XXXXXX)
cleanup() {
  pkill -KILL -u "$user" 2>/dev/null || true
  userdel "$user" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
useradd --no-create-home --user-group --shell /bin/sh -K SUB_UID_COUNT=0 -K SUB_GID_COUNT=0 "$user"
uid=$(id -u "$user"); gid=$(id -g "$user")
sub=$((1000000 + uid * 65536))
usermod --add-subuids "$sub-$((sub + 65535))" --add-subgids "$sub-$((sub + 65535))" "$user"
mkdir -p "$work/run" "$work/bundle/rootfs/bin"
cp /bin/busybox "$work/bundle/rootfs/bin/"
for a in sh true; do ln -s busybox "$work/bundle/rootfs/bin/$a"; done
chown -R "$uid:$gid" "$work"
chmod 700 "$work/run"
chmod 755 "$work"

as_user() {
  setpriv --reuid="$uid" --regid="$gid" --clear-groups --inh-caps=-all -- \
    env -i PATH=/usr/bin:/bin:/usr/sbin:/sbin HOME="$work" XDG_RUNTIME_DIR="$work/run" "$@"
}
(cd "$work/bundle" && as_user runc spec --rootless)
sed -i -e 's/"terminal": true/"terminal": false/' -e 's|^\t\t\t"sh"$|\t\t\t"true"|' "$work/bundle/config.json"

declare -A bin=([skiff]="$skiff" [runc]="$(command -v runc)" [crun]="$(command -v crun)")
runtimes=(skiff runc crun)
cat >"$work/lifecycle.sh" <<'EOS'
# lifecycle RUNTIME ID: create, start, wait (delete succeeds once stopped), delete
set -e
r=$1 id=$2
"$r" create --bundle "$BUNDLE" "$id"
"$r" start "$id"
n=0
until "$r" delete "$id" 2>/dev/null; do
  n=$((n + 1)); [ $n -lt 100000 ] || exit 1
done
EOS
cmds_lc=() cmds_run=() names=()
for r in "${runtimes[@]}"; do
  names+=(-n "$r")
  cmds_lc+=("bash $work/lifecycle.sh ${bin[$r]} lc-$r")
  cmds_run+=("${bin[$r]} run --bundle $work/bundle run-$r")
done
as_user env BUNDLE="$work/bundle" hyperfine --warmup 3 --runs "$runs" \
  --export-json "$work/lc.json" -N "${names[@]}" "${cmds_lc[@]}" >/dev/null
as_user hyperfine -N --warmup 3 --runs "$runs" --export-json "$work/run.json" \
  "${names[@]}" "${cmds_run[@]}" >/dev/null

median_ms() { jq -r --arg n "$2" '.results[] | select(.command==$n) | .median * 1000' "$1"; }
printf 'rootless, as uid %s, %s runs each\n' "$uid" "$runs"
printf '%-28s %10s %10s %10s %12s %12s\n' "benchmark (median)" skiff runc crun skiff/runc skiff/crun
for b in lc run; do
  label=$([ $b = lc ] && echo "create+start+wait+delete" || echo "run /bin/true")
  s=$(median_ms "$work/$b.json" skiff); r=$(median_ms "$work/$b.json" runc); c=$(median_ms "$work/$b.json" crun)
  awk -v l="$label" -v s="$s" -v r="$r" -v c="$c" \
    'BEGIN { printf "%-28s %8.1fms %8.1fms %8.1fms %11.2fx %11.2fx\n", l, s, r, c, s/r, s/c }'
done
