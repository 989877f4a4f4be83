//! The pod sandbox's pause process.
//!
//! A pod's containers share a network, IPC and UTS namespace. A namespace
//! lives as long as something holds it, so each pod gets one process that
//! only holds them: `skiff-agent pause` (Kubernetes' `pause` image does the
//! same). It runs as PID 1 of the sandbox container, so it also reaps any
//! zombie re-parented to it, and it exits 0 on SIGTERM or SIGINT.
//!
//! The sandbox's root filesystem is an empty read-only directory with this
//! binary bind-mounted at `/pause` (it is linked statically).

use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag};

/// Hold the namespaces until SIGTERM or SIGINT (exit code 0), reaping
/// every zombie on SIGCHLD; exit code 1 if those signals cannot be blocked.
pub fn run() -> i32 {
    let mut set = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGCHLD] {
        set.add(s);
    }
    if set.thread_block().is_err() {
        return 1;
    }
    loop {
        match set.wait() {
            Ok(Signal::SIGCHLD) => {
                while let Ok(s) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                    if s == nix::sys::wait::WaitStatus::StillAlive {
                        break;
                    }
                }
            }
            Ok(_) => return 0,
            Err(_) => {}
        }
    }
}
