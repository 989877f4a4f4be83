//! `skiff kill`: send a signal to the container's init, or with `--all` to
//! every process in its cgroup (see signal(7), kill(2), and
//! pidfd_send_signal(2), which cannot hit a recycled pid).

use nix::sys::signal::Signal;

use crate::container::{Container, Status};
use crate::{cgroups, Error, Result};

pub fn kill(c: &mut Container, sig: Signal, all: bool) -> Result<()> {
    let status = c.refresh();
    if all {
        crate::explain!(
            "kill(2)",
            "sending {sig} to every process in the container's cgroup"
        );
        return Ok(cgroups::signal_all(&c.state.cgroup_paths, sig)?);
    }
    if status == Status::Stopped {
        return Err(Error::Other("container not running".into()));
    }
    crate::explain!(
        "pidfd_send_signal(2)",
        "sending {sig} to the container's init (pid {})",
        c.state.pid
    );
    let pidfd = crate::container_start::pidfd_open(c.state.pid)
        .map_err(|e| Error::Other(format!("unable to signal init: {e}")))?;
    // The pidfd pins the process; check it is still the init we recorded
    // (not a new process that got a recycled pid) before signalling it.
    if !c.init_alive() {
        return Err(Error::Other("container not running".into()));
    }
    // SAFETY: pidfd_send_signal takes a descriptor, a signal number and null info.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            std::os::fd::AsRawFd::as_raw_fd(&pidfd),
            sig as i32,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc < 0 {
        return Err(Error::Other(format!(
            "unable to signal init: {}",
            std::io::Error::last_os_error()
        )));
    }
    Ok(())
}
