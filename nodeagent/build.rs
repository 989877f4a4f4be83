//! The agent's build script: the link order every Skiff binary gets
//! (`build/link_order.rs`), and the pod sandbox's pause program.
//!
//! The pause (`pause/pause.rs`) is a freestanding program: no C library, no
//! Rust standard library, its own `_start`. Such a crate needs
//! `panic=abort`, which a workspace's dev profile cannot give one binary
//! alone (cargo's `panic` setting is per profile, and the tests need
//! unwinding), so it is compiled here with rustc directly, for the same
//! target, into `OUT_DIR/skiff-pause`. `src/pause.rs` embeds the result.

use std::path::PathBuf;
use std::process::Command;

#[path = "../build/link_order.rs"]
mod link_order;

fn main() {
    link_order::main();
    build_pause();
}

fn build_pause() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let src = manifest.join("pause/pause.rs");
    println!("cargo:rerun-if-changed={}", src.display());
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default()).join("skiff-pause");
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let target = std::env::var("TARGET").unwrap_or_default();
    let mut cmd = Command::new(&rustc);
    cmd.args(["--edition=2021", "--crate-type=bin"])
        .args(["--crate-name=skiff_pause", "--target", &target])
        // No unwinding without std; small code; nothing to debug in 300 bytes.
        .args([
            "-C",
            "panic=abort",
            "-C",
            "opt-level=s",
            "-C",
            "debuginfo=0",
        ])
        .args(["-C", "strip=symbols"])
        // A static position-independent executable with no start files and
        // no libraries: `_start` is the pause's own.
        .args(["-C", "target-feature=+crt-static"])
        .args(["-C", "link-arg=-nostartfiles", "-C", "link-arg=-nostdlib"])
        .args(["-C", "link-arg=-Wl,--build-id=none"])
        .arg("-o")
        .arg(&out)
        .arg(&src);
    // The linker cargo was configured with (`target.<triple>.linker`).
    if let Some(linker) = std::env::var_os("RUSTC_LINKER") {
        let mut arg = std::ffi::OsString::from("linker=");
        arg.push(linker);
        cmd.arg("-C").arg(arg);
    }
    match cmd.output() {
        Ok(o) if o.status.success() => {
            // A build script's output is hidden; cargo shows these.
            for line in String::from_utf8_lossy(&o.stderr).lines() {
                println!("cargo:warning=pause.rs: {line}");
            }
        }
        Ok(o) => fail(&format!(
            "compile {}: rustc {}\n{}",
            src.display(),
            o.status,
            String::from_utf8_lossy(&o.stderr)
        )),
        Err(e) => fail(&format!("run {}: {e}", PathBuf::from(rustc).display())),
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("error: {msg}");
    std::process::exit(1);
}
