#!/usr/bin/env bash
# run-in-vm.sh: run host commands (test binaries) inside a throw-away QEMU guest
# booted on a Debian 6.1 kernel with a PURE cgroup v2 hierarchy.
#
#   tests/vm/run-in-vm.sh [--mem 2G] [--cpus 2] [--timeout 1500] [--env K=V]... \
#                         [--rw DIR]... -- CMD ARGS...
#
# The guest's root is the host's / shared read-only over virtio-9p, with a
# tmpfs-backed overlay on top (so everything is writable, nothing reaches the
# host), fresh tmpfs on /tmp /run /var/tmp, and cgroup2 on /sys/fs/cgroup with
# every controller enabled for sub-groups.  CMD runs as root in the host's
# current directory; its stdout+stderr come back on our stdout (serial
# console) and its exit status becomes ours.  See README.md for the knobs.
# shellcheck disable=SC2054  # qemu option strings contain commas
set -euo pipefail

prog='run-in-vm'
die() { echo "$prog: error: $*" >&2; exit 125; }
log() { [[ -n ${SKIFF_VM_QUIET:-} ]] || echo "$prog: $*" >&2; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
t_start=$(now)

mem=${SKIFF_VM_MEM:-2G}
cpus=${SKIFF_VM_CPUS:-2}
timeout_s=${SKIFF_VM_TIMEOUT:-1500}
extra_env=()
rw_dirs=()
while (($#)); do
  case $1 in
    --mem) mem=$2; shift 2 ;;
    --cpus) cpus=$2; shift 2 ;;
    --timeout) timeout_s=$2; shift 2 ;;
    --env) extra_env+=("$2"); shift 2 ;;
    --rw) rw_dirs+=("$(realpath -- "$2")"); shift 2 ;;
    --) shift; break ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) die "unknown option '$1' (did you forget '--' before the command?)" ;;
  esac
done
(($#)) || die "no command given; usage: $0 [--mem 2G] [--cpus 2] -- CMD ARGS..."

# ---------------------------------------------------------------- cache ----
if [[ -z ${SKIFF_VM_CACHE:-} ]]; then
  if mkdir -p /var/cache/skiff-vm 2>/dev/null && [[ -w /var/cache/skiff-vm ]]; then
    SKIFF_VM_CACHE=/var/cache/skiff-vm
  else
    SKIFF_VM_CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/skiff-vm
  fi
fi
cache=$SKIFF_VM_CACHE
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9                          # one preparer at a time; released before boot

export DEBIAN_FRONTEND=noninteractive
apt_updated=
apt_update_once() {
  [[ -n $apt_updated ]] && return; apt_updated=1
  log "apt-get update"; apt-get update -qq >&2 || log "apt-get update failed (continuing)"
}
# apt_download DIR PKG...: download .debs into DIR (retrying once after apt-get update)
apt_download() {
  local dir=$1; shift
  (cd "$dir" && apt-get download -q "$@" >&2 2>/dev/null) && return
  apt_update_once
  (cd "$dir" && apt-get download -q "$@" >&2) || die "apt-get download $* failed"
}
pkg_installed() { dpkg-query -W -f='${Status}\n' "$1" 2>/dev/null | grep -q 'ok installed'; }

# busybox-static provides the initramfs userland: installed, like every
# package the tests need, from scripts/packages.txt.
if ! pkg_installed busybox-static; then
  skiff_prog=$prog
  . "$(dirname "$0")/../../scripts/lib/setup.sh"
  skiff_install_packages test || die "cannot install the test packages"
fi
BUSYBOX=/bin/busybox

# ----------------------------------------------------------------- qemu ----
# Debian bookworm's qemu-system-x86 (7.2) conflicts with the qemu-utils 10.x
# from bookworm-backports that may be installed, so we never apt-get install
# it: its .deb, its firmware and whatever libraries are missing on this host
# are extracted into $cache/qemu and run from there with LD_LIBRARY_PATH.
qemu_libpath=
qemu_fw=()
resolve_qemu_pkgs() {  # print qemu-system-x86 + firmware + missing dependencies
  # qemu-system-common only for its accel-tcg module: its other deps (spice, usb) are not needed
  echo qemu-system-common
  local -A seen=(); local queue=(qemu-system-x86 qemu-system-data seabios) p d
  local skip=" qemu-system-common qemu-utils ipxe-qemu "
  while ((${#queue[@]})); do
    p=${queue[0]}; queue=("${queue[@]:1}")
    [[ -n ${seen[$p]:-} || $skip == *" $p "* ]] && continue
    seen[$p]=1
    pkg_installed "$p" && continue
    echo "$p"
    # first alternative of every Depends/Pre-Depends
    while read -r d; do queue+=("$d"); done < <(apt-cache depends --no-recommends \
      --no-suggests --no-conflicts --no-breaks --no-replaces --no-enhances "$p" |
      awk 'prev !~ /^ *\|/ && /^ *\|?(Pre)?Depends:/ {print $2} {prev = $0}' | tr -d '<>')
  done
}
setup_qemu() {
  if [[ -n ${SKIFF_VM_QEMU:-} ]]; then QEMU=$SKIFF_VM_QEMU; return; fi
  if [[ -z ${SKIFF_VM_PRIVATE_QEMU:-} ]] && QEMU=$(command -v qemu-system-x86_64); then return; fi
  local q=$cache/qemu
  if [[ ! -e $q/.ok ]]; then
    log "fetching qemu-system-x86 (private copy, not installed)"
    apt_update_once
    local pkgs; pkgs=$(resolve_qemu_pkgs) || die "cannot resolve qemu-system-x86 dependencies"
    [[ -n $pkgs ]] || die "apt-cache knows no qemu-system-x86"
    rm -rf "$q.tmp"; mkdir -p "$q.tmp/debs"
    # shellcheck disable=SC2086
    apt_download "$q.tmp/debs" $pkgs
    local f; for f in "$q.tmp"/debs/*.deb; do dpkg-deb -x "$f" "$q.tmp/root"; done
    du -sb "$q.tmp/debs" | cut -f1 > "$q.tmp/download-bytes"
    rm -rf "$q.tmp/debs" "$q.tmp/root/usr/share/doc" "$q.tmp/root/usr/share/man"
    rm -rf "$q"; mv "$q.tmp" "$q"; touch "$q/.ok"
  fi
  QEMU=$q/root/usr/bin/qemu-system-x86_64
  # Debian puts some libraries in /lib (libnl-3-200 in bookworm), others in
  # /usr/lib: both, whatever the host has installed itself.
  qemu_libpath=$q/root/usr/lib/x86_64-linux-gnu:$q/root/lib/x86_64-linux-gnu
  export QEMU_MODULE_DIR=$q/root/usr/lib/x86_64-linux-gnu/qemu
  qemu_fw=(-L "$q/root/usr/share/qemu" -L "$q/root/usr/share/seabios")
  if LD_LIBRARY_PATH=$qemu_libpath ldd "$QEMU" | grep -q 'not found'; then
    LD_LIBRARY_PATH=$qemu_libpath ldd "$QEMU" | grep 'not found' >&2
    rm -f "$q/.ok"; die "extracted qemu misses libraries (removed $q/.ok; rerun with SKIFF_VM_REFRESH=1)"
  fi
}
[[ -z ${SKIFF_VM_REFRESH:-} ]] || rm -f "$cache/qemu/.ok" "$cache/kernel/.ok"
setup_qemu

# --------------------------------------------------------------- kernel ----
# Debian's generic amd64 flavour: the cloud flavour (which boots a little
# faster) has no 9p at all (CONFIG_NET_9P/CONFIG_9P_FS unset).
# We keep vmlinuz plus the fs/, net/, lib/, crypto/ and a few drivers/ modules
# (for on-demand modprobe in the guest) and drop the rest (~300 MB of drivers).
setup_kernel() {
  local k=$cache/kernel
  if [[ ! -e $k/.ok ]]; then
    local pkg=${SKIFF_VM_KERNEL_PKG:-}
    if [[ -z $pkg ]]; then
      apt_update_once
      pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
      [[ -n $pkg ]] || die "cannot resolve linux-image-amd64 with apt-cache"
      pkg=$pkg-unsigned
    fi
    log "fetching kernel $pkg"
    rm -rf "$k.tmp"; mkdir -p "$k.tmp/debs" "$k.tmp/root"
    apt_download "$k.tmp/debs" "$pkg"
    du -sb "$k.tmp/debs" | cut -f1 > "$k.tmp/download-bytes"
    dpkg-deb --fsys-tarfile "$k.tmp"/debs/*.deb | tar -x -C "$k.tmp/root" \
      --exclude='./lib/modules/*/kernel/sound' --exclude='./usr/share' \
      './boot' './lib/modules'
    local kd; kd=$(echo "$k.tmp"/root/lib/modules/*/kernel)
    find "$kd/drivers" -mindepth 1 -maxdepth 1 -not -name virtio -not -name block -not -name net \
      -not -name char -not -name md -exec rm -rf {} +
    find "$kd/drivers/net" -mindepth 1 -maxdepth 1 -type d -exec rm -rf {} +
    rm -rf "$k.tmp/debs"
    local kv; kv=$(basename "$k.tmp"/root/lib/modules/*)
    # modules.dep for busybox modprobe (the .deb ships none; depmod runs in postinst)
    "$BUSYBOX" depmod -b "$k.tmp/root" "$kv"
    echo "$kv" > "$k.tmp/version"
    rm -rf "$k"; mv "$k.tmp" "$k"; touch "$k/.ok"
  fi
  KVER=$(cat "$k/version")
  VMLINUZ=$k/root/boot/vmlinuz-$KVER
  MODDIR=$k/root/lib/modules/$KVER
}
setup_kernel

# ------------------------------------------------------------ initramfs ----
# Modules loaded at boot, in dependency order (from .modinfo depends=).
BOOT_MODULES="virtio_pci 9pnet_virtio 9p overlay ${SKIFF_VM_MODULES-fuse veth bridge loop tun dummy}"
mod_order() {  # print module paths (relative to $MODDIR) with deps first
  local -A path=() visited=()
  local f n
  while read -r f; do n=${f##*/}; n=${n%.ko}; path[${n//-/_}]=$f; done < <(cd "$MODDIR" && find kernel -name '*.ko')
  visit() {
    local m=${1//-/_} d deps
    [[ -n ${visited[$m]:-} ]] && return; visited[$m]=1
    [[ -n ${path[$m]:-} ]] || return 0       # built in
    deps=$(tr '\0' '\n' < "$MODDIR/${path[$m]}" | sed -n 's/^depends=//p' | head -1)
    for d in ${deps//,/ }; do visit "$d"; done
    echo "${path[$m]}"
  }
  for n in $BOOT_MODULES; do visit "$n"; done
}

INIT_SH='#!/bin/sh
# skiff-vm stage 1 (initramfs): mount the host root, build the guest root, switch to it
export PATH=/bin
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1   # in case the cpio had no /dev/console (built as non-root)
grep -q skiff_probe /proc/cmdline && { echo SKIFF_VM_PROBE_OK; poweroff -f; }
grep -q skiff_debug /proc/cmdline && set -x
for m in $(cat /modules.order); do insmod "/lib/modules/$m" || echo "skiff-vm: insmod $m failed"; done
o9p="trans=virtio,version=9p2000.L,msize=262144"
mkdir -p /lower /rw /newroot /io
mount -t 9p -o "$o9p,cache=none" io /io || { echo "skiff-vm: cannot mount the io share"; poweroff -f; }
mount -t 9p -o "$o9p,ro,cache=loose" hostroot /lower || { echo "skiff-vm: cannot mount host /"; poweroff -f; }
mount -t tmpfs -o mode=755 rw /rw && mkdir /rw/upper /rw/work
R=/newroot
if ! mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work overlay $R; then
  echo "skiff-vm: overlay over 9p failed; root stays read-only"; mount --bind /lower $R
fi
# Host dirs under /tmp, /run, /var/tmp that the command needs (its cwd, ...):
# park them before those get fresh tmpfs, then put them back.
i=0; while read -r p; do mkdir -p /park/$i; mount --bind "$R$p" /park/$i; i=$((i+1)); done < /io/keep
mount -t tmpfs -o mode=1777 tmpfs $R/tmp
mount -t tmpfs -o mode=755 tmpfs $R/run
mount -t tmpfs -o mode=1777 tmpfs $R/var/tmp
i=0; while read -r p; do mkdir -p "$R$p"; mount --move /park/$i "$R$p"; i=$((i+1)); done < /io/keep
while read -r p; do mount -t 9p -o "$o9p,cache=none" "$(echo "$p" | md5sum | cut -c1-16)" "$R$p"; done < /io/rw
mount -t proc proc $R/proc
mount -t sysfs sysfs $R/sys
mount -t devtmpfs devtmpfs $R/dev
mkdir -p $R/dev/pts $R/dev/shm $R/dev/mqueue
ln -s /proc/self/fd $R/dev/fd; ln -s /proc/self/fd/0 $R/dev/stdin
ln -s /proc/self/fd/1 $R/dev/stdout; ln -s /proc/self/fd/2 $R/dev/stderr; ln -s /proc/kcore $R/dev/core
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts $R/dev/pts
mount -t tmpfs -o mode=1777 shm $R/dev/shm
mount -t mqueue mqueue $R/dev/mqueue
mount -t cgroup2 -o nsdelegate cgroup2 $R/sys/fs/cgroup
mount -t bpf bpf $R/sys/fs/bpf 2>/dev/null
mount -t tracefs tracefs $R/sys/kernel/tracing 2>/dev/null
mkdir -p $R/run/skiff-vm/io $R/run/lock
mount --move /io $R/run/skiff-vm/io
cp /bin/busybox /stage2 $R/run/skiff-vm/
mkdir $R/run/skiff-vm/bin
for a in modprobe lsmod insmod rmmod depmod; do ln -s ../busybox $R/run/skiff-vm/bin/$a; done
# kernel modules of the guest kernel, for on-demand modprobe (busybox)
kv=$(uname -r); mdir=$(cat $R/run/skiff-vm/io/moddir)
rm -rf "$R/lib/modules/$kv"; mkdir -p $R/lib/modules; ln -s "$mdir" "$R/lib/modules/$kv"
echo /run/skiff-vm/bin/modprobe > /proc/sys/kernel/modprobe
exec switch_root $R /run/skiff-vm/busybox sh /run/skiff-vm/stage2
'

STAGE2_SH='# skiff-vm stage 2: PID 1 in the guest root; runs the command, reports its status
bb=/run/skiff-vm/busybox
grep -q skiff_debug /proc/cmdline && set -x
$bb stty -onlcr 2>/dev/null
$bb hostname skiff-vm
$bb ip link set lo up 2>/dev/null
cd /sys/fs/cgroup
echo "skiff-vm: kernel $($bb uname -r); cgroup.controllers: $(cat cgroup.controllers)"
echo "skiff-vm: cgroup mounts: $($bb grep cgroup /proc/mounts | $bb tr "\n" ";")"
for c in $(cat cgroup.controllers); do echo "+$c" > cgroup.subtree_control || echo "skiff-vm: cannot enable $c"; done
echo "skiff-vm: booted in $($bb cut -d" " -f1 /proc/uptime)s; running the command"
cd /
# stdout/stderr go through a pipe, as under CI, not straight to the console tty
# (SKIFF_VM_TTY=1 in the host environment keeps the tty)
if [ -e /run/skiff-vm/io/tty ]; then
  SKIFF_VM_GUEST=1 /bin/bash /run/skiff-vm/io/cmd </dev/null &
  wait $!
  rc=$?
else
  { SKIFF_VM_GUEST=1 /bin/bash /run/skiff-vm/io/cmd </dev/null 2>&1; echo $? > /run/skiff-vm/rc; } | $bb cat &
  wait $!
  rc=$(cat /run/skiff-vm/rc 2>/dev/null || echo 255)
fi
echo $rc > /run/skiff-vm/io/exit
echo "SKIFF_VM_EXIT=$rc"
$bb sync
echo 0 > /proc/sys/kernel/printk   # hide "reboot: Power down"
$bb poweroff -f
'

build_initramfs() {
  local key; key=$( { echo "$KVER $BOOT_MODULES"; echo "$INIT_SH"; echo "$STAGE2_SH"; \
    stat -c %Y:%s "$BUSYBOX"; } | md5sum | cut -c1-12)
  INITRD=$cache/initramfs-$key.cpio.gz
  [[ -e $INITRD ]] && return
  log "building initramfs"
  local d; d=$(mktemp -d "$cache/initramfs.XXXXXX")
  mkdir -p "$d"/{bin,dev,proc,sys,lib/modules}
  cp "$BUSYBOX" "$d/bin/busybox"
  local a; for a in sh mount insmod mkdir cat grep echo md5sum cut rm ln cp switch_root poweroff uname; do
    ln -s busybox "$d/bin/$a"; done
  if ((EUID == 0)); then mknod -m 600 "$d/dev/console" c 5 1; fi
  printf '%s' "$INIT_SH" > "$d/init"; chmod 755 "$d/init"
  printf '%s' "$STAGE2_SH" > "$d/stage2"
  local m; mod_order > "$d/modules.order"
  while read -r m; do install -D -m 644 "$MODDIR/$m" "$d/lib/modules/$m"; done < "$d/modules.order"
  (cd "$d" && find . | "$BUSYBOX" cpio -o -H newc 2>/dev/null | gzip -1) > "$INITRD.tmp"
  mv "$INITRD.tmp" "$INITRD"; rm -rf "$d"
  # keep only the newest few
  ls -t "$cache"/initramfs-*.cpio.gz | tail -n +4 | xargs -r rm -f
}
build_initramfs
flock -u 9

# ---------------------------------------------------------------- accel ----
accel=${SKIFF_VM_ACCEL:-auto}
kvm_probe() {
  # Only with a real kvm_intel/kvm_amd: /dev/kvm may be a paravirt flavour
  # (e.g. kvm_pvm) that runs firmware but cannot boot a stock kernel, so the
  # probe boots the real kernel+initramfs to its first userspace line.
  [[ -d /sys/module/kvm_intel || -d /sys/module/kvm_amd ]] || return 1
  [[ -r /dev/kvm && -w /dev/kvm ]] || return 1
  local stamp; stamp=$cache/kvm-probe.$(cat /proc/sys/kernel/random/boot_id 2>/dev/null)
  [[ -e $stamp.ok ]] && return 0
  [[ -e $stamp.no ]] && return 1
  local out; out=$(mktemp)
  ( LD_LIBRARY_PATH=$qemu_libpath${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} timeout -k 2 20 \
    "$QEMU" "${qemu_fw[@]}" -accel kvm -cpu host -M pc -m 256 -nodefaults -display none -no-reboot \
    -kernel "$VMLINUZ" -initrd "$INITRD" -append "console=ttyS0 quiet panic=-1 skiff_probe" \
    -serial "file:$out" </dev/null ) >/dev/null 2>&1 || true
  if grep -q SKIFF_VM_PROBE_OK "$out"; then touch "$stamp.ok"; rm -f "$out"; return 0; fi
  log "KVM present but could not boot the guest kernel; using TCG"
  touch "$stamp.no"; rm -f "$out"; return 1
}
if [[ $accel == auto ]]; then
  if kvm_probe; then accel=kvm; else accel=tcg; fi
fi
if [[ $accel == kvm ]]; then accel_args=(-accel kvm -cpu host); else accel_args=(-accel tcg,thread=multi -cpu max); fi

# ------------------------------------------------------------------ run ----
run=$(mktemp -d "${TMPDIR:-/tmp}/skiff-vm.XXXXXX")
qpid=
cleanup() {
  if [[ -n $qpid ]]; then kill "$qpid" 2>/dev/null; wait "$qpid" 2>/dev/null; fi
  [[ -n ${SKIFF_VM_KEEP_RUNDIR:-} ]] || rm -rf "$run"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cwd=$(pwd -P)
# host paths the command needs that live under dirs the guest mounts tmpfs on
: > "$run/keep"
for p in "$cwd" "$@" "${rw_dirs[@]}"; do
  [[ $p == /* && -e $p ]] || continue
  [[ -d $p ]] || p=$(dirname "$p")
  p=$(realpath -- "$p")
  case $p/ in /tmp/*|/run/*|/var/tmp/*) ;; *) continue ;; esac
  [[ $p == "$run" || $p == "$run"/* ]] && continue
  echo "$p" >> "$run/keep"
done
sort -u -o "$run/keep" "$run/keep"      # parents sort before children
echo "$MODDIR" > "$run/moddir"
[[ -z ${SKIFF_VM_TTY:-} ]] || touch "$run/tty"
printf '%s\n' "${rw_dirs[@]}" | grep . > "$run/rw" || true
rw_args=()
for p in "${rw_dirs[@]}"; do
  rw_args+=(-fsdev "local,id=$(echo "$p" | md5sum | cut -c1-16),path=$p,security_model=none,multidevs=remap"
            -device "virtio-9p-pci,fsdev=$(echo "$p" | md5sum | cut -c1-16),mount_tag=$(echo "$p" | md5sum | cut -c1-16)")
done

{
  echo "# generated by run-in-vm.sh"
  echo "export PATH=${SKIFF_VM_PATH:-$PATH}:/run/skiff-vm/bin"   # modprobe & co (busybox)
  env_re=${SKIFF_VM_ENV_RE:-'^(RUST_[A-Z_]*|SKIFF_[A-Z0-9_]*|CARGO_[A-Z_]*|CI|NO_COLOR|HOME|USER|LANG|LC_[A-Z]*|TEST_[A-Z0-9_]*)$'}
  while IFS= read -r name; do
    [[ $name =~ $env_re && $name != SKIFF_VM_* ]] && printf 'export %s=%q\n' "$name" "${!name}"
  done < <(compgen -e)
  for kv in "${extra_env[@]}"; do printf 'export %s=%q\n' "${kv%%=*}" "${kv#*=}"; done
  printf 'cd -- %q || exit 127\n' "$cwd"
  printf 'exec'; printf ' %q' "$@"; printf '\n'
} > "$run/cmd"

append="console=ttyS0 panic=-1 oops=panic reboot=t rdinit=/init \
systemd.unified_cgroup_hierarchy=1 cgroup_no_v1=all \
mitigations=off nokaslr tsc=reliable no_timer_check 8250.nr_uarts=1 i8042.noaux i8042.nokbd \
random.trust_cpu=on"
if [[ -n ${SKIFF_VM_DEBUG:-} ]]; then append+=" loglevel=7 skiff_debug"; else append+=" quiet loglevel=3"; fi
append+=" ${SKIFF_VM_APPEND:-}"

qemu_args=(
  "${accel_args[@]}" -M "${SKIFF_VM_MACHINE:-pc}" -m "$mem" -smp "$cpus"
  -nodefaults -no-user-config -display none -vga none -no-reboot
  -kernel "$VMLINUZ" -initrd "$INITRD" -append "$append"
  -chardev "stdio,id=con,signal=off,logfile=$run/console.log" -serial chardev:con
  -fsdev "local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap"
  -device virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot
  -fsdev "local,id=io,path=$run,security_model=none"
  -device virtio-9p-pci,fsdev=io,mount_tag=io
  "${rw_args[@]}"
)
# shellcheck disable=SC2206
qemu_args+=(${SKIFF_VM_QEMU_ARGS:-})
t_prep=$(now)
log "booting $KVER ($accel, $cpus cpus, $mem) after $(elapsed "$t_start" "$t_prep")s of preparation"
# timeout(1) forwards INT/TERM to qemu, and kills it when time is up (exit 124)
LD_LIBRARY_PATH=$qemu_libpath${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} \
  timeout -k 10 "$timeout_s" "$QEMU" "${qemu_fw[@]}" "${qemu_args[@]}" </dev/null &
qpid=$!
set +e
wait "$qpid"; qrc=$?
set -e
qpid=
t_end=$(now)

if ((qrc == 124 || qrc == 137)) && [[ ! -s $run/exit ]]; then
  echo "$prog: FAILED: TIMEOUT: the guest did not finish within ${timeout_s}s; qemu was killed (raise --timeout / SKIFF_VM_TIMEOUT)" >&2
  exit 124
fi
if [[ -s $run/exit ]]; then
  rc=$(cat "$run/exit")
elif rc=$(sed -n 's/^SKIFF_VM_EXIT=\([0-9]*\).*/\1/p' "$run/console.log" | tail -1) && [[ -n $rc ]]; then
  :
else
  echo "$prog: FAILED: the guest reported no exit status (qemu exit $qrc; kernel panic or crash?)." >&2
  echo "$prog: rerun with SKIFF_VM_DEBUG=1 for kernel messages" >&2
  exit 125
fi
log "guest command exited $rc; total $(elapsed "$t_start" "$t_end")s"
exit "$rc"
