#!/usr/bin/env bash
# A pod start as a picture (docs chapter 14).
#
#   sudo scripts/trace-pod.sh OUT.svg [OUT.json]
#
# Runs the release skiff-agent with --trace-dir in a network namespace of its
# own (bench/lib/agent-env.sh), starts one pod: busybox httpd with an HTTP
# readiness and a TCP liveness probe every second, the image already in the
# store. Once the pod is Ready and its first probe success is on the trace,
# the trace is drawn with scripts/trace-svg.py (and kept as OUT.json if
# asked).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: scripts/trace-pod.sh OUT.svg [OUT.json]}
json=${2:-}
scripts/build-release.sh
# shellcheck source=bench/lib/agent-env.sh
. bench/lib/agent-env.sh
work=$(mktemp -d /tmp/skiff-trace-pod.XXXXXX)
agent_env_up --trace-dir "$work/traces"
pod_yaml web > "$work/manifests/web.yaml"
for _ in $(seq 300); do
  f=$(ls "$work"/traces/default_web_*.json 2>/dev/null || true)
  [ -n "$f" ] && grep -q "probe success" "$f" && break
  sleep 0.1
done
if [ -z "$f" ] || ! grep -q "probe success" "$f"; then
  echo "no complete trace (the pod did not become ready in 30 s); the agent's log:" >&2
  cat "$work/agent.log" >&2
  exit 1
fi
[ -z "$json" ] || cp "$f" "$json"
scripts/trace-svg.py "$f" "$out" --title "a pod start under skiff-agent: image, sandbox, CNI, pause, container, first readiness probe"
echo "wrote $out"
