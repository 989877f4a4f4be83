//! The `skiff-agent image` command line: bad input gets a clear error and
//! touches nothing (the end-to-end image tests are in `tests/tests/images.rs`).

use std::process::Command;

fn agent(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_skiff-agent"))
        .args(args)
        .output()
        .expect("run skiff-agent");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_locations_and_names_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("store");
    let d = data.to_str().unwrap();
    let (code, _, err) = agent(&["image", "--data-dir", d, "import", "docker://busybox"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("want oci:DIR[:TAG] or oci-archive:FILE[:TAG]"),
        "{err}"
    );
    let (code, _, err) = agent(&["image", "--data-dir", d, "import", "oci:/nonexistent-skiff"]);
    assert_eq!(code, 1);
    assert!(err.contains("not an OCI image layout"), "{err}");
    let (code, _, err) = agent(&["image", "--data-dir", d, "inspect", "Bad Name"]);
    assert_eq!(code, 1);
    assert!(err.contains("no image"), "{err}");
    let (code, out, _) = agent(&["image", "ls", "-q", "--data-dir", d]);
    assert_eq!((code, out.as_str()), (0, ""));
}

#[test]
fn the_store_is_private_to_root() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("store");
    let (code, _, err) = agent(&["image", "--data-dir", data.to_str().unwrap(), "ls"]);
    assert_eq!(code, 0, "{err}");
    let mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
}
