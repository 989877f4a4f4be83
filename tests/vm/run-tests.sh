#!/usr/bin/env bash
# Run skiff's end-to-end runtime tests on a pure cgroup v2 kernel, in the
# throw-away VM of run-in-vm.sh (the development machines are hybrid, so
# this is where the v2 code paths run: cgroup2 limits, cgroup.freeze,
# cgroup.kill, the eBPF device filter), and the node agent's pods (their
# containers' cgroups, CNI bridges and probes; the guest shares the host's
# tools, so the CNI plugins, umoci and curl are there).
#
#   tests/vm/run-tests.sh [TEST-BINARY-NAME...]    (default: the list below)
#
# The tests are built on the host and run in the guest from the same paths.
set -euo pipefail
cd "$(dirname "$0")/../.."
tests=("$@")
if [ ${#tests[@]} -eq 0 ]; then
  # What a pure v2 host changes: the cgroup2 files, freezing and killing
  # through the cgroup, the eBPF device filter, cgroup namespaces, clean-up
  # after a failure, containerd's calls for stats and updates, a cgroup
  # subtree delegated to an unprivileged user (rootless), and the
  # agent's pod cgroups, probes and their adoption; the probes also show
  # that the agent keeps its timing on a machine ten times slower (TCG).
  # The rest of the suite (process set-up, hooks, terminals, seccomp, the
  # CLI) does not touch cgroups and runs in the host stage.
  tests=(cgroups lifecycle kernel_features exec bad_input escapes rootless
         containerd_cmdlines device_filter faults agent_pods agent_probes
         agent_adoption agent_faults)
fi
args=()
for t in "${tests[@]}"; do args+=(--test "$t"); done
cargo test -p skiff-runtime -p skiff-tests --no-run "${args[@]}"
cargo build -p skiff-agent   # the agent tests run its binary
echo "run-tests.sh: running ${#tests[@]} test binaries on a pure cgroup v2 kernel" >&2
start=$(date +%s)
status=0
# In the guest: first vagrant/provision.sh, the Vagrant box's set-up, so the
# machine it makes is the one the tests pass on (the guest has no network:
# the provisioning must find every package of scripts/packages.txt present,
# and fails otherwise); then every test binary, each to its end
# (--no-fail-fast), with cargo's list of the ones that failed.
# The guest has no udev, whose default rules make /dev/net/tun 0666 on a
# Debian machine; rootless podman's slirp4netns needs that.
# The fault tests run fewer trials under TCG, ten times slower than the host
# (the host stage runs the full count). As on the host, anything the tests
# leave behind fails the stage (tests/leftovers.sh).
tests/vm/run-in-vm.sh --timeout "${SKIFF_VM_TIMEOUT:-2400}" \
  --env SKIFF_FAULT_TRIALS="${SKIFF_VM_FAULT_TRIALS:-15}" \
  --env SKIFF_AGENT_FAULT_TRIALS="${SKIFF_VM_AGENT_FAULT_TRIALS:-2}" -- bash -c \
  'chmod 666 /dev/net/tun && vagrant/provision.sh || exit
   tests/leftovers.sh snapshot /var/tmp/leftovers.before
   cargo test --no-fail-fast -p skiff-runtime -p skiff-tests "$@" -- --test-threads=2
   rc=$?
   tests/leftovers.sh check /var/tmp/leftovers.before || [ "$rc" != 0 ] || rc=1
   exit "$rc"' \
  vm-tests "${args[@]}" || status=$?
echo "run-tests.sh: VM stage took $(( $(date +%s) - start )) s, exit $status" >&2
exit $status
