#!/bin/bash
# Self-test of the VM test bed: exit codes, pure cgroup v2, a host-built Rust
# binary, and Debian's runc with a memory limit. Prints "N passed, N failed".
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
vm=$here/../run-in-vm.sh
work=$(mktemp -d /tmp/skiff-vm-selftest.XXXXXX); trap 'rm -rf "$work"' EXIT
pass=0 fail=0
ok() { if "$@"; then echo "ok   ${name}"; pass=$((pass+1)); else echo "FAIL ${name}"; fail=$((fail+1)); fi; }

name="exit code 3 comes back, cgroup is 0::/ only"
out=$("$vm" -- sh -c 'cat /proc/self/cgroup; ls /sys/fs/cgroup; exit 3'); rc=$?
ok test "$rc" = 3 -a "$(grep -c '^[0-9]*:' <<<"$out")" = 1 -a "$(grep -c '^0::/$' <<<"$out")" = 1

name="only cgroup2 is mounted"
ok grep -q '^skiff-vm: cgroup mounts: cgroup2 /sys/fs/cgroup cgroup2 [^;]*;$' <<<"$out"

name="host-built Rust binary runs and sees delegatable cgroup v2"
rustc -O "$here/cgv2_check.rs" -o "$work/cgv2_check" >/dev/null 2>&1
ok bash -c "cd '$work' && '$vm' -- ./cgv2_check | grep -q '^15 passed, 0 failed'"

name="runc container gets memory.max = 67108864"
ok bash -c "'$vm' -- '$here/runc-smoke.sh' | grep -q '^container cgroup: .*memory.max=67108864'"

name="timeout kills the guest with exit 124"
"$vm" --timeout 8 -- sleep 60 >/dev/null 2>&1; rc=$?
ok test "$rc" = 124

echo "$pass passed, $fail failed"
((fail == 0))
