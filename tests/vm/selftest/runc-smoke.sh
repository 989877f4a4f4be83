#!/bin/bash
# Run Debian's runc on a busybox bundle with a 64 MiB memory limit and check
# that the container's cgroup (v2) has memory.max = 67108864.
set -euo pipefail
b=$(mktemp -d /tmp/runc-smoke.XXXXXX)
mkdir -p "$b/rootfs/bin" "$b/rootfs/proc" "$b/rootfs/sys" "$b/rootfs/dev" "$b/rootfs/tmp"
cp /bin/busybox "$b/rootfs/bin/busybox"
for a in sh cat echo; do ln -s busybox "$b/rootfs/bin/$a"; done
cd "$b"
runc spec
jq '.process.terminal = false
  | .process.args = ["sh", "-c", "cat /proc/self/cgroup; cat /sys/fs/cgroup/memory.max; echo ok"]
  | .linux.resources.memory.limit = 67108864' config.json > c.json && mv c.json config.json
runc run smoke > out.txt
cat out.txt
grep -qx 67108864 out.txt   # the container's own cgroup (cgroupns) shows memory.max
grep -qx ok out.txt
# and from the outside, while it exists: create/inspect/delete
runc create smoke2
cg=$(jq -r .cgroup_paths[\"\"] < /run/runc/smoke2/state.json 2>/dev/null || true)
[[ -n $cg && $cg != null ]] || cg=/sys/fs/cgroup/$(sed -n 's/^0:://p' "/proc/$(runc state smoke2 | jq .pid)/cgroup")
echo "container cgroup: $cg: memory.max=$(cat "$cg/memory.max")"
[[ $(cat "$cg/memory.max") == 67108864 ]]
runc delete -f smoke2
echo "runc-smoke: 1 passed, 0 failed"
