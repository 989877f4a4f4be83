//! `skiff pause` and `skiff resume`: freeze and thaw every process of the
//! container with the cgroup freezer (v1 `freezer.state`, v2
//! `cgroup.freeze`). Frozen processes are not signalled or scheduled until
//! thawed; they do not notice.

use crate::container::{Container, Status};
use crate::{cgroups, Result};

/// What can stop `pause` and `resume`.
#[derive(Debug, thiserror::Error)]
pub enum PauseError {
    /// `pause` on a container that is neither running nor created.
    #[error("container not running")]
    NotRunning,
    /// `resume` on a container that is not paused.
    #[error("container not paused")]
    NotPaused,
    /// The container has no cgroup to freeze (rootless, not delegated).
    #[error("cannot pause container {0}: it has no cgroup of its own (run without root and without a delegated cgroup), and freezing needs one")]
    NoCgroup(String),
}

/// `skiff pause`: freeze every process of a running or created container.
pub fn pause(c: &mut Container) -> Result<()> {
    match c.refresh() {
        Status::Running | Status::Created => {}
        _ => return Err(PauseError::NotRunning.into()),
    }
    if !super::processes::has_cgroup(c) {
        return Err(PauseError::NoCgroup(c.id().to_string()).into());
    }
    crate::explain!(
        "cgroups(7)",
        "freezing the container's cgroup: all its processes stop being scheduled"
    );
    Ok(cgroups::set_frozen(&c.state.cgroup_paths, true)?)
}

/// `skiff resume`: thaw a paused container.
pub fn resume(c: &mut Container) -> Result<()> {
    if c.refresh() != Status::Paused {
        return Err(PauseError::NotPaused.into());
    }
    crate::explain!("cgroups(7)", "thawing the container's cgroup");
    Ok(cgroups::set_frozen(&c.state.cgroup_paths, false)?)
}
