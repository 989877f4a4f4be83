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
if [ "$(id -u)" != 0 ]; then
  echo "demo.sh: run as root (containers need namespaces and mounts)" >&2
  exit 1
fi
for tool in umoci ip nsenter /usr/lib/cni/bridge; do
  command -v "$tool" >/dev/null || [ -x "$tool" ] || {
    echo "demo.sh: needs $tool (apt-get install umoci iproute2 util-linux containernetworking-plugins busybox-static)" >&2
    exit 1
  }
done
scripts/build-release.sh
bin="$PWD/target/x86_64-unknown-linux-gnu/release"
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

echo "== building the demo image from busybox-static (offline)"
scripts/busybox-image.sh "$work/image" demo >/dev/null
"$agent" image --data-dir "$work/data" import "oci:$work/image:demo" --name localhost/busybox:demo

echo "== starting skiff-agent on examples/pods/"
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
  echo "== skiff-agent get pods -o wide   (after $((i * 4))s)"
  "$agent" get pods --listen "$sock" -o wide
done
echo "== skiff-agent logs crash"
"$agent" logs crash --listen "$sock"
echo "== the web server, from inside the pod network"
ip=$("$agent" get pods web --listen "$sock" -o json | jq -r .status.podIP)
nsenter --net="/run/netns/$netns" /bin/busybox wget -qO- "http://$ip:8080/"
echo "== skiff-agent describe pod web (its events)"
"$agent" describe pod web --listen "$sock" | sed -n '/^Events:/,$p'
