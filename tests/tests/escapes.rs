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

/// A config whose `/dev` is the rootfs's own directory (no tmpfs mounted
/// there), so files the image planted in /dev are what the runtime meets.
fn with_rootfs_dev(b: &Bundle) {
    b.edit(|v| {
        v["mounts"]
            .as_array_mut()
            .unwrap()
            .retain(|m| m["destination"] != "/dev");
    });
}

/// Create `id` from `b`, expecting a refusal; asserts nothing is left
/// behind (state, mounts, cgroups) and returns the error output.
#[track_caller]
fn refused(rt: &Runtime, b: &Bundle, extra: &[&str]) -> Output {
    let id = unique_id();
    let leak = LeakCheck::new(&[rt], &[b], &[&id]);
    let mut args = vec!["create", "--bundle", b.path_str()];
    args.extend_from_slice(extra);
    args.push(&id);
    let out = rt.call(&args).fail();
    assert!(!rt.root_entries().contains(&id), "{id} left in root: {out}");
    leak.assert_clean();
    out
}

/// CVE-2025-31133: the image ships `/dev/null` as a symlink to a procfs file
/// the container must not write (`/proc/sys/kernel/core_pattern`, global to
/// the host). A runtime that trusts it bind-mounts the link's target over
/// every masked file, giving the container a writable core_pattern. Skiff
/// refuses the planted node and, as a second line, only masks with a
/// verified 1:3 character device. The control: the same config without the
/// planted link runs and masks /proc/keys with the null device.
/// runc 1.1.5 predates the fix (1.2.8), so this runs skiff only.
#[test]
fn masked_paths_refuse_a_planted_dev_null() {
    let rt = Runtime::skiff();
    let b = Bundle::busybox();
    with_rootfs_dev(&b);
    b.set_args(&["sh", "-c", "wc -c </proc/keys; stat -c %t:%T /dev/null"]);
    let ok = rt.run(&b, &unique_id()).ok();
    assert_eq!(ok.stdout, "0\n1:3\n", "control: {ok}");

    let b = Bundle::busybox();
    with_rootfs_dev(&b);
    std::fs::create_dir_all(b.rootfs().join("dev")).unwrap();
    std::os::unix::fs::symlink("/proc/sys/kernel/core_pattern", b.rootfs().join("dev/null"))
        .unwrap();
    let core_pattern = std::fs::read("/proc/sys/kernel/core_pattern").unwrap();
    let out = refused(&rt, &b, &[]);
    assert!(
        out.stderr.contains("/dev/null") && out.stderr.contains("not the device 1:3"),
        "{out}"
    );
    assert_eq!(
        std::fs::read("/proc/sys/kernel/core_pattern").unwrap(),
        core_pattern
    );
}

/// CVE-2025-52565: `/dev/console` in the image is a symlink to a procfs file,
/// so the console bind mount (made before masking) lands on /proc. Skiff
/// mounts only the pty it got from the master (TIOCGPTPEER) and only onto a
/// /dev/console it created or that is not a link. The control: the same
/// bundle without the link gets its console.
/// runc 1.1.5 predates the fix (1.2.8), so this runs skiff only.
#[test]
fn console_refuses_a_planted_symlink() {
    let rt = Runtime::skiff();
    let setup = |b: &Bundle| {
        with_rootfs_dev(b);
        b.edit(|v| v["process"]["terminal"] = json!(true));
        b.set_args(&["sh", "-c", "stat -c %t /dev/console"]);
    };
    let b = Bundle::busybox();
    setup(&b);
    let text = create_with_console(&rt, &b, &["sh", "-c", "stat -c %t /dev/console"], "\n");
    // pty slaves are major 136 (0x88).
    assert_eq!(text.trim(), "88", "control");

    let b = Bundle::busybox();
    setup(&b);
    std::fs::create_dir_all(b.rootfs().join("dev")).unwrap();
    std::os::unix::fs::symlink(
        "/proc/sys/kernel/core_pattern",
        b.rootfs().join("dev/console"),
    )
    .unwrap();
    let sock = ConsoleSocket::new();
    let out = refused(&rt, &b, &["--console-socket", sock.path_str()]);
    assert!(out.stderr.contains("/dev/console is a symlink"), "{out}");
}

/// CVE-2019-19921: `/proc` in the image is a symlink to a directory the
/// image controls, so procfs would be mounted elsewhere and `/proc` would
/// show the image's fake files (where the runtime writes security
/// settings). Both runtimes refuse to mount procfs through the link.
#[test]
fn proc_is_not_mounted_through_a_symlink() {
    let (s, r) = on_both(|rt, b| {
        let root = b.rootfs();
        std::fs::remove_dir(root.join("proc")).unwrap();
        std::fs::create_dir_all(root.join("fakeproc/self/attr")).unwrap();
        std::os::unix::fs::symlink("/fakeproc", root.join("proc")).unwrap();
        refused(rt, b, &[])
    });
    for out in [&s, &r] {
        assert!(out.stderr.contains("ordinary directory"), "{out}");
    }
}

/// CVE-2019-16884: a "volume" bind-mounted over `/proc` (or below it) puts
/// files the container controls where the runtime and the kernel's users
/// expect procfs. Only procfs may go at /proc, nothing below it but the
/// files lxcfs emulates; a symlink elsewhere in the path (`/data` ->
/// `/proc/sys`) does not disguise the destination. Compared with runc,
/// which refuses the same mounts.
#[test]
fn nothing_but_procfs_is_mounted_over_proc() {
    let volume = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(volume.path().join("self/attr")).unwrap();
    std::fs::write(volume.path().join("meminfo"), "MemTotal: 1 kB\n").unwrap();
    for (dest, disguise) in [
        ("/proc", false),
        ("/proc/sys/kernel", false),
        ("/data/kernel", true),
    ] {
        let (s, r) = on_both(|rt, b| {
            if disguise {
                std::os::unix::fs::symlink("/proc/sys", b.rootfs().join("data")).unwrap();
            }
            b.add_bind(volume.path(), dest);
            refused(rt, b, &[])
        });
        for out in [&s, &r] {
            assert!(out.stderr.contains("/proc"), "{dest}: {out}");
        }
    }
    // The control: an lxcfs-style file mount inside /proc is allowed.
    let both = run_both(|b| {
        b.add_mount(json!({"destination": "/proc/meminfo", "type": "bind",
                           "source": volume.path().join("meminfo"), "options": ["bind", "ro"]}));
        b.set_args(&["cat", "/proc/meminfo"]);
    });
    assert_eq!(both.same_stdout(), "MemTotal: 1 kB\n");
}

/// CVE-2019-16884 for `exec`: once a process is in the container's mount
/// namespace, `/proc` is whatever the container mounted there. A container
/// with CAP_SYS_ADMIN hides procfs under a tmpfs with a fake
/// `self/oom_score_adj`; `exec` with `oomScoreAdj` must still set the real
/// value (it is written through the host's /proc before joining) and leave
/// the decoy alone. runc 1.1.5 refuses this exec outright ("error closing
/// exec fds: open /proc/self/fd"), so this runs skiff only.
#[test]
fn exec_writes_proc_settings_before_entering_the_container() {
    let rt = Runtime::skiff();
    let b = Bundle::busybox();
    b.edit(|v| {
        for set in ["bounding", "effective", "permitted"] {
            v["process"]["capabilities"][set]
                .as_array_mut()
                .unwrap()
                .push(json!("CAP_SYS_ADMIN"));
        }
    });
    b.set_args(&[
        "sh",
        "-c",
        "mount -t tmpfs decoy /proc && mkdir /proc/self && echo 0 >/proc/self/oom_score_adj && touch /dev/shm/ready; sleep 60",
    ]);
    let id = unique_id();
    rt.run_detached(&b, &id).ok();
    poll(
        std::time::Duration::from_secs(10),
        "the decoy /proc",
        || {
            let pid = rt.pid(&id);
            std::path::Path::new(&format!("/proc/{pid}/root/dev/shm/ready"))
                .exists()
                .then_some(())
        },
    );
    let mut process = b.config()["process"].clone();
    process["args"] = json!(["sleep", "60"]);
    process["oomScoreAdj"] = json!(345);
    let pj = b.write_file("process.json", &process.to_string());
    let pidfile = b.path().join("exec.pid");
    rt.call(&[
        "exec",
        "--detach",
        "--pid-file",
        pidfile.to_str().unwrap(),
        "--process",
        pj.to_str().unwrap(),
        &id,
    ])
    .ok();
    let pid = std::fs::read_to_string(&pidfile).unwrap();
    let real = std::fs::read_to_string(format!("/proc/{}/oom_score_adj", pid.trim())).unwrap();
    let init = rt.pid(&id);
    let decoy =
        std::fs::read_to_string(format!("/proc/{init}/root/proc/self/oom_score_adj")).unwrap();
    rt.delete_force(&id).ok();
    assert_eq!(real.trim(), "345");
    assert_eq!(decoy.trim(), "0");
}

/// CVE-2019-5736: a container process that gets hold of the runtime's own
/// executable (through `/proc/PID/exe` of a runtime process it can see, or
/// by making the runtime exec `#!/proc/self/exe`) waits for the runtime to
/// exit, reopens that file for writing and replaces the host's binary.
/// Here the handle is taken the way the attacker would, `/proc/PID/exe` of
/// the container's init while it waits for `start`, opened `O_PATH` (from
/// the host side, so the test does not depend on winning a race); once the
/// container is gone and nothing runs the file, it is reopened for writing.
/// Both runtimes run from a protected copy: skiff from a read-only detached
/// bind mount of itself (EROFS), or a sealed memfd on old kernels; runc 1.1.5
/// the same way (its "bindfd", else a sealed memfd). Nothing is ever written:
/// a vulnerable runtime shows up as an open that succeeds on an unsealed file.
#[test]
fn runtime_binary_cannot_be_reopened_for_writing() {
    use nix::fcntl::{fcntl, open, FcntlArg, OFlag, SealFlag};
    use nix::sys::stat::Mode;
    use std::os::fd::AsRawFd;
    let (s, r) = on_both(|rt, b| {
        b.set_args(SLEEPER);
        let id = unique_id();
        rt.create(b, &id).ok();
        let pid = rt.pid(&id);
        let handle = open(
            format!("/proc/{pid}/exe").as_str(),
            OFlag::O_PATH | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .unwrap();
        // Killed by its pid rather than with `delete`: a runtime command
        // waits while another test's leak check runs, and this fd, open the
        // whole time, would be what that check reports (see the crate docs,
        // "Parallelism"). `delete` comes once the fd is closed.
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let reopen = format!("/proc/self/fd/{}", handle.as_raw_fd());
        let outcome = poll(
            std::time::Duration::from_secs(10),
            "the init to exit",
            || match open(
                reopen.as_str(),
                OFlag::O_WRONLY | OFlag::O_CLOEXEC,
                Mode::empty(),
            ) {
                Err(nix::errno::Errno::ETXTBSY) => None,
                Err(e) => Some(format!("refused: {e}")),
                Ok(fd) => {
                    let seals = fcntl(&fd, FcntlArg::F_GET_SEALS).unwrap_or(0);
                    let sealed =
                        SealFlag::from_bits_truncate(seals).contains(SealFlag::F_SEAL_WRITE);
                    Some(if sealed { "sealed copy" } else { "WRITABLE" }.to_string())
                }
            },
        );
        drop(handle);
        rt.delete_force(&id).ok();
        outcome
    });
    // skiff: EROFS from the read-only bind mount (or a sealed memfd).
    for (label, outcome) in [("skiff", &s), ("runc", &r)] {
        assert!(
            outcome == "refused: EROFS: Read-only file system" || outcome == "sealed copy",
            "{label}: {outcome}"
        );
    }
}

/// CVE-2021-30465 and relatives: a mount destination reached through a
/// symlink whose target climbs out with `..` (`/vol -> ../../../../<host
/// dir>`) and a bind mount aimed at it. Resolved inside the rootfs (openat2
/// `RESOLVE_IN_ROOT`, `..` stops at the root), the mount lands in the
/// container and the host directory is neither mounted over nor written.
/// The race variant (a shared volume swapping a directory for such a link
/// between check and mount) is closed by mounting on the descriptor that
/// was resolved, never on a path looked up again. Compared with runc,
/// whose securejoin resolves the same way.
#[test]
fn relative_symlink_destinations_stay_in_the_rootfs() {
    let source = tempfile::tempdir().unwrap();
    std::fs::write(source.path().join("from-volume"), "v").unwrap();
    let (s, r) = on_both(|rt, b| {
        let host = tempfile::Builder::new()
            .prefix("skiff-host-")
            .tempdir()
            .unwrap();
        std::fs::write(host.path().join("keep"), "precious").unwrap();
        let climb = format!(
            "{}{}",
            "../".repeat(12),
            host.path().display().to_string().trim_start_matches('/')
        );
        std::os::unix::fs::symlink(&climb, b.rootfs().join("vol")).unwrap();
        b.add_bind(source.path(), "/vol/data");
        b.edit(|v| v["root"]["readonly"] = json!(false));
        b.set_args(&[
            "sh",
            "-c",
            "ls /vol/data && touch /vol/data/../marker && echo wrote",
        ]);
        let id = unique_id();
        let leak = LeakCheck::new(&[rt], &[b], &[&id]);
        let out = rt.run(b, &id).ok();
        leak.assert_clean();
        let entries: Vec<String> = std::fs::read_dir(host.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(entries, ["keep"], "{}: host dir modified: {out}", rt.label);
        let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(
            !mi.contains(host.path().to_str().unwrap()),
            "{}: host dir mounted",
            rt.label
        );
        // Where the link really led: the same path, inside the rootfs.
        let inside = b.rootfs().join(host.path().strip_prefix("/").unwrap());
        assert!(inside.join("marker").exists(), "{}: {out}", rt.label);
        out.stdout
    });
    assert_eq!(s, "from-volume\nwrote\n");
    assert_eq!(s, r);
}
