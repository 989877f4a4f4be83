//! Build script shared by `skiff`, `containerd-shim-skiff-v2` and
//! `skiff-agent` (with its `skiff-monitor`; the agent's own build script,
//! `nodeagent/build.rs`, calls this one's `main`): lays out
//! a release binary's hot code together, so that fewer of its pages become
//! resident.
//!
//! Why layout decides memory: an executable's code is mapped from the page
//! cache, and the first touch of a page does not map one page but up to 16
//! (the kernel's *fault-around*, 64 KiB by default, see `filemap_map_pages`
//! in mm/filemap.c). Every page so mapped counts in the process's resident
//! set. A `run` of `/bin/true` executes about 1.2 MiB of skiff's 2.8 MiB of
//! code, but scattered over the whole `.text`, so nearly all of it ends up
//! resident. Placed side by side, the same functions cost only their size.
//!
//! The order comes from a profile: `bench/link-order.sh` runs the binaries
//! on a cold page cache with read-ahead off, asks mincore(2) which pages were
//! read, and writes the symbols on those pages, hottest phase first, to
//! `build/link-order/<package>.txt`, next to this script. It hands that
//! file to the linker (`--symbol-ordering-file`, an lld option; every Rust
//! function already sits in its own section, so lld can move each one) and
//! uses the lld that ships with every Rust toolchain (`gcc-ld/ld.lld` in the
//! sysroot). Symbols the file names but the binary lacks (the code changed
//! since the profile) are skipped: a stale file costs memory, never
//! correctness.
//!
//! The same link also packs the relative relocations (`-z
//! pack-relative-relocs`, the RELR format glibc reads since 2.36): the
//! start-up code of a static-pie binary reads that table in full, and RELR
//! makes it 80 times smaller.
//!
//! Only release binaries are ordered. `SKIFF_LINK_ORDER=0` turns it off;
//! `SKIFF_LINK_MAP_DIR=DIR` also writes the linker's map, `DIR/<binary>.map`
//! (every input section's address and mangled symbols, which the stripped
//! binary no longer has), for the profiling script.

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let package = std::env::var("CARGO_PKG_NAME").unwrap_or_default();
    let order = manifest
        .join("../build/link-order")
        .join(format!("{package}.txt"));
    println!("cargo:rerun-if-changed={}", order.display());
    println!("cargo:rerun-if-env-changed=SKIFF_LINK_ORDER");
    println!("cargo:rerun-if-env-changed=SKIFF_LINK_MAP_DIR");
    if std::env::var("PROFILE").as_deref() != Ok("release")
        || std::env::var("SKIFF_LINK_ORDER").as_deref() == Ok("0")
    {
        return;
    }
    let map_dir = std::env::var_os("SKIFF_LINK_MAP_DIR");
    if !order.is_file() && map_dir.is_none() {
        return;
    }
    let Some(lld) = bundled_lld() else {
        println!(
            "cargo:warning=no ld.lld in the Rust toolchain: {} not applied",
            order.display()
        );
        return;
    };
    let arg = |a: String| println!("cargo:rustc-link-arg-bins={a}");
    arg("-fuse-ld=lld".into());
    arg(format!("-B{}", lld.display()));
    arg("-Wl,-z,pack-relative-relocs".into());
    if order.is_file() {
        arg(format!("-Wl,--symbol-ordering-file={}", order.display()));
        arg("-Wl,--no-warn-symbol-ordering".into());
    }
    if let Some(dir) = map_dir {
        // One map per binary: a package may link several (the agent's
        // package has skiff-agent and skiff-monitor).
        for bin in bin_names(&manifest.join("Cargo.toml")) {
            let map = Path::new(&dir).join(format!("{bin}.map"));
            println!("cargo:rustc-link-arg-bin={bin}=-Wl,-Map={}", map.display());
        }
        arg("-Wl,--no-demangle".into());
    }
}

/// The `name`s of the `[[bin]]` targets of a Cargo.toml.
fn bin_names(manifest: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(manifest).unwrap_or_default();
    let mut in_bin = false;
    let mut names = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
        } else if let (true, Some(v)) = (in_bin, line.strip_prefix("name")) {
            if let Some(v) = v.trim_start().strip_prefix('=') {
                names.push(v.trim().trim_matches('"').to_string());
            }
        }
    }
    names
}

/// The directory holding the toolchain's `ld.lld` wrapper, for gcc's `-B`.
fn bundled_lld() -> Option<PathBuf> {
    let rustc = std::env::var_os("RUSTC")?;
    let host = std::env::var("HOST").ok()?;
    let out = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()?;
    let sysroot = String::from_utf8(out.stdout).ok()?;
    let dir = Path::new(sysroot.trim())
        .join("lib/rustlib")
        .join(host)
        .join("bin/gcc-ld");
    dir.join("ld.lld").is_file().then_some(dir)
}
