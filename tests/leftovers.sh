#!/usr/bin/env bash
# What a test run left behind on the machine.
#
#   tests/leftovers.sh snapshot FILE   record what is there before the tests
#   tests/leftovers.sh check FILE      after them: print anything new that is
#                                      still there, and fail if there is any
#
# Every test cleans up after itself, and most check it for their own ids
# (`assert_clean`). This is the net under all of them, for what no single
# test looks at: it lists the machine-wide things Skiff's tests make, by
# their names, and compares the list with the one taken before the run.
# Anything present before (another user's containers) is not counted. Counted:
#   - cgroup directories whose path names skiff (every hierarchy), except
#     the agent's parent cgroup `skiff-agent` itself: like kubelet's
#     `kubepods`, it is made once and kept for the pods of the next start;
#   - mount points whose path names skiff (bundles, rootfs, netns pins);
#   - network namespaces in /run/netns named skiff*;
#   - network interfaces of the root namespace named skiff* or veth*;
#   - processes of the runtime, the shim, the monitor or the agent, and any
#     process whose command line names a test id (skiff-t-*);
#   - the test users (skrl*) and their subordinate id ranges;
#   - directories and files in /tmp named skiff*.
# Run nothing else of Skiff's on the machine meanwhile: it would be counted.
set -uo pipefail

list() {
  find /sys/fs/cgroup -mindepth 1 -maxdepth 7 -type d -path '*skiff*' 2>/dev/null |
    grep -Ev '^/sys/fs/cgroup/([^/]+/)?skiff-agent$' | sed 's/^/cgroup /'
  awk '$5 ~ /skiff/ {print "mount " $5}' /proc/self/mountinfo
  ls /run/netns 2>/dev/null | grep '^skiff' | sed 's/^/netns /'
  ip -o link show 2>/dev/null | awk -F': ' '$2 ~ /^(skiff|veth)/ {sub(/@.*/, "", $2); print "link " $2}'
  # A process is named by its command line, not its pid: a process found
  # before the run and still there after is the same one.
  ps -eo pid=,args= | awk -v self=$$ '
    $1 != self && ($2 ~ /(^|\/)(skiff|skiff-agent|skiff-monitor|containerd-shim-skiff-v2)$/ || /skiff-t-[0-9]/) &&
    !/leftovers\.sh/ && !/cargo/ {$1 = ""; print "process" $0}'
  awk -F: '$1 ~ /^skrl/ {print "user " $1}' /etc/passwd
  awk -F: '$1 ~ /^skrl/ {print "subuid " $1}' /etc/subuid 2>/dev/null
  find /tmp -mindepth 1 -maxdepth 1 -name 'skiff*' 2>/dev/null | sed 's/^/tmp /'
}

case ${1:-} in
  snapshot)
    list | sort -u >"$2"
    ;;
  check)
    # Some clean-up finishes just after the last test: a killed process
    # waits to be reaped, a monitor exits after its container. Look again
    # for a few seconds before calling anything a leftover.
    for _ in 1 2 3 4 5; do
      new=$(list | sort -u | comm -13 "$2" -)
      [ -z "$new" ] && break
      sleep 2
    done
    if [ -n "$new" ]; then
      echo "leftovers.sh: the tests left these behind:" >&2
      sed 's/^/  /' <<<"$new" >&2
      exit 1
    fi
    echo "leftovers.sh: nothing left behind" >&2
    ;;
  *)
    echo "usage: $0 snapshot|check FILE" >&2
    exit 2
    ;;
esac
