#!/usr/bin/env bash
# Pull benchmark: a generated ~100 MB image in 6 layers, from a local
# docker-registry, into a store, unpacked and ready to run. Side by side in
# the same hyperfine run:
#   skiff   skiff-agent image pull (download, verify, unpack)
#   ctr     containerd 1.6 `ctr images pull` (pull + unpack into overlayfs
#           snapshots), a private containerd with its own root, state and socket
#   skopeo  skopeo copy docker:// -> oci: then umoci unpack
# Every run starts from an empty store (hyperfine --prepare).
#
#   sudo bench/pull.sh [RUNS]
# Needs: docker-registry skopeo umoci containerd hyperfine jq (Debian).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-10}
scripts/build-release.sh
agent="$PWD/target/x86_64-unknown-linux-gnu/release/skiff-agent"
work=$(mktemp -d /tmp/skiff-pullbench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$work/containerd.pid" ] && kill "$(cat "$work/containerd.pid")" 2>/dev/null || true
  sleep 0.5
  umount -R "$work/ctr" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# A registry on a free loopback port.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/registry.yml" <<YML
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $work/registry}}
http: {addr: "127.0.0.1:$port"}
YML
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
pids+=($!)
until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do sleep 0.1; done

# The image: busybox, then five layers of 22 MiB (18 MiB random, 4 MiB text),
# about 100 MB compressed.
umoci init --layout "$work/src" >/dev/null
umoci new --image "$work/src:v1" >/dev/null
umoci unpack --image "$work/src:v1" "$work/b" >/dev/null
mkdir -p "$work/b/rootfs/bin"
cp /bin/busybox "$work/b/rootfs/bin/" && ln -s busybox "$work/b/rootfs/bin/true"
umoci repack --image "$work/src:v1" "$work/b" >/dev/null
for i in 1 2 3 4 5; do
  mkdir -p "$work/b/rootfs/data$i"
  head -c $((18 << 20)) /dev/urandom >"$work/b/rootfs/data$i/random"
  seq "$i" 2000000 >"$work/seq" && head -c $((4 << 20)) "$work/seq" >"$work/b/rootfs/data$i/text"
  umoci repack --image "$work/src:v1" "$work/b" >/dev/null
done
rm -f "$work/seq"
umoci config --image "$work/src:v1" --config.cmd true >/dev/null
skopeo copy -q --dest-tls-verify=false "oci:$work/src:v1" "docker://127.0.0.1:$port/bench/big:v1"
ref="127.0.0.1:$port/bench/big:v1"
size=$(du -sb "$work/registry" | cut -f1)

# A private containerd.
mkdir -p "$work/ctr"
cat > "$work/containerd.toml" <<TOML
version = 2
root = "$work/ctr/root"
state = "$work/ctr/state"
[grpc]
  address = "$work/ctr/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  disable = true
TOML
cat > "$work/ctr-fresh.sh" <<SH
#!/bin/bash
[ -f $work/containerd.pid ] && kill \$(cat $work/containerd.pid) 2>/dev/null && while kill -0 \$(cat $work/containerd.pid) 2>/dev/null; do sleep 0.05; done
umount -R $work/ctr/root 2>/dev/null; umount -R $work/ctr/state 2>/dev/null
rm -rf $work/ctr/root $work/ctr/state
containerd --config $work/containerd.toml >$work/containerd.log 2>&1 &
echo \$! > $work/containerd.pid
until [ -S $work/ctr/containerd.sock ] && ctr -a $work/ctr/containerd.sock version >/dev/null 2>&1; do sleep 0.05; done
SH
chmod +x "$work/ctr-fresh.sh"

hyperfine --runs "$runs" --export-json "$work/pull.json" \
  -n skiff --prepare "rm -rf $work/skiff" \
  "$agent image --data-dir $work/skiff pull -q $ref" \
  -n ctr --prepare "$work/ctr-fresh.sh" \
  "ctr -a $work/ctr/containerd.sock images pull --plain-http --snapshotter overlayfs $ref" \
  -n skopeo --prepare "rm -rf $work/oci $work/bundle" \
  "skopeo copy -q --src-tls-verify=false docker://$ref oci:$work/oci:v1 && umoci unpack --image $work/oci:v1 $work/bundle" \
  >/dev/null

median() { jq -r --arg n "$1" '.results[] | select(.command==$n) | .median' "$work/pull.json"; }
s=$(median skiff); c=$(median ctr); k=$(median skopeo)
printf 'image: %s bytes compressed in the registry, 6 layers\n' "$size"
printf '%-10s %10s %10s %10s %12s %12s\n' "pull (s)" skiff ctr skopeo skiff/ctr skiff/skopeo
awk -v s="$s" -v c="$c" -v k="$k" 'BEGIN {printf "%-10s %10.3f %10.3f %10.3f %12.2f %12.2f\n", "median", s, c, k, s/c, s/k}'
