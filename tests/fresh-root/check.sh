#!/usr/bin/env bash
# The fresh-machine check: do the README's two commands, exactly as written,
# work on a Debian bookworm machine that has a Rust toolchain and nothing
# else?
#
#   tests/fresh-root/check.sh          (as root; scripts/test.sh's stage "fresh")
#
# 1. A pristine bookworm root is made with debootstrap, from the same Debian
#    archive and suites apt uses here, and cached (SKIFF_FRESH_CACHE, default
#    /var/cache/skiff-fresh-root), since it never changes.
# 2. Each run copies it, adds a copy of this machine's Rust toolchain (rustup
#    and cargo under /root) and a clean clone of the repository's HEAD, and
#    nothing else: no package beyond debootstrap's, no cargo registry, no
#    target directory (only the machine's resolver and local certificate
#    authorities, which its network needs).
# 3. In mount and PID namespaces of its own, the copy gets its own /proc,
#    /sys, /dev, /run and /tmp, and the host's cgroup hierarchies bound in
#    (the tests create cgroups), and becomes the root with pivot_root; then,
#    with an empty environment, the README's first code block runs line by
#    line: the demo, then the tests (which, seeing SKIFF_FRESH_ROOT, run
#    their stages there: lint, host, vm). A command that needs a package
#    scripts/packages.txt does not list fails here, because nothing else is
#    installed. Then tests/fresh-root/bad-input.sh runs them as another
#    user, on another distribution, without Rust and with apt locked. One
#    cache crosses in, as the base root's does: the
#    Kubernetes control plane that tests/k8s/control-plane.sh builds from
#    Debian's source package (7 minutes on 2 cores; SKIFF_K8S_CACHE, default
#    /var/cache/skiff-k8s). When this machine has none yet, the run inside
#    builds it there, with the fresh root's own packages, and it is kept.
# 4. Whatever happens, every process started in the copy dies with its PID
#    namespace, its mounts with its mount namespace, and the copy is removed.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
prog=fresh-root
say() { echo "$prog: $*" >&2; }
[ "$(id -u)" = 0 ] || { say "run as root (debootstrap, namespaces and the tests need it)"; exit 1; }

cache=${SKIFF_FRESH_CACHE:-/var/cache/skiff-fresh-root}
base=$cache/bookworm
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9                 # one builder of the base root at a time

# ------------------------------------------------------------ the base ----
# Debian's own repositories as apt knows them here (not third-party ones).
debian_repos() {
  apt-get indextargets --format '$(REPO_URI) $(RELEASE) $(COMPONENT)' 'Created-By: Packages' |
    awk '$2 ~ /^bookworm/' | sort -u
}
if [ ! -e "$base/.ok" ]; then
  mirror=$(debian_repos | awk '$2 == "bookworm" {print $1; exit}')
  [ -n "$mirror" ] || { say "apt knows no bookworm archive to debootstrap from"; exit 1; }
  say "debootstrap bookworm from $mirror into $base (once; cached)"
  start=$(date +%s)
  rm -rf "$base.tmp"
  if ! debootstrap --variant=minbase bookworm "$base.tmp" "$mirror" >"$cache/debootstrap.log" 2>&1; then
    tail -n 20 "$cache/debootstrap.log" >&2; rm -rf "$base.tmp"; say "debootstrap failed"; exit 1
  fi
  # the same suites as this machine (updates and security included)
  debian_repos | awk '{print "deb " $1 " " $2 " " $3}' > "$base.tmp/etc/apt/sources.list"
  rm -rf "$base.tmp/var/cache/apt/archives/"*.deb
  rm -rf "$base"; mv "$base.tmp" "$base"; touch "$base/.ok"
  say "base root made in $(( $(date +%s) - start )) s"
fi
flock -u 9

# ------------------------------------------------------------ the copy ----
root=$(mktemp -d /var/tmp/skiff-fresh-root.XXXXXX)
cleanup() {
  set +e
  # The commands ran in a PID namespace of their own: when its first
  # process ended (or unshare was killed: --kill-child), the kernel killed
  # everything left in it, so nothing lives in the copy any more.
  rm -rf --one-file-system "$root"
}
trap cleanup EXIT
start=$(date +%s)
cp -a "$base/." "$root/"
# What the machine's network needs, which a fresh machine of the same
# place has too: its resolver, and the local certificate authorities (an
# egress proxy's, say) that ca-certificates adds to the trust store when the
# README's commands install it.
cp /etc/resolv.conf "$root/etc/resolv.conf"
if [ -d /usr/local/share/ca-certificates ]; then
  mkdir -p "$root/usr/local/share/ca-certificates"
  cp -a /usr/local/share/ca-certificates/. "$root/usr/local/share/ca-certificates/"
fi
rustup_home=${RUSTUP_HOME:-$HOME/.rustup}
cargo_bin=$(dirname "$(command -v cargo)")
[ -d "$rustup_home/toolchains" ] || { say "no rustup toolchain at $rustup_home to copy"; exit 1; }
mkdir -p "$root/root/.rustup" "$root/root/.cargo/bin"
cp -a "$rustup_home/toolchains" "$rustup_home/settings.toml" "$root/root/.rustup/" 2>/dev/null || \
  cp -a "$rustup_home/toolchains" "$root/root/.rustup/"
[ -d "$rustup_home/update-hashes" ] && cp -a "$rustup_home/update-hashes" "$root/root/.rustup/"
cp -a "$cargo_bin/." "$root/root/.cargo/bin/"
git clone -q --no-local --no-hardlinks "$top" "$root/root/skiff"
say "copy of the base, the Rust toolchain and a clone of $(git -C "$top" rev-parse --short HEAD) ready in $(( $(date +%s) - start )) s"

# The README's two commands: the lines of its first code block.
mapfile -t commands < <(awk '/^```/ { if (open) exit; open = 1; next } open' "$root/root/skiff/README.md" |
  sed 's/[[:space:]]*#.*$//' | grep -v '^[[:space:]]*$')
[ ${#commands[@]} = 2 ] || { say "the README's first code block should hold two commands, found ${#commands[@]}"; exit 1; }

# ---------------------------------------------------------- the check ----
inner=$(cat <<'EOF'
set -e
root=$1; k8s_cache=$2; shift 2
# The copy becomes a mount point, then the root of this mount namespace.
mount --bind "$root" "$root"
mount -t proc proc "$root/proc"
mount -t sysfs sysfs "$root/sys"
mount --rbind /sys/fs/cgroup "$root/sys/fs/cgroup"
mount --rbind /dev "$root/dev"
mount -t tmpfs -o mode=755 tmpfs "$root/run"
mount -t tmpfs -o mode=1777 tmpfs "$root/tmp"
mkdir -p "$root/run/lock"
mkdir -p "$k8s_cache" "$root/var/cache/skiff-k8s"
mount --bind "$k8s_cache" "$root/var/cache/skiff-k8s"
# pivot_root(2), not chroot(2): a container runtime run in a chroot makes
# containers whose mount namespace's root is still the host's /, and
# setns(2) into them (exec, probes) lands there, not in the container.
cd "$root"
mkdir -p .host-root
pivot_root . .host-root
umount -l /.host-root
rmdir /.host-root
cd /
status=0
for cmd in "$@"; do
  echo "fresh-root: # $cmd" >&2
  t0=$(date +%s)
  /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 SKIFF_FRESH_ROOT=1 \
    PATH=/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    /bin/bash -c "cd /root/skiff && $cmd" || { status=$?; echo "fresh-root: FAILED (exit $status): $cmd" >&2; }
  echo "fresh-root: took $(( $(date +%s) - t0 )) s: $cmd" >&2
  [ $status = 0 ] || break
done
# Then the same commands on a machine that is not ready for them.
if [ $status = 0 ]; then
  /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 \
    PATH=/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    /root/skiff/tests/fresh-root/bad-input.sh || status=$?
fi
exit $status
EOF
)
# A mount namespace of its own: every mount below dies with it, and none
# propagates to the host. A PID namespace of its own: whatever the commands
# leave running dies with them.
unshare --mount --propagation private --pid --fork --kill-child bash -c "$inner" inner "$root" \
  "${SKIFF_K8S_CACHE:-/var/cache/skiff-k8s}" "${commands[@]}"
say "passed in $(( $(date +%s) - start )) s"
