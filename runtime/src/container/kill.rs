//! `skiff kill`: send a signal to the container's init, or with `--all` to
//! every process in its cgroup (see signal(7), kill(2), and
//! pidfd_send_signal(2), which cannot hit a recycled pid).

use nix::sys::signal::Signal;

use crate::container::{Container, Status};
use crate::Result;

/// What can stop `kill`.
#[derive(Debug, thiserror::Error)]
pub enum KillError {
    /// The container has stopped (or its init is no longer the recorded
    /// process).
    #[error("container not running")]
    NotRunning,
    /// pidfd_open(2) or pidfd_send_signal(2) on the init failed.
    #[error("unable to signal init")]
    Signal(#[source] std::io::Error),
}

/// `skiff kill`: send `sig` to the init, or with `all` to every process in
/// the container's cgroup.
pub fn kill(c: &mut Container, sig: Signal, all: bool) -> Result<()> {
    let status = c.refresh();
    if all {
        crate::explain!(
            "kill(2)",
            "sending {sig} to every process in the container's cgroup (or, without one, its pid namespace)"
        );
        return super::processes::signal_all(c, sig);
    }
    if status == Status::Stopped {
        return Err(KillError::NotRunning.into());
    }
    crate::explain!(
        "pidfd_send_signal(2)",
        "sending {sig} to the container's init (pid {})",
        c.state.pid
    );
    let pidfd = crate::pidfd::pidfd_open(c.state.pid).map_err(KillError::Signal)?;
    // The pidfd pins the process; check it is still the init we recorded
    // (not a new process that got a recycled pid) before signalling it.
    if !c.init_alive() {
        return Err(KillError::NotRunning.into());
    }
    crate::pidfd::send_signal(&pidfd, sig as i32).map_err(KillError::Signal)?;
    Ok(())
}
