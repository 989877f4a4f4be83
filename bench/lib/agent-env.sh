# Sourced by the scripts that run a release skiff-agent on its own
# (bench/agent.sh, scripts/trace-pod.sh).
#
# agent_env_up [SERVE-ARGS...] makes a work directory ($work, unless set), imports the
# busybox test image as localhost/busybox:bench, writes a bridge CNI
# network (10.90.0.0/16), and starts `skiff-agent serve` inside a network
# namespace of its own ($netns; pods' bridge and veths live there, never in
# the host's), with SERVE-ARGS added. It waits until the agent answers on
# its socket ($sockpath). An EXIT trap removes the pods, stops the agent
# (pid $pid), and deletes the namespace and $work.
#
# pod_yaml NAME prints a pod of busybox httpd with an HTTP readiness and a
# TCP liveness probe every second.
#
# Needs: the release build (scripts/build-release.sh), umoci, jq, curl,
# containernetworking-plugins.
bin="$PWD/target/x86_64-unknown-linux-gnu/release"
agent="$bin/skiff-agent"
pid=""
agent_env_cleanup() {
  set +e
  rm -f "$work"/manifests/*.yaml
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    for _ in $(seq 600); do
      [ "$(curl -s --unix-socket "$sockpath" http://a/pods | jq '.items | length')" = 0 ] && break
      sleep 0.1
    done
    kill "$pid"; wait "$pid" 2>/dev/null
  fi
  ip netns delete "$netns" 2>/dev/null
  rm -rf "$work"
}
agent_env_up() {
  work=${work:-$(mktemp -d /tmp/skiff-agent-env.XXXXXX)}
  netns="skiff-bench-$$"
  sockpath="$work/agent.sock"
  trap agent_env_cleanup EXIT
  scripts/busybox-image.sh "$work/image" bench >/dev/null
  "$agent" image --data-dir "$work/data" import "oci:$work/image:bench" --name localhost/busybox:bench >/dev/null
  mkdir -p "$work/manifests" "$work/cni"
  cat > "$work/cni/10-bench.conflist" <<JSON
{"cniVersion":"1.0.0","name":"skiffbench","plugins":[{"type":"bridge","bridge":"skbench0","isGateway":true,
 "ipam":{"type":"host-local","dataDir":"$work/ipam","ranges":[[{"subnet":"10.90.0.0/16"}]]}}]}
JSON
  ip netns add "$netns"
  ip -n "$netns" link set lo up
  nsenter --net="/run/netns/$netns" "$agent" serve --manifests "$work/manifests" \
    --data-dir "$work/data" --state-dir "$work/state" --listen "unix://$sockpath" \
    --cni-conf-dir "$work/cni" --runtime "$bin/skiff" "$@" >"$work/agent.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do curl -sf --unix-socket "$sockpath" http://a/healthz >/dev/null && return 0; sleep 0.1; done
  echo "the agent did not answer; its log:" >&2
  cat "$work/agent.log" >&2
  return 1
}
pod_yaml() { # NAME: a web pod, probed every second
  cat <<YAML
apiVersion: v1
kind: Pod
metadata:
  name: $1
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: web
    image: localhost/busybox:bench
    command: [httpd, -f, -p, "8080", -h, /www]
    readinessProbe:
      httpGet: {path: /healthz, port: 8080}
      periodSeconds: 1
    livenessProbe:
      tcpSocket: {port: 8080}
      periodSeconds: 1
YAML
}
