# bench/lib/node-up.sh: sourced by the node benchmarks. Builds release
# binaries, starts a Kubernetes 1.20 control plane (tests/k8s/control-plane.sh)
# with its audit log, and one release skiff-agent as its node in a network
# namespace of its own (10.201.0.2), the busybox image imported as
# localhost/busybox:bench; waits for the node to be Ready. Everything is
# torn down on exit. Gives: kc (kubectl as admin), $work, $cp, $node,
# $netns, $pid (the agent), $bin, and the control plane's env ($NETNS_PATH,
# $KUBECTL, $KUBECONFIG, $CA_CERT...).
# Set AGENT_LOG (SKIFF_LOG for the agent), AGENT_FLAGS, AGENT_BIN (another
# skiff-agent binary, with its skiff-monitor beside it) and BENCH_KUBECTL
# (another kubectl for kc) before sourcing.
scripts/build-release.sh
bin="$PWD/target/x86_64-unknown-linux-gnu/release"
agent="${AGENT_BIN:-$bin/skiff-agent}"
work=$(mktemp -d /tmp/skiff-nodebench.XXXXXX)
cp="$work/cp"
netns="skiff-nodebench-$$"
node="bench-node-$$"
subnet=10.91.0.0/16
pid=""

kc() { nsenter --net="$NETNS_PATH" "$KUBECTL" --kubeconfig "$KUBECONFIG" "$@"; }

cleanup() {
  local rc=$?
  set +e
  if [ "$rc" != 0 ] && [ -n "$pid" ]; then
    echo "failed ($rc); the pods and the agent's log:" >&2
    kc get pods -o wide >&2
    tail -n 30 "$work/agent.log" >&2
  fi
  if [ -n "$pid" ]; then
    kc delete pods --all --grace-period=0 --force >/dev/null 2>&1
    for _ in $(seq 600); do
      [ "$(curl -s --unix-socket "$work/agent.sock" http://a/pods | jq '.items | length')" = 0 ] && break
      sleep 0.1
    done
    kill "$pid"; wait "$pid" 2>/dev/null
  fi
  tests/k8s/control-plane.sh down "$cp" >/dev/null 2>&1
  ip netns delete "$netns" 2>/dev/null
  grep -o "$work[^ ]*" /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

SKIFF_K8S_AUDIT=1 tests/k8s/control-plane.sh up "$cp" >/dev/null
set -a
# shellcheck disable=SC1091
. "$cp/env"
set +a
KUBECTL=${BENCH_KUBECTL:-$KUBECTL}
tests/k8s/control-plane.sh node-kubeconfig "$cp" "$node" "$work/node.kubeconfig"
ip netns add "$netns"
ip -n "$netns" link set lo up
tests/k8s/control-plane.sh attach "$cp" "$netns" 10.201.0.2/24
tests/k8s/control-plane.sh exec "$cp" ip route add "$subnet" via 10.201.0.2

scripts/busybox-image.sh "$work/image" bench >/dev/null
"$agent" image --data-dir "$work/data" import "oci:$work/image:bench" --name localhost/busybox:bench >/dev/null
mkdir -p "$work/manifests" "$work/cni"
cat > "$work/cni/10-bench.conflist" <<JSON
{"cniVersion":"1.0.0","name":"skiffnode","plugins":[{"type":"bridge","bridge":"sknode0","isGateway":true,
 "ipam":{"type":"host-local","dataDir":"$work/ipam","ranges":[[{"subnet":"$subnet"}]],
 "routes":[{"dst":"0.0.0.0/0"}]}}]}
JSON
# shellcheck disable=SC2086
SKIFF_LOG=${AGENT_LOG:-info} nsenter --net="/run/netns/$netns" "$agent" serve --manifests "$work/manifests" \
  --data-dir "$work/data" --state-dir "$work/state" --listen "unix://$work/agent.sock" \
  --cni-conf-dir "$work/cni" --runtime "$bin/skiff" --node-name "$node" \
  --kubeconfig "$work/node.kubeconfig" --node-ip 10.201.0.2 --client-ca-file "$CA_CERT" \
  ${AGENT_FLAGS:-} >"$work/agent.log" 2>&1 &
pid=$!
for _ in $(seq 600); do kc get "node/$node" >/dev/null 2>&1 && break; sleep 0.2; done
kc wait --for=condition=Ready "node/$node" --timeout=120s >/dev/null

