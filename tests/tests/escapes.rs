//! Regression tests for known container escapes, each attempted from a
//! rootfs or config the attacker controls.

use skiff_tests::*;

/// CVE-2024-21626 and relatives: a runtime descriptor of a host directory
/// still open while execve(2) resolves the program's path (or the cwd) lets
/// `/proc/self/fd/N/...` reach the host. The "host program" here is a
/// symlink that exists only in a host directory outside the rootfs, so
/// running it proves the host was reached. Every descriptor number a
/// runtime could plausibly have open is tried.
/// runc 1.1.5 predates the fix (1.1.12), so this test runs skiff only.
#[test]
fn leaked_descriptors_cannot_reach_the_host() {
    let rt = Runtime::skiff();
    let host = tempfile::Builder::new()
        .prefix("skiff-escape-")
        .tempdir()
        .unwrap();
    std::os::unix::fs::symlink("/bin/busybox", host.path().join("echo")).unwrap();
    let host_dir = host
        .path()
        .to_str()
        .unwrap()
        .trim_start_matches('/')
        .to_string();
    let marker = format!("escaped-{}", unique_id());
    let up = "../".repeat(8);
    for n in 3..=16 {
        for (prog, cwd) in [
            (
                format!("/proc/self/fd/{n}/{up}{host_dir}/echo"),
                "/".to_string(),
            ),
            (
                format!("/proc/self/fd/{n}/1/root/{host_dir}/echo"),
                "/".to_string(),
            ),
            (format!("{up}{host_dir}/echo"), format!("/proc/self/fd/{n}")),
        ] {
            let b = Bundle::busybox();
            b.set_args(&[&prog, &marker]);
            b.edit(|v| v["process"]["cwd"] = json!(cwd));
            let out = rt.run(&b, &unique_id());
            assert!(
                !out.stdout.contains(&marker),
                "fd {n}, {prog} in {cwd}: {out}"
            );
        }
    }
}

/// With `noNewPrivileges` a setuid-root binary in the rootfs runs with the
/// caller's uid; without it, it becomes root (the control, so the test can
/// fail). The binary is a tiny static C program built with the host's cc.
#[test]
fn no_new_privileges_stops_setuid() {
    let src = tempfile::tempdir().unwrap();
    let c = src.path().join("euid.c");
    std::fs::write(&c, "#include <stdio.h>\n#include <unistd.h>\nint main(void){printf(\"%d\\n\",(int)geteuid());return 0;}\n").unwrap();
    let (s, r) = on_both(|rt, b| {
        let bin = b.rootfs().join("bin/euid");
        let ok = std::process::Command::new("cc")
            .args(["-static", "-O2", "-o"])
            .arg(&bin)
            .arg(&c)
            .status()
            .unwrap();
        assert!(ok.success(), "cc -static");
        std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o4755))
            .unwrap();
        let mut seen = Vec::new();
        for nnp in [true, false] {
            b.edit(|v| {
                v["process"]["noNewPrivileges"] = json!(nnp);
                v["process"]["user"] = json!({"uid": 1000, "gid": 1000});
            });
            b.set_args(&["/bin/euid"]);
            seen.push(rt.run(b, &unique_id()).ok().stdout);
        }
        seen
    });
    assert_eq!(s, vec!["1000\n".to_string(), "0\n".to_string()]);
    assert_eq!(s, r);
}
