#!/bin/bash
# Provision a Debian 12 (bookworm) machine, e.g. Vagrant's debian/bookworm64,
# as a skiff test machine: pure cgroup v2, Rust, and every package the tests
# need (scripts/packages.txt, the list the README's commands install from).
#
#   vagrant/provision.sh [REPO]    REPO: the skiff checkout (default: this
#                                  script's parent, or /skiff under Vagrant,
#                                  which uploads the script alone)
#
# The VM test bed (tests/vm/run-tests.sh) runs it in its guest before the
# tests, so the machine it makes is known to pass them. Reboot afterwards if
# it says so.
set -euo pipefail
repo=${1:-$(cd "$(dirname "$0")/.." && pwd)}
[ -e "$repo/scripts/packages.txt" ] || repo=/skiff
[ -e "$repo/scripts/packages.txt" ] || { echo "provision: no skiff checkout at $repo or /skiff" >&2; exit 1; }
skiff_prog=provision
. "$repo/scripts/lib/setup.sh"
skiff_need_root
skiff_need_bookworm

# Rust (the workspace's rust-version; bookworm's rustc is 1.63)
if ! skiff_need_rust 2>/dev/null; then
  echo "provision: installing Rust with rustup" >&2
  apt-get install -y -q --no-install-recommends curl ca-certificates >/dev/null
  curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
  export PATH="$HOME/.cargo/bin:$PATH"
  skiff_need_rust
fi
skiff_install_packages test
missing=$(skiff_missing_packages test | tr '\n' ' ')
[ -z "${missing// /}" ] || { echo "provision: still missing: $missing" >&2; exit 1; }

# Pure cgroup v2: no v1 hierarchy at all (bookworm defaults to unified already).
args='systemd.unified_cgroup_hierarchy=1 cgroup_no_v1=all'
if [ -e /etc/default/grub ] && ! grep -q 'cgroup_no_v1=all' /etc/default/grub; then
  sed -i "s/^GRUB_CMDLINE_LINUX=\"\(.*\)\"/GRUB_CMDLINE_LINUX=\"\1 $args\"/" /etc/default/grub
  update-grub
  echo "provision: kernel command line changed; reboot for pure cgroup v2"
fi
# Let tests enable controllers in sub-cgroups of systemd's slices (root runs them).
mkdir -p /etc/systemd/system/user@.service.d
printf '[Service]\nDelegate=cpu cpuset io memory pids\n' > /etc/systemd/system/user@.service.d/delegate.conf

echo "provision: done; rust $(rustc --version | awk '{print $2}'), $(skiff_packages test | wc -l) packages, cgroup: $(stat -fc %T /sys/fs/cgroup) (want cgroup2fs)"
