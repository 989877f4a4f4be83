# Sourced by the benches that compare with crun (lifecycle.sh, rootless.sh,
# concurrency.sh).
#
# crun refuses hybrid cgroup hosts (cgroup2 with controllers beside the v1
# hierarchies). bench_in_private_mount_ns SCRIPT ARGS... re-runs SCRIPT, once,
# inside a private mount namespace where an empty file (readable by all, for
# the rootless bench's user) covers /sys/fs/cgroup/unified/cgroup.controllers.
# The host's mounts stay untouched, and all runtimes measured run under the
# same wrapper, which keeps the comparison fair. In the re-run,
# SKIFF_BENCH_INNER is set and the function returns at once.
bench_in_private_mount_ns() {
  [ -z "${SKIFF_BENCH_INNER:-}" ] || return 0
  local script=$1 empty
  shift
  local wrap=(unshare --mount --propagation private env SKIFF_BENCH_INNER=1)
  if [ -f /sys/fs/cgroup/unified/cgroup.controllers ]; then
    empty=$(mktemp /tmp/skiff-bench-empty.XXXXXX)
    chmod 644 "$empty"
    # exec replaces this shell, so no EXIT trap would run: the file is
    # unlinked as soon as it is bind-mounted (the mount keeps it).
    exec "${wrap[@]}" bash -c 'mount --bind "$1" /sys/fs/cgroup/unified/cgroup.controllers && rm -f "$1" && shift && exec "$@"' \
      _ "$empty" "$script" "$@"
  fi
  exec "${wrap[@]}" "$script" "$@"
}
