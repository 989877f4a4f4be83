#!/usr/bin/env bash
# The README's commands on a machine that is not ready for them, checked
# inside the fresh root (tests/fresh-root/check.sh runs this after the
# commands themselves passed, in the copy, as root):
#
#   - run by a user other than root;
#   - on another distribution (the copy's /etc/os-release, rewritten);
#   - without a Rust toolchain;
#   - with apt locked by another process (SKIFF_APT_LOCK_TIMEOUT short).
#
# Each must say what it needs in one line, exit non-zero, and leave the
# machine as it was: the dpkg database is compared before and after.
set -uo pipefail
cd "$(dirname "$0")/../.."
prog=bad-input
failed=0
say() { echo "$prog: $*" >&2; }

# expect NAME PATTERN CMD...: CMD fails, prints one line, matching PATTERN.
expect() {
  local name=$1 pattern=$2; shift 2
  local out rc
  out=$("$@" 2>&1 </dev/null); rc=$?
  if [ $rc = 0 ]; then
    say "FAILED: $name: exited 0"; failed=1; return
  fi
  if [ "$(printf '%s\n' "$out" | grep -c .)" != 1 ] || ! grep -qE "$pattern" <<<"$out"; then
    say "FAILED: $name: wanted one line matching /$pattern/, got:"; printf '%s\n' "$out" >&2
    failed=1; return
  fi
  say "ok: $name: $out"
}

dpkg_before=$(md5sum /var/lib/dpkg/status)

# Not root: the demo and the tests say so before anything else.
for cmd in scripts/demo.sh scripts/test.sh; do
  expect "$cmd as nobody" 'run as root' \
    setpriv --reuid=65534 --regid=65534 --clear-groups env -i PATH=/usr/bin:/bin HOME=/ "$cmd"
done

# Another distribution: refused before apt runs.
cp /etc/os-release /tmp/os-release.saved
printf 'ID=ubuntu\nVERSION_ID="22.04"\nVERSION_CODENAME=jammy\n' >/etc/os-release
expect "scripts/test.sh on ubuntu 22.04" 'supports Debian 12 \(bookworm\) only, found ubuntu 22.04; nothing was installed' \
  scripts/test.sh lint
cp /tmp/os-release.saved /etc/os-release

# No Rust toolchain: the line names the minimum version and rustup.
min=$(sed -n 's/^rust-version *= *"\([0-9.]*\)".*/\1/p' Cargo.toml)
expect "scripts/demo.sh without Rust" "needs a Rust toolchain, rustc >= $min .*rustup" \
  env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/nonexistent scripts/demo.sh

# apt locked: another process holds dpkg's frontend lock (an fcntl(2)
# lock, as apt takes it: struct flock on x86_64 is two shorts, padding,
# two off_t, a pid_t and padding); the install waits, then says so.
perl -MFcntl -e '
  open(my $f, ">>", "/var/lib/dpkg/lock-frontend") or die "open: $!";
  my $lk = pack("s s x4 q q l x4", F_WRLCK, 0, 0, 0, 0);
  fcntl($f, F_SETLKW, $lk) or die "lock: $!";
  print "locked\n"; $| = 1; sleep 120' >/tmp/apt-lock.out 2>&1 &
holder=$!
for _ in $(seq 50); do grep -q locked /tmp/apt-lock.out && break; sleep 0.1; done
grep -q locked /tmp/apt-lock.out || { say "FAILED: could not take dpkg's lock: $(cat /tmp/apt-lock.out)"; failed=1; }
# shellcheck disable=SC2016
expect "an install while apt is locked" 'apt is locked by another process .* for over 20 s' \
  bash -c '. scripts/lib/setup.sh; skiff_prog=test.sh; SKIFF_APT_LOCK_TIMEOUT=20 skiff_apt_run /tmp/apt-locked.log install -y -q hello 2>&1 | grep -v "is busy"; exit "${PIPESTATUS[0]}"'
kill "$holder" 2>/dev/null; wait "$holder" 2>/dev/null

if [ "$(md5sum /var/lib/dpkg/status)" != "$dpkg_before" ]; then
  say "FAILED: the dpkg database changed"; failed=1
fi
[ $failed = 0 ] && say "all passed"
exit $failed
