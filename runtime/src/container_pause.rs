//! `skiff pause` and `skiff resume`: freeze and thaw every process of the
//! container with the cgroup freezer (v1 `freezer.state`, v2
//! `cgroup.freeze`). Frozen processes are not signalled or scheduled until
//! thawed; they do not notice.

use crate::container::{Container, Status};
use crate::{cgroups, Error, Result};

pub fn pause(c: &mut Container) -> Result<()> {
    match c.refresh() {
        Status::Running | Status::Created => {}
        _ => return Err(Error::Other("container not running".into())),
    }
    crate::explain!(
        "cgroups(7)",
        "freezing the container's cgroup: all its processes stop being scheduled"
    );
    Ok(cgroups::set_frozen(&c.state.cgroup_paths, true)?)
}

pub fn resume(c: &mut Container) -> Result<()> {
    if c.refresh() != Status::Paused {
        return Err(Error::Other("container not paused".into()));
    }
    crate::explain!("cgroups(7)", "thawing the container's cgroup");
    Ok(cgroups::set_frozen(&c.state.cgroup_paths, false)?)
}
