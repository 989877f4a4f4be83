#!/usr/bin/env bash
# Profile-guided code layout: writes build/link-order/skiff-runtime.txt,
# skiff-shim.txt and skiff-agent.txt, the symbol order the release builds
# hand to the linker (see build/link_order.rs for why this halves resident
# memory).
#
#   sudo bench/link-order.sh [ROUNDS] ["skiff shim agent"]   (default 2, all)
#
# Each round builds the release binaries, copies them onto a small ext4
# loop device of our own whose read-ahead is 0, and runs them there in
# phases, each on a cold page cache. After a phase, the file's cached pages
# (mincore) are exactly the pages it read; for the long-lived shim, the
# pages its daemon has mapped while idle (/proc/PID/pagemap) come first. The
# symbols on those pages, phase by phase, make the order file. A second
# round profiles the ordered binary, where the hot code is packed, and drops
# the cold functions that only shared a page with hot ones the first time.
#
# Phases, hottest first:
#   skiff: run of /bin/true | create, start, state, delete as containerd
#          calls them | exec, ps, list, pause, resume, events, update, kill,
#          delete --force, spec, features
#   shim:  the daemon of one idle container | exec, ps, pause, resume,
#          metrics, kill, delete and `ctr run --rm`
#   agent: a node of the test control plane (tests/k8s/control-plane.sh)
#          with ten pods probed every second, steady (the pages it has
#          mapped) | logs, exec, stats, deletion
# Needs: containerd umoci skopeo python3 e2fsprogs (Debian), and for the
# agent the control plane's build.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-2}
which=${2:-skiff shim agent}
repo=$PWD
rel="$repo/target/x86_64-unknown-linux-gnu/release"
lo="python3 $repo/bench/link_order.py"
work=$(mktemp -d /tmp/skiff-linkorder.XXXXXX)
mnt="$work/mnt"
loop=""
. bench/containerd-env.sh
cleanup() {
  ctrd_stop
  for id in $(ls "$work/root" 2>/dev/null); do "$rel/skiff" --root "$work/root" delete -f "$id" >/dev/null 2>&1 || true; done
  mountpoint -q "$mnt" && umount "$mnt"
  [ -n "$loop" ] && losetup -d "$loop"
  rm -rf "$work"
}
trap cleanup EXIT

# The profiling disk: read-ahead 0, so a page fault reads one page.
truncate -s 64M "$work/disk.img"
mkfs.ext4 -q "$work/disk.img"
loop=$(losetup -f --show "$work/disk.img")
echo 0 >"/sys/block/${loop#/dev/}/queue/read_ahead_kb"
mkdir -p "$mnt"
mount "$loop" "$mnt"

# A busybox bundle for the runtime phases.
b="$work/bundle"
mkdir -p "$b/rootfs/bin"
cp /bin/busybox "$b/rootfs/bin/"
for a in sh true sleep; do ln -s busybox "$b/rootfs/bin/$a"; done

profile_skiff() {
  local s="$mnt/skiff" r="$work/root" p="$work/pages"
  cp "$rel/skiff" "$s"
  (cd "$b" && rm -f config.json && "$s" spec)
  sed -i -e 's/"terminal": true/"terminal": false/' -e 's|^\t\t\t"sh"$|\t\t\t"true"|' "$b/config.json"

  $lo evict "$s"
  "$s" --root "$r" run --bundle "$b" lo-run >/dev/null
  # the benchmark's wrapper: a private mount namespace that hides the
  # hybrid host's cgroup2 controllers file
  local empty="$work/empty"
  : >"$empty"
  unshare --mount --propagation private bash -c \
    "mount --bind '$empty' /sys/fs/cgroup/unified/cgroup.controllers 2>/dev/null; '$s' --root '$r' run --bundle '$b' lo-run2" >/dev/null
  $lo cached "$s" "$p/skiff.1-run"

  $lo evict "$s"
  local log="$work/log.json"
  "$s" --root "$r" --log "$log" --log-format json create --bundle "$b" --pid-file "$work/init.pid" lo-lc
  "$s" --root "$r" --log "$log" --log-format json start lo-lc
  "$s" --root "$r" --log "$log" --log-format json state lo-lc >/dev/null
  until "$s" --root "$r" --log "$log" --log-format json delete lo-lc 2>/dev/null; do :; done
  $lo cached "$s" "$p/skiff.2-lifecycle"

  $lo evict "$s"
  sed -i 's|^\t\t\t"true"$|\t\t\t"sleep", "100"|' "$b/config.json"
  "$s" --root "$r" create --bundle "$b" lo-x
  "$s" --root "$r" start lo-x
  jq '.process | .args = ["true"]' "$b/config.json" >"$work/process.json"
  "$s" --root "$r" exec --process "$work/process.json" --detach --pid-file "$work/exec.pid" lo-x
  "$s" --root "$r" exec lo-x true
  "$s" --root "$r" ps lo-x >/dev/null
  "$s" --root "$r" ps --format json lo-x >/dev/null
  "$s" --root "$r" list >/dev/null
  "$s" --root "$r" list --format json >/dev/null
  "$s" --root "$r" pause lo-x
  "$s" --root "$r" resume lo-x
  "$s" --root "$r" events --stats lo-x >/dev/null
  "$s" --root "$r" update --memory 100000000 lo-x
  "$s" --root "$r" kill lo-x 15
  "$s" --root "$r" kill --all lo-x 9
  "$s" --root "$r" delete --force lo-x
  (cd "$work" && "$s" spec --rootless >/dev/null 2>&1 && rm -f config.json) || true
  "$s" features >/dev/null
  "$s" --version >/dev/null
  $lo cached "$s" "$p/skiff.3-other"
  rm -f "$s"
}

profile_shim() {
  local d="$mnt/shim" p="$work/pages"
  mkdir -p "$d"
  cp "$rel/containerd-shim-skiff-v2" "$d/"
  ln -sf "$rel/skiff" "$d/skiff"
  local s="$d/containerd-shim-skiff-v2"
  $lo evict "$s"
  ctrd_start "$work/ctrd" linkorder "$d"
  $C run -d --runtime io.containerd.skiff.v2 "$img" lo-idle sleep 1000 >/dev/null
  sleep 1
  local pid
  pid=$(pgrep -f "containerd-shim-skiff-v2 -namespace linkorder" | head -1)
  $lo mapped "$pid" "$s" "$p/shim.1-idle"
  $C task exec --exec-id e1 lo-idle true
  $C task ps lo-idle >/dev/null
  $C task pause lo-idle
  $C task resume lo-idle
  $C task metrics lo-idle >/dev/null
  $C task kill -s SIGKILL lo-idle
  until $C task ls | grep -q 'lo-idle.*STOPPED'; do sleep 0.1; done
  $C task delete lo-idle >/dev/null
  $C containers rm lo-idle
  $C run --rm --runtime io.containerd.skiff.v2 "$img" lo-rm true
  ctrd_stop
  ctrd_work=""
  $lo cached "$s" "$p/shim.2-serve"
}

profile_agent() {
  local d="$mnt/agent" p="$work/pages"
  mkdir -p "$d"
  # The monitor must sit next to the agent (it finds it there).
  cp "$rel/skiff-agent" "$rel/skiff-monitor" "$d/"
  local s="$d/skiff-agent"
  $lo evict "$s"
  # A node of the test control plane with ten probed pods, then what a
  # node does besides: logs, exec, deletion. In a subshell: node-up.sh's
  # EXIT trap tears the node and the control plane down.
  (
    export SKIFF_LINK_MAP_DIR="$work/maps" AGENT_BIN="$s"
    # For pod_yaml only (before node-up.sh, which sets $pid and $agent).
    # shellcheck source=lib/agent-env.sh
    . bench/lib/agent-env.sh
    # shellcheck source=lib/node-up.sh
    . bench/lib/node-up.sh
    for i in $(seq 10); do pod_yaml "lo-$i"; echo ---; done >"$work/pods.yaml"
    kc apply -f "$work/pods.yaml" >/dev/null
    kc wait --for=condition=Ready pod --all --timeout=300s >/dev/null
    sleep 20
    $lo mapped "$pid" "$s" "$p/agent.1-steady"
    kc logs lo-1 >/dev/null
    kc exec lo-1 -- true
    kc get --raw "/api/v1/nodes/$node/proxy/stats/summary" >/dev/null
    kc delete pods --all --grace-period=1 >/dev/null
  )
  $lo cached "$s" "$p/agent.2-serve"
  rm -rf "$d"
}

for round in $(seq 1 "$rounds"); do
  echo "== round $round"
  rm -rf "$work/pages" "$work/maps" "$work/ctrd"
  mkdir -p "$work/pages" "$work/maps" "$work/ctrd"
  SKIFF_LINK_MAP_DIR="$work/maps" scripts/build-release.sh
  if [[ " $which " == *" skiff "* ]]; then
    profile_skiff
    $lo order "$rel/skiff" "$work/maps/skiff.map" build/link-order/skiff-runtime.txt \
      "$work/pages/skiff.1-run" "$work/pages/skiff.2-lifecycle" "$work/pages/skiff.3-other"
  fi
  if [[ " $which " == *" shim "* ]]; then
    profile_shim
    $lo order "$rel/containerd-shim-skiff-v2" "$work/maps/containerd-shim-skiff-v2.map" build/link-order/skiff-shim.txt \
      "$work/pages/shim.1-idle" "$work/pages/shim.2-serve"
  fi
  if [[ " $which " == *" agent "* ]]; then
    profile_agent
    $lo order "$rel/skiff-agent" "$work/maps/skiff-agent.map" build/link-order/skiff-agent.txt \
      "$work/pages/agent.1-steady" "$work/pages/agent.2-serve"
  fi
done
scripts/build-release.sh
echo "wrote build/link-order/*.txt for: $which; measure with bench/lifecycle.sh, bench/shim.sh and bench/node.sh"
