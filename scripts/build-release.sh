#!/usr/bin/env bash
# Builds every release binary of Skiff in one cargo invocation:
#   target/x86_64-unknown-linux-gnu/release/{skiff,containerd-shim-skiff-v2,
#   skiff-agent,skiff-monitor}
#
# Why one invocation: cargo unifies the features of shared dependencies
# across the packages it builds together, and the features change the hashes
# in symbol names. build/link-order/*.txt (see
# build/link_order.rs) name symbols of exactly this build; a binary built
# another way (say `cargo build --release -p skiff-runtime`) works the same
# but is laid out unordered and takes more memory.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo build --release -q -p skiff-runtime -p skiff-shim -p skiff-images -p skiff-agent "$@"
