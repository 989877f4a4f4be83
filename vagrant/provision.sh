#!/usr/bin/env bash
# Provision a Debian 12 machine to build and test skiff: the same packages
# .ci/run installs, Rust from rustup, and a check that cgroups are pure v2.
# Used by vagrant/Vagrantfile; tests/vm/ boots its guest from the host's
# own root filesystem instead, so it needs only the kernel check below.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends \
  build-essential pkg-config libseccomp-dev curl ca-certificates \
  runc crun busybox-static iproute2 procps util-linux jq hyperfine time
if ! command -v cargo >/dev/null 2>&1 && [ ! -x /root/.cargo/bin/cargo ]; then
  curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
fi
if ! grep -q ' /sys/fs/cgroup cgroup2 ' /proc/mounts; then
  echo "provision.sh: this machine is not on pure cgroup v2 (/sys/fs/cgroup is not cgroup2)" >&2
  exit 1
fi
echo "cgroup v2 controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"
