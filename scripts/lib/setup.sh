# Sourced by scripts/demo.sh, scripts/test.sh, tests/vm and vagrant/provision.sh:
# makes a fresh Debian bookworm machine ready for one job of Skiff's.
#
#   . scripts/lib/setup.sh
#   skiff_setup demo|test        # root? bookworm? Rust? then the packages
#   skiff_need_root demo|test    # only the root check
#   skiff_packages demo|test     # print the job's packages (scripts/packages.txt)
#   skiff_install_packages demo|test   # install the missing ones, nothing else
#
# Every check that fails prints one line saying what is needed and returns 1,
# before anything on the machine has changed. Packages are installed with
# apt-get only when one is missing, with one line saying which; apt's own
# output goes to a log that is shown only when apt fails. Another apt holding
# the dpkg lock is waited for (SKIFF_APT_LOCK_TIMEOUT seconds, default 300).

skiff_top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

skiff_say() { printf '%s: %s\n' "${skiff_prog:-skiff}" "$*" >&2; }

skiff_need_root() {
  [ "$(id -u)" = 0 ] && return 0
  skiff_say "run as root, e.g. sudo $0 (containers need namespaces, mounts and cgroups; set-up installs Debian packages)"
  return 1
}

# The distribution check comes before anything is installed, so an
# unsupported machine is left exactly as it was.
skiff_need_bookworm() {
  local id="" version="" codename=""
  if [ -r /etc/os-release ]; then
    id=$(. /etc/os-release && echo "${ID:-}")
    version=$(. /etc/os-release && echo "${VERSION_ID:-}")
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
  fi
  if [ "$id" = debian ] && { [ "$version" = 12 ] || [ "$codename" = bookworm ]; }; then
    return 0
  fi
  skiff_say "this set-up supports Debian 12 (bookworm) only, found ${id:-an unknown system} ${version:-$codename}; nothing was installed (scripts/packages.txt lists what a port needs)"
  return 1
}

# The oldest rustc the workspace builds with: Cargo.toml's rust-version.
skiff_min_rust() {
  sed -n 's/^rust-version *= *"\([0-9.]*\)".*/\1/p' "$skiff_top/Cargo.toml" | head -1
}

# Finds cargo for root too: `sudo` drops ~/.cargo/bin from PATH, so the
# invoking user's rustup toolchain is looked up as well.
skiff_need_rust() {
  local min; min=$(skiff_min_rust)
  if ! command -v cargo >/dev/null 2>&1; then
    local home
    for home in "${HOME:-/root}" "$(getent passwd "${SUDO_USER:-}" 2>/dev/null | cut -d: -f6)"; do
      [ -n "$home" ] && [ -x "$home/.cargo/bin/cargo" ] || continue
      export PATH="$home/.cargo/bin:$PATH"
      [ -d "$home/.rustup" ] && export RUSTUP_HOME="${RUSTUP_HOME:-$home/.rustup}"
      break
    done
  fi
  if ! command -v cargo >/dev/null 2>&1 || ! command -v rustc >/dev/null 2>&1; then
    skiff_say "needs a Rust toolchain, rustc >= $min (bookworm's own rustc 1.63 is too old): curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal"
    return 1
  fi
  local have; have=$(rustc --version 2>/dev/null | awk '{print $2}')
  if [ "$(printf '%s\n%s\n' "$min" "${have%%-*}" | sort -V | head -1)" != "$min" ]; then
    skiff_say "needs rustc >= $min, found ${have:-none} at $(command -v rustc): rustup update stable"
    return 1
  fi
}

skiff_packages() {
  local job=$1
  awk -v job="$job" '!/^#/ && NF > 1 { for (i = 2; i <= NF; i++) if ($i == job) print $1 }' \
    "$skiff_top/scripts/packages.txt"
}

skiff_missing_packages() {
  local p
  for p in $(skiff_packages "$1"); do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || echo "$p"
  done
}

# apt_run LOG ARGS...: apt-get ARGS, waiting while another apt or dpkg holds
# its locks (apt-get update takes the lists lock, which DPkg::Lock::Timeout
# does not cover, so the wait is ours).
skiff_apt_run() {
  local log=$1; shift
  local timeout=${SKIFF_APT_LOCK_TIMEOUT:-300} waited=0
  while :; do
    if DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=10 "$@" >>"$log" 2>&1; then
      return 0
    fi
    if ! tail -n 5 "$log" | grep -qE 'Could not get lock|Unable to acquire the dpkg|Unable to lock'; then
      return 1
    fi
    if [ "$waited" -ge "$timeout" ]; then
      local holder; holder=$(tail -n 5 "$log" | grep -oE 'process [0-9]+( \([^)]*\))?' | tail -1)
      skiff_say "apt is locked by another process (${holder:-unknown}) for over ${timeout} s; run again when it has finished (SKIFF_APT_LOCK_TIMEOUT sets the wait)"
      return 2
    fi
    [ "$waited" = 0 ] && skiff_say "apt is busy in another process; waiting up to ${timeout} s"
    sleep 5; waited=$((waited + 15))   # apt itself waited 10 s for dpkg's lock
  done
}

skiff_install_packages() {
  local job=$1 missing
  missing=$(skiff_missing_packages "$job" | tr '\n' ' ')
  [ -n "${missing// /}" ] || return 0
  local log; log=$(mktemp /tmp/skiff-apt.XXXXXX.log)
  skiff_say "installing $(echo "$missing" | wc -w) Debian packages for '$job' with apt-get: ${missing% } (log: $log)"
  # A fresh machine's package lists may be empty or stale: update once.
  if ! skiff_apt_run "$log" update -q; then
    skiff_say "apt-get update failed; see $log"; tail -n 5 "$log" >&2; return 1
  fi
  # shellcheck disable=SC2086
  if ! skiff_apt_run "$log" install -y -q --no-install-recommends $missing; then
    skiff_say "apt-get install failed; see $log"; tail -n 5 "$log" >&2; return 1
  fi
  rm -f "$log"
}

skiff_setup() {
  local job=$1
  skiff_need_root || return 1
  skiff_need_bookworm || return 1
  skiff_need_rust || return 1
  skiff_install_packages "$job"
}
