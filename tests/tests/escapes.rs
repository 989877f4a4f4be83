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
    let (s, r) = on_both(|rt, b| {
        let bin = b.rootfs().join("bin/euid");
        compile_static(
            "#include <stdio.h>\n#include <unistd.h>\nint main(void){printf(\"%d\\n\",(int)geteuid());return 0;}\n",
            &bin,
        );
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

/// While the init is being set up (here: waiting for `start`, still holding
/// runtime state), processes in the container must not be able to read its
/// memory or environment: the init is non-dumpable until execve. Once it
/// runs the user's program, the same read works (the control).
#[test]
fn init_is_not_readable_before_exec() {
    let (s, r) = on_both(|rt, b| {
        b.set_args(SLEEPER);
        let id = unique_id();
        rt.create(b, &id).ok();
        let probe = [
            "sh",
            "-c",
            "cat /proc/1/environ >/dev/null 2>&1 && echo readable || echo refused",
        ];
        let before = rt.exec(&id, &probe).stdout;
        rt.start(&id).ok();
        let pid = rt.pid(&id);
        poll(
            std::time::Duration::from_secs(10),
            "the init to exec",
            || {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .ok()
                    .filter(|c| c.starts_with(b"sleep\0"))
                    .map(drop)
            },
        );
        let after = rt.exec(&id, &probe).stdout;
        rt.delete_force(&id).ok();
        (before, after)
    });
    assert_eq!(s, ("refused\n".to_string(), "readable\n".to_string()));
    // RUNC-1.1.5-QUIRK: runc's Go init is dumpable again while it waits on
    // exec.fifo, so the same probe reads it; only the control must agree.
    assert_eq!(r.1, "readable\n");
}
