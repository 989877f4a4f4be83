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

use crate::container::processes;
use crate::container::{Container, Status};
use crate::{cgroups, Result};

/// What can stop `delete`.
#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    /// The container is running, paused or being created, and `--force` was
    /// not given.
    #[error("cannot delete container {id} that is not stopped: {status}")]
    NotStopped {
        /// The container id.
        id: String,
        /// Its status.
        status: Status,
    },
    /// The directory of a container without readable state cannot be removed.
    #[error("remove {path}")]
    RemoveStale {
        /// The directory.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// `skiff delete`: kill what is left of the container (all of it with
/// `force`), remove its cgroup and state directory, then run the
/// `poststop` hooks (a failing one is logged, not returned).
pub fn delete(c: &mut Container, force: bool) -> Result<()> {
    match c.refresh() {
        // A stopped init may have left processes behind (without a pid
        // namespace they do not die with it): they go too.
        Status::Stopped | Status::Created => kill_and_wait(c)?,
        _ if force => kill_and_wait(c)?,
        status => {
            return Err(DeleteError::NotStopped {
                id: c.id().to_string(),
                status,
            }
            .into());
        }
    }
    crate::explain!("", "removing the container's cgroup and state directory");
    // The state directory goes only once the cgroup is gone, so a failed
    // delete can be retried.
    cgroups::remove(&c.state.cgroup_paths)?;
    c.remove_dir()?;
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
    // The spec: a failing poststop hook is logged and the others still run.
    for (i, hook) in hooks
        .as_ref()
        .and_then(|h| h.poststop().as_ref())
        .into_iter()
        .flatten()
        .enumerate()
    {
        if let Err(e) = crate::hooks::run_one(i, hook, &st) {
            tracing::error!("{e}");
        }
    }
    Ok(())
}

/// Remove the leftovers of a container whose state could not be read (its
/// `create` was killed before writing `state.json`): the directory, and the
/// cgroup at its default place if it is empty. Returns whether there was a
/// directory to remove.
pub fn delete_stale(root: &std::path::Path, id: &str) -> Result<bool> {
    crate::container::validate_id(id)?;
    let dir = root.join(id);
    if !dir.is_dir()
        || dir.join(crate::container::STATE_FILE).exists()
            && crate::Container::load(root, id).is_ok()
    {
        return Ok(false);
    }
    if let Ok(paths) = cgroups::resolve_paths(None, id) {
        let _ = cgroups::remove(&paths);
    }
    std::fs::remove_dir_all(&dir).map_err(|source| DeleteError::RemoveStale {
        path: dir.clone(),
        source,
    })?;
    Ok(true)
}

/// SIGKILL everything in the container and wait (bounded) for the init to exit.
fn kill_and_wait(c: &Container) -> Result<()> {
    let paths = &c.state.cgroup_paths;
    let none_left = || processes::pids(c).map(|p| p.is_empty()).unwrap_or(true);
    let pidfd = if c.init_alive() {
        crate::pidfd::pidfd_open(c.state.pid).ok()
    } else {
        None
    };
    if pidfd.is_none() && none_left() {
        // The usual case of a stopped container: nothing left to kill.
        return Ok(());
    }
    if cgroups::is_frozen(paths) {
        let _ = processes::signal_all(c, Signal::SIGKILL);
        let _ = cgroups::set_frozen(paths, false);
    } else {
        processes::signal_all(c, Signal::SIGKILL)?;
    }
    if let Some(fd) = &pidfd {
        // The init itself too, in case it left its cgroup.
        let _ = crate::pidfd::send_signal(fd, libc::SIGKILL);
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        let _ = poll(&mut fds, PollTimeout::from(10_000u16));
    }
    // Processes other than the init may take a moment to leave the cgroup.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if none_left() {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}
