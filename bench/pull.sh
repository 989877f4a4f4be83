#!/usr/bin/env bash
# Pull benchmark: generated images, from a local docker-registry, into a
# store, unpacked and ready to run. Side by side in the same hyperfine run:
#   skiff   skiff-agent image pull (download, verify, unpack)
#   ctr     containerd 1.6 `ctr images pull` (pull + unpack into overlayfs
#           snapshots), a private containerd with its own root, state and socket
#   skopeo  skopeo copy docker:// -> oci: then umoci unpack
# Every run starts from an empty store (hyperfine --prepare).
#
# The images (SHAPES, default all three), each on busybox:
#   mixed   5 layers of 22 MiB (18 MiB random, 4 MiB text), ~100 MB
#   many    100 layers of 1 MiB random: per-layer costs (requests,
#           verification, one unpack and one snapshot each)
#   big     5 layers of 200 MiB random: throughput
#
#   sudo bench/pull.sh [RUNS] [SHAPES]      e.g. bench/pull.sh 5 "many big"
# Needs: docker-registry skopeo umoci containerd hyperfine jq (Debian).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-10}
shapes=${2:-mixed many big}
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

# A busybox base image, then one image per shape, pushed to the registry.
umoci init --layout "$work/src" >/dev/null
umoci new --image "$work/src:base" >/dev/null
umoci unpack --image "$work/src:base" "$work/b" >/dev/null
mkdir -p "$work/b/rootfs/bin"
cp /bin/busybox "$work/b/rootfs/bin/" && ln -s busybox "$work/b/rootfs/bin/true"
umoci repack --image "$work/src:base" "$work/b" >/dev/null
umoci config --image "$work/src:base" --config.cmd true >/dev/null
rm -rf "$work/b"
make_image() { # SHAPE: add its layers to a copy of base, push it
  local shape=$1 n mib text=0 i
  case $shape in
    mixed) n=5 mib=18 text=4 ;;
    many) n=100 mib=1 ;;
    big) n=5 mib=200 ;;
    *) echo "bench/pull.sh: unknown shape $shape (mixed, many, big)" >&2; exit 1 ;;
  esac
  umoci tag --image "$work/src:base" "$shape" >/dev/null
  umoci unpack --image "$work/src:$shape" "$work/b" >/dev/null
  for i in $(seq "$n"); do
    mkdir -p "$work/b/rootfs/data$i"
    head -c $((mib << 20)) /dev/urandom >"$work/b/rootfs/data$i/random"
    if [ "$text" -gt 0 ]; then
      seq "$i" 2000000 >"$work/seq" && head -c $((text << 20)) "$work/seq" >"$work/b/rootfs/data$i/text"
    fi
    umoci repack --refresh-bundle --image "$work/src:$shape" "$work/b" >/dev/null
  done
  rm -rf "$work/b" "$work/seq"
  skopeo copy -q --dest-tls-verify=false "oci:$work/src:$shape" "docker://127.0.0.1:$port/bench/$shape:v1"
}

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

printf '%-7s %7s %10s %9s %9s %9s %10s %13s\n' image layers MB skiff_s ctr_s skopeo_s skiff/ctr skiff/skopeo
for shape in $shapes; do
  make_image "$shape"
  ref="127.0.0.1:$port/bench/$shape:v1"
  manifest=$(skopeo inspect --raw --tls-verify=false "docker://$ref")
  size=$(jq '[.layers[].size] | add' <<<"$manifest")
  layers=$(jq '.layers | length' <<<"$manifest")
  hyperfine --runs "$runs" --export-json "$work/pull-$shape.json" \
    -n skiff --prepare "rm -rf $work/skiff" \
    "$agent image --data-dir $work/skiff pull -q $ref" \
    -n ctr --prepare "$work/ctr-fresh.sh" \
    "ctr -a $work/ctr/containerd.sock images pull --plain-http --snapshotter overlayfs $ref" \
    -n skopeo --prepare "rm -rf $work/oci $work/bundle" \
    "skopeo copy -q --src-tls-verify=false docker://$ref oci:$work/oci:v1 && umoci unpack --image $work/oci:v1 $work/bundle" \
    >/dev/null
  median() { jq -r --arg n "$1" '.results[] | select(.command==$n) | .median' "$work/pull-$shape.json"; }
  s=$(median skiff); c=$(median ctr); k=$(median skopeo)
  awk -v n="$shape" -v l="$layers" -v b="$size" -v s="$s" -v c="$c" -v k="$k" \
    'BEGIN {printf "%-7s %7d %10.0f %9.3f %9.3f %9.3f %10.2f %13.2f\n", n, l, b / 1e6, s, c, k, s/c, s/k}'
  # The next image starts from empty stores and registry blobs of its own.
  rm -rf "$work/skiff" "$work/oci" "$work/bundle"
done
echo "(MB: the image's layers as stored, compressed; seconds: medians of $runs pulls each)"
