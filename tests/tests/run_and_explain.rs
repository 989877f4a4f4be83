//! `run` in the foreground forwards signals to the container; `--explain`
//! narrates with man pages and is silent when off; `rootfsPropagation`;
//! `--preserve-fds`.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use skiff_tests::*;

/// Start `run` in the foreground, wait until the container has printed
/// `ready`, send `sig` to the runtime process, and return (exit code, output).
fn run_and_signal(rt: &Runtime, b: &Bundle, sig: i32) -> (i32, String) {
    let id = unique_id();
    let mut cmd = rt.cmd(&["run", "--bundle", b.path_str(), &id]);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0);
    let mut child = cmd.spawn().expect("spawn run");
    let mut out = child.stdout.take().unwrap();
    // Read with a deadline: if the runtime died without taking the container
    // down, the container would keep the pipe open forever.
    let read_until = |out: &mut std::process::ChildStdout, want: Option<&str>| -> String {
        use std::os::fd::AsFd;
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut seen = String::new();
        let mut buf = [0u8; 64];
        loop {
            if want.is_some_and(|w| seen.contains(w)) || std::time::Instant::now() > deadline {
                return seen;
            }
            let mut fds = [nix::poll::PollFd::new(
                out.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            if nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(100u16)).unwrap_or(0) == 0 {
                continue;
            }
            match out.read(&mut buf) {
                Ok(0) | Err(_) => return seen,
                Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            }
        }
    };
    let seen = read_until(&mut out, Some("ready"));
    assert!(
        seen.contains("ready"),
        "container never got ready: {seen:?}"
    );
    // SAFETY: kill(2) on the child we spawned.
    unsafe { libc::kill(child.id() as i32, sig) };
    let status = wait_or_kill(child, Duration::from_secs(20), "run");
    let rest = read_until(&mut out, None);
    rt.delete_force(&id);
    (status.code().unwrap_or(-1), seen + &rest)
}

#[test]
fn run_forwards_signals_to_the_container() {
    let (s, r) = on_both(|rt, b| {
        b.set_args(&[
            "sh",
            "-c",
            "trap 'echo got TERM; exit 7' TERM; echo ready; while :; do sleep 0.05; done",
        ]);
        run_and_signal(rt, b, libc::SIGTERM)
    });
    assert_eq!(s, (7, "ready\ngot TERM\n".to_string()));
    assert_eq!(s, r);
}

#[test]
fn explain_narrates_with_man_pages_and_is_silent_when_off() {
    let b = Bundle::busybox();
    b.set_args(&["true"]);
    let rt = Runtime::skiff();
    let quiet = rt.run(&b, &unique_id()).ok();
    assert_eq!(quiet.stderr, "", "nothing on stderr without --explain");
    let loud = rt
        .call(&["--explain", "run", "--bundle", b.path_str(), &unique_id()])
        .ok();
    for man in [
        "[unshare(2)]",
        "[pivot_root(2)]",
        "[mount(2)]",
        "[execve(2)]",
        "[cgroups(7)]",
    ] {
        assert!(
            loud.stderr.contains(man),
            "{man} missing from:\n{}",
            loud.stderr
        );
    }
    // The init narrates as pid 1 of its namespace.
    assert!(loud.stderr.contains("skiff[1]: "), "{}", loud.stderr);
}

#[test]
fn rootfs_propagation_shared() {
    let both = run_both(|b| {
        b.edit(|v| v["linux"]["rootfsPropagation"] = json!("shared"));
        b.set_args(&[
            "sh",
            "-c",
            "awk '$5 == \"/\" { print $7 }' /proc/self/mountinfo | cut -d: -f1",
        ]);
    });
    // The spec: rootfsPropagation "sets the rootfs's mount propagation", so
    // the container's / is shared. RUNC-1.1.5-QUIRK: runc 1.1.5 leaves it
    // private ("-" in mountinfo's optional fields).
    assert_eq!(both.skiff.stdout, "shared\n", "{}", both.skiff);
    assert!(
        ["-\n", "shared\n"].contains(&both.runc.stdout.as_str()),
        "{}",
        both.runc
    );
}

#[test]
fn preserve_fds_passes_descriptors() {
    let (s, r) = on_both(|rt, b| {
        let file = b.write_file("passed.txt", "through fd 3\n");
        b.set_args(&["cat", "/proc/self/fd/3"]);
        let f = std::fs::File::open(file).unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
        let id = unique_id();
        let mut cmd: Command =
            rt.cmd(&["run", "--preserve-fds", "1", "--bundle", b.path_str(), &id]);
        // SAFETY: only dup2 between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                // dup2 onto itself would keep close-on-exec: clear it explicitly.
                if libc::dup2(fd, 3) < 0 || libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        output(cmd).ok().stdout
    });
    assert_eq!(s, "through fd 3\n");
    assert_eq!(s, r);
}

#[test]
fn every_rootfs_propagation_pivots() {
    // Recursive slave or private leave no shared mount, so the rootfs's
    // parent is not looked up; the others make it private first.
    // Either way pivot_root(2) must succeed (/ is shared on systemd hosts).
    // ("runbindable" is left out: it makes every host mount unbindable, so
    // no bind mount of a host path can work; runc 1.1.5 fails it too.)
    let rt = Runtime::skiff();
    for p in [
        "private",
        "rprivate",
        "slave",
        "rslave",
        "shared",
        "rshared",
        "unbindable",
    ] {
        let b = Bundle::busybox();
        b.edit(|v| v["linux"]["rootfsPropagation"] = json!(p));
        b.set_args(&["true"]);
        let out = rt.run(&b, &unique_id());
        assert_eq!(out.code(), 0, "{p}: {out}");
    }
}
