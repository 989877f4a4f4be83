#!/usr/bin/env bash
# Skiff's whole test suite, on a fresh Debian bookworm machine with a Rust
# toolchain; as root. It installs what it needs first (scripts/packages.txt),
# then runs its stages in turn, each reported in one line with its time:
#
#   lint   cargo fmt --check, and cargo clippy --workspace --all-targets
#          -- -D warnings (the workspace's lints: unsafe blocks say why)
#   host   cargo test --workspace --no-fail-fast: unit tests, and the end-to-end tests against
#          the real kernel, runc, crun, containerd, podman, a registry, the
#          CNI plugins and a Kubernetes control plane (this machine's
#          cgroups, hybrid or v2)
#   release  the runtime's end-to-end suites again, against the release
#          `skiff` users run: linked with musl, not glibc like the debug
#          build (scripts/build-release.sh skiff)
#   vm     the runtime's and the node agent's end-to-end tests again on a pure
#          cgroup v2 kernel in a QEMU guest, with vagrant/provision.sh checked
#          in it (tests/vm/README.md)
#   fresh  the fresh-machine check: a pristine bookworm made with debootstrap
#          runs this README's two commands as written (tests/fresh-root),
#          and `vagrant validate` checks vagrant/Vagrantfile
#
#   scripts/test.sh [STAGE...]     a failed stage does not stop the others;
#                                  the exit status says
#
# With no stage named, it runs `fresh`: the README's second command is this
# script, so inside the fresh root it runs again, there with lint, host and
# vm. Every test thus runs once, on a machine that has exactly what the
# package list gives it, with this machine's kernel and cgroups (and the VM's
# for pure v2). Name the stages to run them here instead:
# `scripts/test.sh host` is the quick loop while working.
set -uo pipefail
cd "$(dirname "$0")/.."
skiff_prog=test.sh
. scripts/lib/setup.sh
skiff_setup test || exit 1

stages=("$@")
if [ ${#stages[@]} -eq 0 ]; then
  stages=(fresh)
  # Inside the fresh root the check itself is what runs us: the suite.
  [ -n "${SKIFF_FRESH_ROOT:-}" ] && stages=(lint host release vm)
fi

# The release runtime is linked with musl, and rustup's musl target comes
# from the Rust project's servers, not from Debian. Where it cannot be had,
# the stage says so and is skipped rather than failed.
release_stage() {
  if ! rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl &&
    ! rustup target add x86_64-unknown-linux-musl; then
    skiff_say "stage release: SKIPPED: rustup cannot install the x86_64-unknown-linux-musl target here"
    return 0
  fi
  scripts/build-release.sh skiff &&
    SKIFF_BIN="$PWD/target/x86_64-unknown-linux-musl/release/skiff" \
      SKIFF_AGENT_BIN="$PWD/target/x86_64-unknown-linux-gnu/debug/skiff-agent" cargo test -p skiff-tests --no-fail-fast \
      --test lifecycle --test run_and_explain --test process --test exec --test terminal \
      --test seccomp --test seccomp_profiles --test cgroups --test hooks --test escapes \
      --test bad_input --test malformed --test faults --test leak --test kernel_features \
      --test rootless --test trace
}

# Runs a stage's tests, then looks for anything they left on the machine
# (tests/leftovers.sh): a stage whose tests pass but leak fails.
leak_checked() {
  local before rc
  before=$(mktemp)
  tests/leftovers.sh snapshot "$before"
  "$@"
  rc=$?
  if ! tests/leftovers.sh check "$before" && [ "$rc" = 0 ]; then
    rc=1
  fi
  rm -f "$before"
  return "$rc"
}

run_stage() {
  case $1 in
    lint) cargo fmt --all -- --check && cargo clippy --workspace --all-targets -- -D warnings ;;
    host) leak_checked cargo test --workspace --no-fail-fast ;;
    release) leak_checked release_stage ;;
    vm) tests/vm/run-tests.sh ;;
    fresh) tests/fresh-root/check.sh && (cd vagrant && vagrant validate) ;;
    *) skiff_say "unknown stage '$1' (lint, host, release, vm or fresh)"; return 2 ;;
  esac
}

failed=()
summary=()
for stage in "${stages[@]}"; do
  skiff_say "stage $stage: starting"
  start=$(date +%s)
  run_stage "$stage"
  rc=$?
  took=$(( $(date +%s) - start ))
  if [ $rc = 0 ]; then summary+=("$stage ok ${took}s"); else summary+=("$stage FAILED (exit $rc) ${took}s"); failed+=("$stage"); fi
  skiff_say "stage $stage: ${summary[-1]}"
done
skiff_say "stages: $(IFS=,; echo "${summary[*]}" | sed 's/,/, /g')"
[ ${#failed[@]} = 0 ]
