//! The `skiff` command line without containers: flags, output formats and
//! exit codes that containerd and people rely on. (Containers themselves are
//! tested end to end in the `skiff-tests` crate.) Having this integration
//! test also makes `cargo test --workspace` build the `skiff` binary that the
//! end-to-end tests run.

use std::process::Command;

fn skiff(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_skiff"))
        .args(args)
        .output()
        .expect("run skiff")
}

fn tmpdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("skiff-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn version_names_the_spec() {
    let out = skiff(&["--version"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("spec: 1.0.2-dev"));
}

#[test]
fn features_is_json_with_hooks_and_namespaces() {
    let out = skiff(&["features"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["hooks"].as_array().unwrap().len(), 6);
    assert!(v["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n == "time"));
}

#[test]
fn spec_refuses_to_overwrite() {
    let d = tmpdir("spec");
    let b = d.to_str().unwrap();
    assert!(skiff(&["spec", "--bundle", b]).status.success());
    let text = std::fs::read_to_string(d.join("config.json")).unwrap();
    assert!(
        text.starts_with("{\n\t\"ociVersion\""),
        "tab-indented like runc"
    );
    let again = skiff(&["spec", "--bundle", b]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("File config.json exists. Remove it first")
    );
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn errors_are_logrus_lines_or_json_in_the_log_file() {
    let d = tmpdir("log");
    let root = d.join("root");
    let out = skiff(&["--root", root.to_str().unwrap(), "state", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("time=\"") && err.contains("level=error msg=\"container does not exist\""),
        "{err}"
    );

    let log = d.join("log.json");
    let out = skiff(&[
        "--root",
        root.to_str().unwrap(),
        "--log",
        log.to_str().unwrap(),
        "--log-format",
        "json",
        "start",
        "nope",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "container does not exist"
    );
    let line = std::fs::read_to_string(&log).unwrap();
    let v: serde_json::Value = serde_json::from_str(line.lines().last().unwrap()).unwrap();
    assert_eq!(v["level"], "error");
    assert_eq!(v["msg"], "container does not exist");
    assert!(v["time"].as_str().unwrap().ends_with('Z'));
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn list_on_an_empty_root() {
    let d = tmpdir("list");
    let root = d.join("root");
    let r = root.to_str().unwrap();
    let out = skiff(&["--root", r, "list"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "ID          PID         STATUS      BUNDLE      CREATED     OWNER\n"
    );
    assert_eq!(
        String::from_utf8_lossy(&skiff(&["--root", r, "list", "--format", "json"]).stdout),
        "null\n"
    );
    assert_eq!(
        skiff(&["--root", r, "list", "--format", "xml"])
            .status
            .code(),
        Some(1)
    );
    // Every command creates the root, root-only.
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&root).unwrap().permissions().mode() & 0o777,
        0o700
    );
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn usage_errors_and_unknown_commands() {
    assert_eq!(skiff(&["state"]).status.code(), Some(1));
    assert_eq!(skiff(&["no-such-command"]).status.code(), Some(3));
    assert_eq!(
        skiff(&["--log-format", "xml", "list"]).status.code(),
        Some(1)
    );
    let out = skiff(&["--systemd-cgroup", "list"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("systemd-cgroup"));
}

#[test]
fn kill_rejects_unknown_signals() {
    let d = tmpdir("kill");
    let out = skiff(&["--root", d.to_str().unwrap(), "kill", "nope", "BOGUS"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown signal"));
    std::fs::remove_dir_all(&d).unwrap();
}
