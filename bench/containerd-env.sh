# Sourced by the benchmark scripts: a private containerd 1.6 with a busybox
# image built offline.
#
#   ctrd_start WORK NAMESPACE [PATH-PREFIX]
#       starts containerd with root, state and socket under WORK, PATH-PREFIX
#       first in its PATH (where it finds shims); sets $C (a ctr command line
#       for NAMESPACE) and $img (the imported image's name).
#   ctrd_stop
#       kills and deletes every task and container, stops containerd and
#       unmounts what it left under WORK.
# Needs: containerd umoci skopeo (Debian).

ctrd_start() {
  ctrd_work=$1
  C="ctr -a $ctrd_work/containerd.sock -n $2"
  cat >"$ctrd_work/config.toml" <<TOML
version = 2
root = "$ctrd_work/root"
state = "$ctrd_work/state"
[grpc]
  address = "$ctrd_work/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  disable = true
TOML
  PATH="${3:+$3:}$PATH" containerd --config "$ctrd_work/config.toml" >"$ctrd_work/containerd.log" 2>&1 &
  echo $! >"$ctrd_work/containerd.pid"
  until $C version >/dev/null 2>&1; do sleep 0.1; done

  umoci init --layout "$ctrd_work/img" >/dev/null
  umoci new --image "$ctrd_work/img:v1" >/dev/null
  umoci unpack --image "$ctrd_work/img:v1" "$ctrd_work/b" >/dev/null
  mkdir -p "$ctrd_work/b/rootfs/bin"
  cp /bin/busybox "$ctrd_work/b/rootfs/bin/"
  for a in sh sleep true; do ln -s busybox "$ctrd_work/b/rootfs/bin/$a"; done
  umoci repack --image "$ctrd_work/img:v1" "$ctrd_work/b" >/dev/null
  umoci config --image "$ctrd_work/img:v1" --config.env PATH=/bin >/dev/null
  skopeo copy -q "oci:$ctrd_work/img:v1" "oci-archive:$ctrd_work/img.tar:bench/busybox:v1"
  $C images import --base-name docker.io/bench/busybox --digests "$ctrd_work/img.tar" >/dev/null
  img=$($C images ls -q | head -1)
}

ctrd_stop() {
  [ -n "${ctrd_work:-}" ] || return 0
  for t in $($C task ls -q 2>/dev/null); do $C task kill -s SIGKILL "$t" >/dev/null 2>&1 || true; done
  sleep 1
  for t in $($C task ls -q 2>/dev/null); do $C task delete "$t" >/dev/null 2>&1 || true; done
  for c in $($C containers ls -q 2>/dev/null); do $C containers rm "$c" >/dev/null 2>&1 || true; done
  [ -f "$ctrd_work/containerd.pid" ] && kill "$(cat "$ctrd_work/containerd.pid")" 2>/dev/null || true
  sleep 0.5
  grep " $ctrd_work" /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
}
