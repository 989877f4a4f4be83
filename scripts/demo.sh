#!/usr/bin/env bash
# Skiff's main job on an embedded default: build skiff and skiff-agent,
# build a busybox image offline (Debian's busybox-static) into an OCI
# layout, import it, and run the agent on examples/pods/ (a web server with
# liveness and readiness probes, and a crashing container showing
# CrashLoopBackOff). Prints `skiff-agent get pods` as the pods come up, then
# removes everything. The agent and its CNI bridge run in a network
# namespace made for the demo, so the host's network is untouched.
# Needs root. The runtime alone: scripts/runtime-demo.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
skiff_prog=demo.sh
. scripts/lib/setup.sh
skiff_setup demo || exit 1
t0=$(date +%s)
stage() { echo "== [$(( $(date +%s) - t0 ))s] $*"; }

# The demo runs skiff, skiff-agent and skiff-monitor only, built in the dev
# profile: a fresh clone builds them in a fraction of the release build's
# time (fat LTO, one codegen unit), and the test suite reuses the result.
stage "building skiff, skiff-agent and skiff-monitor (cargo build; the first build takes a few minutes)"
cargo build -q -p skiff-runtime --bin skiff -p skiff-agent --bin skiff-agent --bin skiff-monitor
bin="$PWD/target/x86_64-unknown-linux-gnu/debug"
agent="$bin/skiff-agent"

work=$(mktemp -d /tmp/skiff-agent-demo.XXXXXX)
netns="skiff-demo-$$"
sock="unix://$work/agent.sock"
pid=""
cleanup() {
  set +e
  rm -f "$work"/manifests/*.yaml
  if [ -n "$pid" ]; then
    for _ in $(seq 100); do
      [ "$("$agent" get pods --listen "$sock" -A -o json 2>/dev/null | jq '.items | length')" = 0 ] && break
      sleep 0.1
    done
    kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
  fi
  ip netns delete "$netns" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

stage "building the demo image from busybox-static (offline)"
scripts/busybox-image.sh "$work/image" demo >/dev/null
"$agent" image --data-dir "$work/data" import "oci:$work/image:demo" --name localhost/busybox:demo

stage "starting skiff-agent on examples/pods/"
mkdir -p "$work/manifests" "$work/cni"
ip netns add "$netns"
ip -n "$netns" link set lo up
nsenter --net="/run/netns/$netns" "$agent" serve \
  --manifests "$work/manifests" --data-dir "$work/data" --state-dir "$work/state" \
  --listen "$sock" --cni-conf-dir "$work/cni" --pod-cidr 10.89.0.0/24 \
  --runtime "$bin/skiff" --test-backoff 2s,10s >"$work/agent.log" 2>&1 &
pid=$!
for _ in $(seq 100); do "$agent" get pods --listen "$sock" >/dev/null 2>&1 && break; sleep 0.1; done
cp examples/pods/*.yaml "$work/manifests/"

for i in 1 2 3 4; do
  sleep 4
  stage "skiff-agent get pods -o wide   ($((i * 4))s after the manifests)"
  "$agent" get pods --listen "$sock" -o wide
done
stage "skiff-agent logs crash"
"$agent" logs crash --listen "$sock"
stage "the web server, from inside the pod network"
ip=$("$agent" get pods web --listen "$sock" -o json | jq -r .status.podIP)
nsenter --net="/run/netns/$netns" /bin/busybox wget -qO- "http://$ip:8080/"
stage "skiff-agent describe pod web (its events)"
"$agent" describe pod web --listen "$sock" | sed -n '/^Events:/,$p'
