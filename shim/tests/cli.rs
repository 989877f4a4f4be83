//! The shim binary's own command line (the task API is tested through a
//! real containerd in `tests/tests/containerd.rs`).

use std::process::Command;

#[test]
fn version_and_missing_namespace() {
    let bin = env!("CARGO_BIN_EXE_containerd-shim-skiff-v2");
    let out = Command::new(bin).arg("-v").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("io.containerd.skiff.v2"), "{text}");
    assert!(text.contains(env!("CARGO_PKG_VERSION")), "{text}");
    // -info: a RuntimeInfo protobuf naming the runtime and carrying skiff's
    // features JSON (skiff is found next to the shim).
    let out = Command::new(bin).arg("-info").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = String::from_utf8_lossy(&out.stdout);
    assert!(bytes.contains("io.containerd.skiff.v2"));
    assert!(bytes.contains("\"ociVersionMax\""), "{bytes}");
    // Started by hand without containerd's flags: a clear refusal.
    let out = Command::new(bin).arg("start").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("namespace"));
}
