//! seccomp filters from `linux.seccomp`: errno actions, argument filters,
//! kill, with and without no_new_privs, compared with runc on the same
//! bundle.

use skiff_tests::*;

fn with_filter(b: &Bundle, syscalls: serde_json::Value) {
    b.edit(|v| {
        v["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": syscalls
        });
    });
}

#[test]
fn blocked_syscall_returns_the_chosen_errno() {
    let both = run_both(|b| {
        with_filter(
            b,
            json!([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
                              {"names": ["no_such_syscall_anywhere"], "action": "SCMP_ACT_ERRNO"}]),
        );
        b.set_args(&[
            "sh",
            "-c",
            "mkdir /dev/shm/x 2>&1; echo status $?; touch /dev/shm/y && echo touched",
        ]);
    });
    assert_eq!(
        both.same_stdout(),
        "mkdir: can't create directory '/dev/shm/x': Permission denied\nstatus 1\ntouched\n"
    );
}

#[test]
fn argument_filter_blocks_only_matching_calls() {
    let both = run_both(|b| {
        with_filter(
            b,
            json!([{"names": ["kill"], "action": "SCMP_ACT_ERRNO",
                               "args": [{"index": 1, "value": 9, "op": "SCMP_CMP_EQ"}]}]),
        );
        b.set_args(&["sh", "-c", "sleep 5 & kill -9 $! 2>/dev/null && echo killed-9 || echo denied-9; kill -15 $! && echo killed-15"]);
    });
    assert_eq!(both.same_stdout(), "denied-9\nkilled-15\n");
}

#[test]
fn masked_equality_operator() {
    // SCMP_CMP_MASKED_EQ: (arg & value) == valueTwo. Deny chmod to modes
    // that give others write access (mode & 0o002 == 0o002).
    let both = run_both(|b| {
        with_filter(
            b,
            json!([{"names": ["chmod"], "action": "SCMP_ACT_ERRNO",
                               "args": [{"index": 1, "value": 2, "valueTwo": 2, "op": "SCMP_CMP_MASKED_EQ"}]},
                              {"names": ["fchmodat", "fchmodat2"], "action": "SCMP_ACT_ERRNO",
                               "args": [{"index": 2, "value": 2, "valueTwo": 2, "op": "SCMP_CMP_MASKED_EQ"}]}]),
        );
        b.set_args(&["sh", "-c", "touch /dev/shm/f; chmod 755 /dev/shm/f && echo 755-ok; chmod 777 /dev/shm/f 2>/dev/null || echo 777-refused"]);
    });
    assert_eq!(both.same_stdout(), "755-ok\n777-refused\n");
}

#[test]
fn kill_action_kills_with_sigsys() {
    let both = run_both(|b| {
        with_filter(
            b,
            json!([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_KILL"}]),
        );
        b.set_args(&["sh", "-c", "echo before; mkdir /dev/shm/k; echo status $?"]);
    });
    assert_eq!(both.same_stdout(), "before\nstatus 159\n");
}

#[test]
fn filter_without_no_new_privileges() {
    // Loaded while the init still has CAP_SYS_ADMIN, before the user change.
    let both = run_both(|b| {
        with_filter(
            b,
            json!([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]),
        );
        b.edit(|v| {
            v["process"]["noNewPrivileges"] = json!(false);
            v["process"]["user"] = json!({"uid": 1000, "gid": 1000});
        });
        b.set_args(&["sh", "-c", "id -u; grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status; mkdir /dev/shm/x 2>/dev/null || echo denied"]);
    });
    assert_eq!(
        both.same_stdout(),
        "1000\nNoNewPrivs:\t0\nSeccomp:\t2\ndenied\n"
    );
}

#[test]
fn exec_gets_the_container_filter() {
    let (s, r) = on_both(|rt, b| {
        with_filter(
            b,
            json!([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]),
        );
        let id = unique_id();
        rt.start_with(b, &id, &["sleep", "300"]);
        let out = rt
            .exec(
                &id,
                &["sh", "-c", "mkdir /dev/shm/z 2>/dev/null || echo denied"],
            )
            .stdout;
        rt.delete_force(&id).ok();
        out
    });
    assert_eq!(s, "denied\n");
    assert_eq!(s, r);
}

/// Be the program at `listenerPath`: accept the runtime's connection (20 s
/// deadline) and take the container state and the notification descriptor.
fn receive_seccomp_fd(
    listener: &std::os::unix::net::UnixListener,
) -> Option<(serde_json::Value, std::os::fd::OwnedFd)> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let mut fds = [nix::poll::PollFd::new(
        std::os::fd::AsFd::as_fd(listener),
        nix::poll::PollFlags::POLLIN,
    )];
    if nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(20_000u16)).unwrap_or(0) == 0 {
        return None;
    }
    let (stream, _) = listener.accept().unwrap();
    let mut buf = vec![0u8; 16384];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([i32; 1]);
    let msg = nix::sys::socket::recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        nix::sys::socket::MsgFlags::empty(),
    )
    .unwrap();
    let mut fd = None;
    for c in msg.cmsgs().unwrap() {
        if let nix::sys::socket::ControlMessageOwned::ScmRights(f) = c {
            // SAFETY: the descriptor was just received; we own it.
            fd = Some(unsafe { OwnedFd::from_raw_fd(f[0]) });
        }
    }
    let n = msg.bytes;
    let state: serde_json::Value = serde_json::from_slice(&buf[..n]).unwrap();
    Some((state, fd.expect("a descriptor with the message")))
}

/// SCMP_ACT_NOTIFY: the listener at listenerPath gets the notification
/// descriptor and the container's state, and answers a system call on the
/// container's behalf (here: a mkdir that "succeeds" without happening).
/// skiff only: runc 1.1.5 does not forward the state the spec describes.
#[test]
fn notify_listener_answers_for_the_container() {
    use std::os::fd::AsRawFd;
    let rt = Runtime::skiff();
    let b = Bundle::busybox();
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("listener.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock_path).unwrap();
    with_filter(
        &b,
        json!([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]),
    );
    b.edit(|v| {
        v["linux"]["seccomp"]["listenerPath"] = json!(sock_path);
        v["linux"]["seccomp"]["listenerMetadata"] = json!("hello-listener");
    });
    b.set_args(&[
        "sh",
        "-c",
        "mkdir /dev/shm/n && echo mkdir-ok; ls /dev/shm | wc -l",
    ]);
    let supervisor = std::thread::spawn(move || {
        let (state, fd) = receive_seccomp_fd(&listener)?;
        let req = libseccomp::ScmpNotifReq::receive(fd.as_raw_fd()).unwrap();
        let name = req.data.syscall.get_name().unwrap_or_default();
        libseccomp::ScmpNotifResp::new_val(req.id, 0, libseccomp::ScmpNotifRespFlags::empty())
            .respond(fd.as_raw_fd())
            .unwrap();
        Some((state, name))
    });
    let id = unique_id();
    let out = rt.run(&b, &id);
    let (state, name) = supervisor
        .join()
        .unwrap()
        .unwrap_or_else(|| panic!("no listener connection: {out}"));
    assert_eq!(out.stdout, "mkdir-ok\n0\n", "{out}");
    assert!(name.starts_with("mkdir"), "{name}");
    assert_eq!(state["fds"], json!(["seccompFd"]));
    assert_eq!(state["metadata"], "hello-listener");
    assert_eq!(state["state"]["id"], json!(id));
    assert_eq!(state["state"]["status"], "creating");
    assert!(state["pid"].as_i64().unwrap() > 1);
}

/// `linux.seccomp` as `skiff spec --profile default` writes it; the rest of
/// that config must be exactly `runc spec`'s.
fn default_profile() -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let runc_dir = tempfile::tempdir().unwrap();
    let mut c = Runtime::skiff().cmd(&["spec", "--profile", "default"]);
    c.current_dir(dir.path());
    output(c).ok();
    let mut c = Runtime::runc().cmd(&["spec"]);
    c.current_dir(runc_dir.path());
    output(c).ok();
    let read = |d: &std::path::Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(d.join("config.json")).unwrap()).unwrap()
    };
    let mut ours = read(dir.path());
    let profile = ours["linux"]
        .as_object_mut()
        .unwrap()
        .remove("seccomp")
        .expect("--profile default writes linux.seccomp");
    assert_eq!(ours, read(runc_dir.path()), "the rest is runc spec's");
    profile
}

/// What a hostile program tries first once inside: new namespaces (a user
/// namespace gives back every capability), the kernel keyring, turning ASLR
/// off, clone3 (whose flags a filter cannot see); and a plain fork that
/// must keep working. Each line is the call and its errno (0: allowed).
const ESCAPE_ATTEMPTS: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
static void report(const char *what, long r) { printf("%s %d\n", what, r < 0 ? errno : 0); }
int main(void) {
    report("unshare(CLONE_NEWUSER)", unshare(CLONE_NEWUSER));
    long c = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
    if (c == 0) _exit(0);
    if (c > 0) waitpid(c, 0, 0);
    report("clone(CLONE_NEWUSER)", c);
    report("clone3", syscall(SYS_clone3, 0, 0));
    report("keyctl", syscall(SYS_keyctl, 0, -3, 0));
    report("personality(ADDR_NO_RANDOMIZE)", syscall(SYS_personality, 0x0040000));
    report("personality(query)", syscall(SYS_personality, 0xffffffff));
    pid_t p = fork();
    if (p == 0) _exit(7);
    int st = 0;
    waitpid(p, &st, 0);
    printf("fork %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
    return 0;
}
"#;

#[test]
fn default_profile_blocks_namespace_and_keyring_escapes() {
    let profile = default_profile();
    let attempt = |rt: &Runtime, seccomp: Option<&serde_json::Value>| {
        let b = Bundle::busybox();
        compile_static(ESCAPE_ATTEMPTS, &b.rootfs().join("bin/attempt"));
        b.edit(|v| match seccomp {
            Some(p) => v["linux"]["seccomp"] = p.clone(),
            None => drop(v["linux"].as_object_mut().unwrap().remove("seccomp")),
        });
        b.set_args(&["/bin/attempt"]);
        rt.run(&b, &unique_id()).ok().stdout
    };
    let expected = "unshare(CLONE_NEWUSER) 1\nclone(CLONE_NEWUSER) 1\nclone3 38\nkeyctl 1\n\
                    personality(ADDR_NO_RANDOMIZE) 1\npersonality(query) 0\nfork 7\n";
    for rt in Runtime::both() {
        assert_eq!(attempt(&rt, Some(&profile)), expected, "{}", rt.label);
    }
    // The control: without the profile the same calls get through (clone3
    // with no arguments is EINVAL, not ENOSYS), so the test can fail.
    let open = attempt(&Runtime::skiff(), None);
    assert!(open.contains("unshare(CLONE_NEWUSER) 0\n"), "{open}");
    assert!(open.contains("clone3 22\n"), "{open}");
    assert!(open.contains("keyctl 0\n"), "{open}");
}

#[test]
fn default_profile_lets_a_busybox_shell_work() {
    let profile = default_profile();
    let both = run_both(|b| {
        b.edit(|v| v["linux"]["seccomp"] = profile.clone());
        b.set_args(&[
            "sh",
            "-c",
            "echo hello | tr a-z A-Z; mkdir /dev/shm/d && touch /dev/shm/d/f && ls /dev/shm/d && rm -r /dev/shm/d; \
             sleep 0.1 & wait $! && echo waited; ps -o pid,comm | grep -c ps; id -u; \
             date +%Y | grep -q '^20' && echo dated; seq 3 | sort -r | xargs; \
             awk 'BEGIN{print 6*7}'; sed s/a/b/ </dev/null; hostname; cat /proc/self/status | grep -c Seccomp:",
        ]);
    });
    assert_eq!(
        both.same_stdout(),
        "HELLO\nf\nwaited\n1\n0\ndated\n3 2 1\n42\nrunc\n1\n"
    );
}

/// `SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV` (Linux 5.19): once the
/// supervisor has received a notification, a signal the program handles no
/// longer interrupts the call, so the supervisor's answer still lands. The
/// supervisor receives a notified `mkdir`, signals the program (which has a
/// SIGUSR1 handler), waits, then answers. With the flag the answer is
/// accepted and `mkdir` returns 0; without it (the control) the call was
/// interrupted (EINTR) and the answer is refused. skiff only: runc 1.1.5 does
/// not know the flag.
#[test]
fn wait_killable_recv_keeps_a_received_call_waiting() {
    use std::os::fd::AsRawFd;
    const PROGRAM: &str = r#"
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
static void on_usr1(int s) { (void)s; }
int main(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, 0);
    int r = mkdir("/dev/shm/w", 0755);
    printf("mkdir %d\n", r < 0 ? errno : 0);
    return 0;
}
"#;
    let attempt = |flag: bool| {
        let rt = Runtime::skiff();
        let b = Bundle::busybox();
        compile_static(PROGRAM, &b.rootfs().join("bin/waiter"));
        let dir = tempfile::tempdir().unwrap();
        let sock_path = dir.path().join("listener.sock");
        let listener = std::os::unix::net::UnixListener::bind(&sock_path).unwrap();
        with_filter(
            &b,
            json!([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]),
        );
        b.edit(|v| {
            v["linux"]["seccomp"]["listenerPath"] = json!(sock_path);
            if flag {
                v["linux"]["seccomp"]["flags"] = json!(["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]);
            }
        });
        b.set_args(&["/bin/waiter"]);
        let supervisor = std::thread::spawn(move || {
            let (_, fd) = receive_seccomp_fd(&listener)?;
            let req = libseccomp::ScmpNotifReq::receive(fd.as_raw_fd()).unwrap();
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(req.pid as i32),
                nix::sys::signal::Signal::SIGUSR1,
            )
            .unwrap();
            // Without the flag the signal cancels the notification: wait
            // (up to 2 s) until the kernel says so. With it, the request
            // stays valid, and the whole wait is the "nothing happens" check.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
            while libseccomp::notify_id_valid(fd.as_raw_fd(), req.id).is_ok()
                && std::time::Instant::now() < deadline
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            let answered = libseccomp::ScmpNotifResp::new_val(
                req.id,
                0,
                libseccomp::ScmpNotifRespFlags::empty(),
            )
            .respond(fd.as_raw_fd())
            .is_ok();
            Some(answered)
        });
        let out = rt.run(&b, &unique_id());
        let answered = supervisor
            .join()
            .unwrap()
            .unwrap_or_else(|| panic!("no listener connection: {out}"));
        (answered, out.stdout)
    };
    assert_eq!(attempt(true), (true, "mkdir 0\n".to_string()));
    assert_eq!(attempt(false), (false, "mkdir 4\n".to_string()));
}
