#!/usr/bin/env bash
# Builds every release binary of Skiff:
#   target/x86_64-unknown-linux-gnu/release/{skiff,containerd-shim-skiff-v2,
#   skiff-agent,skiff-monitor}
# where `skiff` is a link to target/x86_64-unknown-linux-musl/release/skiff.
#
#   scripts/build-release.sh          all of them
#   scripts/build-release.sh skiff    only the runtime (musl), and the link
#   scripts/build-release.sh skiff CARGO-ARGS...
#                                     the same, with more arguments for cargo
#                                     (features); with CARGO_TARGET_DIR set,
#                                     into that directory and without the link
#
# The shim, the agent and the monitor are built in one cargo invocation.
# Why one: cargo unifies the features of shared dependencies across the
# packages it builds together, and the features change the hashes in symbol
# names. build/link-order/*.txt (see build/link_order.rs) name symbols of
# exactly this build; a binary built another way (say `cargo build
# --release -p skiff-agent`) works the same but is laid out unordered and
# takes more memory.
#
# The runtime, `skiff`, is linked with musl rather than glibc. It is a
# short-lived program, started several times for every container, so its
# start-up counts, and glibc's is slow in a virtual machine: before main,
# it measures the CPU's caches with dozens of `cpuid` instructions
# (init_cacheinfo, sysdeps/x86/dl-cacheinfo.h), and in a VM every `cpuid`
# traps to the hypervisor (6 us each on the development machine, about
# 0.5 ms per start). musl measures nothing. See docs/14-milliseconds.md.
# libseccomp comes from Debian's libseccomp-dev as for the glibc build, but
# from a directory of its own: the library path cargo is given also serves
# `-lc`, and Debian's directory holds glibc's libc.a.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" != skiff ]; then
  cargo build --release -q -p skiff-runtime -p skiff-shim -p skiff-images -p skiff-agent
else
  shift
fi

musl=x86_64-unknown-linux-musl
if ! rustup target list --installed 2>/dev/null | grep -qx "$musl"; then
  rustup target add "$musl" >&2
fi
seccomp_dir=target/libseccomp-static
mkdir -p "$seccomp_dir"
cp -u /usr/lib/x86_64-linux-gnu/libseccomp.a "$seccomp_dir/"
LIBSECCOMP_LIB_PATH="$PWD/$seccomp_dir" \
  cargo build --release -q -p skiff-runtime --bin skiff --target "$musl" "$@"
# Where every script, and the shim (which runs the `skiff` beside it), looks.
if [ -z "${CARGO_TARGET_DIR:-}" ]; then
  mkdir -p target/x86_64-unknown-linux-gnu/release
  ln -sfn "../../$musl/release/skiff" target/x86_64-unknown-linux-gnu/release/skiff
fi
