//! Many create/start/delete cycles must leave mounts, cgroups, our fds, our
//! child processes and the runtime root exactly as they were.
//!
//! This test is alone in its binary (process-wide measurements) and makes
//! the test process a child subreaper, as containerd's shim is: container
//! processes are then reparented to us, and any helper process a runtime
//! leaves behind shows up as our child.

use std::time::{Duration, Instant};

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use skiff_tests::*;

fn cycles() -> usize {
    std::env::var("SKIFF_LEAK_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200)
}

/// Reap `pid` if it is (or becomes, within 5 s) a zombie child of ours.
fn reap(pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Ok(WaitStatus::StillAlive) => panic!("container init {pid} still alive after stop"),
            // reaped, or not our child (then somebody else reaps it)
            _ => return,
        }
    }
}

fn cycle(rt: &Runtime, b: &Bundle, id: &str) {
    rt.create(b, id).ok();
    let pid = rt.pid(id);
    rt.start(id).ok();
    rt.wait_status(id, "stopped");
    rt.delete(id).ok();
    reap(pid);
}

#[test]
fn create_start_delete_cycles_leave_nothing_behind() {
    // SAFETY: prctl with integer arguments only.
    let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(r, 0, "PR_SET_CHILD_SUBREAPER");

    let rt = Runtime::skiff();
    let b = Bundle::busybox();
    b.set_args(&["true"]);
    let prefix = unique_id();

    // One warm-up cycle outside the measurement: first-use initialisation
    // (say, a parent cgroup shared by all containers) is not a leak.
    cycle(&rt, &b, &format!("{prefix}-warmup"));
    let cgroups = find_cgroups(&[&prefix]);
    assert!(
        cgroups.is_empty(),
        "warm-up cycle left cgroups: {cgroups:?}"
    );
    let entries = rt.root_entries();
    assert!(
        entries.is_empty(),
        "warm-up cycle left {entries:?} in the root"
    );

    let n = cycles();
    let leak = LeakCheck::new(&[&rt], &[&b], &[&prefix]);
    let t = Instant::now();
    for i in 0..n {
        cycle(&rt, &b, &format!("{prefix}-{i}"));
    }
    eprintln!("{n} cycles with {} in {:?}", rt.bin.display(), t.elapsed());
    leak.assert_unchanged();
}
