//! `skiff delete`: remove what `create` made, once the container is gone.
//!
//! A stopped container has its cgroup removed (nested cgroups first) and
//! its state directory deleted, then the `poststop` hooks run. A created
//! container is killed first (it never ran anything). A running or paused
//! one needs `--force`: everything in its cgroup gets SIGKILL, and delete
//! waits for the init to die.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;

use crate::container::{Container, Status};
use crate::{cgroups, Error, Result};

pub fn delete(c: &mut Container, force: bool) -> Result<()> {
    match c.refresh() {
        Status::Stopped => {}
        Status::Created => kill_and_wait(c)?,
        s if force => {
            let _ = s;
            kill_and_wait(c)?
        }
        s => {
            return Err(Error::Other(format!(
                "cannot delete container {} that is not stopped: {s}",
                c.id()
            )));
        }
    }
    crate::explain!("", "removing the container's cgroup and state directory");
    let cg = cgroups::remove(&c.state.cgroup_paths);
    c.remove_dir()?;
    cg?;
    let hooks = c.state.config.hooks().clone();
    let st = crate::hooks::state_json(
        c.id(),
        Status::Stopped,
        None,
        &c.state.bundle,
        &c.state.annotations,
    );
    // The container is gone whatever a poststop hook does: like runc, a
    // failing one is reported, and delete still succeeds.
    if let Err(e) = crate::hooks::run(
        "poststop",
        hooks.as_ref().and_then(|h| h.poststop().as_ref()),
        &st,
    ) {
        tracing::error!("{e}");
    }
    Ok(())
}

/// SIGKILL everything in the container and wait (bounded) for the init to exit.
fn kill_and_wait(c: &Container) -> Result<()> {
    let paths = &c.state.cgroup_paths;
    let pidfd = if c.init_alive() {
        crate::container_start::pidfd_open(c.state.pid).ok()
    } else {
        None
    };
    if cgroups::is_frozen(paths) {
        let _ = cgroups::signal_all(paths, Signal::SIGKILL);
        let _ = cgroups::set_frozen(paths, false);
    } else {
        cgroups::signal_all(paths, Signal::SIGKILL)?;
    }
    if let Some(fd) = &pidfd {
        // SAFETY: signal the init itself too, in case it left its cgroup.
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                std::os::fd::AsRawFd::as_raw_fd(fd),
                libc::SIGKILL,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        let _ = poll(&mut fds, PollTimeout::from(10_000u16));
    }
    // Processes other than the init may take a moment to leave the cgroup.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if cgroups::pids(paths).map(|p| p.is_empty()).unwrap_or(true) {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}
