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
  tests=(cgroups lifecycle kernel_features process exec hooks bad_input escapes
         containerd_cmdlines run_and_explain terminal seccomp device_filter cli
         malformed faults agent_pods agent_probes agent_adoption agent_cli agent_faults)
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
# The fault tests run fewer trials under TCG, ten times slower than the host
# (the host stage runs the full count).
tests/vm/run-in-vm.sh --timeout "${SKIFF_VM_TIMEOUT:-2400}" \
  --env SKIFF_FAULT_TRIALS="${SKIFF_VM_FAULT_TRIALS:-15}" \
  --env SKIFF_AGENT_FAULT_TRIALS="${SKIFF_VM_AGENT_FAULT_TRIALS:-2}" -- bash -c \
  'vagrant/provision.sh && exec cargo test --no-fail-fast -p skiff-runtime -p skiff-tests "$@" -- --test-threads=2' \
  vm-tests "${args[@]}" || status=$?
echo "run-tests.sh: VM stage took $(( $(date +%s) - start )) s, exit $status" >&2
exit $status
