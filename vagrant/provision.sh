#!/bin/bash
# Provision a Debian 12 (bookworm) box, e.g. Vagrant's debian/bookworm64, as a
# skiff test machine: pure cgroup v2, Rust, the tests' dependencies.
#   config.vm.provision "shell", path: "vagrant/provision.sh"
# Reboot afterwards if it says so.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends \
  build-essential pkg-config libseccomp-dev ca-certificates curl git \
  runc crun busybox-static iproute2 procps util-linux jq hyperfine time

# Pure cgroup v2: no v1 hierarchy at all (bookworm defaults to unified already).
args='systemd.unified_cgroup_hierarchy=1 cgroup_no_v1=all'
if ! grep -q 'cgroup_no_v1=all' /etc/default/grub; then
  sed -i "s/^GRUB_CMDLINE_LINUX=\"\(.*\)\"/GRUB_CMDLINE_LINUX=\"\1 $args\"/" /etc/default/grub
  update-grub
  echo "provision: kernel command line changed; reboot for pure cgroup v2"
fi
# Let tests enable controllers in sub-cgroups of systemd's slices (root runs them).
mkdir -p /etc/systemd/system/user@.service.d
printf '[Service]\nDelegate=cpu cpuset io memory pids\n' > /etc/systemd/system/user@.service.d/delegate.conf

# Rust (the workspace needs >= 1.85; bookworm's rustc is 1.63)
if ! command -v cargo >/dev/null && [[ ! -x /root/.cargo/bin/cargo ]]; then
  curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
fi
echo "provision: done; cgroup: $(stat -fc %T /sys/fs/cgroup) (want cgroup2fs)"
