#!/usr/bin/env bash
# Shim benchmark: containerd-shim-skiff-v2 against containerd-shim-runc-v2,
# under one private containerd 1.6, in the same run.
#   1. resident memory per shim with 20 idle containers each: VmRSS, and
#      PSS (shared pages of the binary and libc split among the 20);
#   2. `ctr run --rm IMAGE ID true` wall time through each shim (hyperfine).
#
#   sudo bench/shim.sh [RUNS]
# Needs: containerd umoci skopeo hyperfine jq (Debian).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}
cargo build --release -q -p skiff-runtime -p skiff-shim
bin="$PWD/target/x86_64-unknown-linux-gnu/release"
work=$(mktemp -d /tmp/skiff-shimbench.XXXXXX)
C="ctr -a $work/containerd.sock -n shimbench"
cleanup() {
  for t in $($C task ls -q 2>/dev/null); do $C task kill -s SIGKILL "$t" >/dev/null 2>&1 || true; done
  sleep 1
  for t in $($C task ls -q 2>/dev/null); do $C task delete "$t" >/dev/null 2>&1 || true; done
  for c in $($C containers ls -q 2>/dev/null); do $C containers rm "$c" >/dev/null 2>&1 || true; done
  [ -f "$work/containerd.pid" ] && kill "$(cat "$work/containerd.pid")" 2>/dev/null || true
  sleep 0.5
  grep " $work" /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

cat > "$work/config.toml" <<TOML
version = 2
root = "$work/root"
state = "$work/state"
[grpc]
  address = "$work/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  disable = true
TOML
PATH="$bin:$PATH" containerd --config "$work/config.toml" >"$work/containerd.log" 2>&1 &
echo $! >"$work/containerd.pid"
until $C version >/dev/null 2>&1; do sleep 0.1; done

# A busybox image, built offline.
umoci init --layout "$work/img" >/dev/null
umoci new --image "$work/img:v1" >/dev/null
umoci unpack --image "$work/img:v1" "$work/b" >/dev/null
mkdir -p "$work/b/rootfs/bin"
cp /bin/busybox "$work/b/rootfs/bin/"
for a in sh sleep true; do ln -s busybox "$work/b/rootfs/bin/$a"; done
umoci repack --image "$work/img:v1" "$work/b" >/dev/null
umoci config --image "$work/img:v1" --config.env PATH=/bin >/dev/null
skopeo copy -q "oci:$work/img:v1" "oci-archive:$work/img.tar:bench/busybox:v1"
$C images import --base-name docker.io/bench/busybox --digests "$work/img.tar" >/dev/null
img=$($C images ls -q | head -1)

for i in $(seq 1 20); do
  $C run -d --runtime io.containerd.skiff.v2 "$img" "sk-$i" sleep 100000 >/dev/null
  $C run -d "$img" "rc-$i" sleep 100000 >/dev/null
done
sleep 1
rss() { # average VmRSS and Pss (KiB) of the shims whose command line matches $1
  local total=0 pss=0 n=0
  for p in $(pgrep -f "$1 -namespace shimbench"); do
    total=$((total + $(awk '/VmRSS/ {print $2}' "/proc/$p/status")))
    pss=$((pss + $(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup"))); n=$((n + 1))
  done
  echo "$((total / n)) $((pss / n)) $n"
}
read -r rs ps ns < <(rss containerd-shim-skiff-v2)
# Where one skiff shim's resident pages are (KiB by mapping), and its threads.
one=$(pgrep -f "containerd-shim-skiff-v2 -namespace shimbench" | head -1)
echo "one skiff shim: $(awk '/^Threads/ {print $2}' "/proc/$one/status") threads; resident KiB by mapping:"
awk '/^[0-9a-f]+-[0-9a-f]+ / {n = ($6 == "" ? "[anon]" : $6)} /^Rss:/ {r[n] += $2}
     END {for (k in r) if (r[k] > 0) printf "  %6d %s\n", r[k], k}' "/proc/$one/smaps" | sort -rn | head -8
read -r rr pr nr < <(rss containerd-shim-runc-v2)

hyperfine --runs "$runs" --warmup 2 --shell=bash --export-json "$work/run.json" \
  -n skiff-shim "$C run --rm --runtime io.containerd.skiff.v2 $img sk-run-\$RANDOM\$RANDOM true" \
  -n runc-shim "$C run --rm $img rc-run-\$RANDOM\$RANDOM true" >/dev/null
median() { jq -r --arg n "$1" '.results[] | select(.command==$n) | .median * 1000' "$work/run.json"; }
ts=$(median skiff-shim); tr=$(median runc-shim)
printf '%-32s %12s %12s %8s\n' "" skiff-shim runc-shim ratio
awk -v s="$rs" -v r="$rr" -v ns="$ns" -v nr="$nr" 'BEGIN {printf "%-32s %12d %12d %8.2f\n", "RSS per idle shim KiB (" ns "/" nr ")", s, r, s/r}'
awk -v s="$ps" -v r="$pr" 'BEGIN {printf "%-32s %12d %12d %8.2f\n", "PSS per idle shim KiB", s, r, s/r}'
awk -v s="$ts" -v r="$tr" 'BEGIN {printf "%-32s %12.1f %12.1f %8.2f\n", "ctr run --rm true ms (median)", s, r, s/r}'
