//! The container's processes: who `ps` lists and `kill --all` signals.
//!
//! A cgroup is the reliable answer: every process a container forks stays
//! in its cgroup (cgroups(7)), and `cgroup.procs` lists them. A container
//! run without root and without a delegated cgroup has none of its own,
//! though (see [`crate::rootless`]). Its processes are then found by their
//! pid namespace: each process's `/proc/PID/ns/pid` names the namespace it
//! lives in (pid_namespaces(7)), and every process of a container with a
//! pid namespace of its own shares the init's. Without either there is no
//! way to tell the container's processes from the caller's, and only the
//! init itself is known.

use std::path::Path;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::container::Container;
use crate::{cgroups, Result};

/// Whether the container has a cgroup of its own.
pub fn has_cgroup(c: &Container) -> bool {
    !c.state.cgroup_paths.paths.is_empty()
}

/// The pids of the container's processes, sorted.
pub fn pids(c: &Container) -> Result<Vec<i32>> {
    if has_cgroup(c) {
        return Ok(cgroups::pids(&c.state.cgroup_paths)?);
    }
    if !c.init_alive() {
        return Ok(Vec::new());
    }
    let init = c.state.pid;
    let ns = |pid: &str| std::fs::read_link(Path::new("/proc").join(pid).join("ns/pid")).ok();
    let Some(theirs) = ns(&init.to_string()) else {
        return Ok(vec![init]);
    };
    if ns("self").as_ref() == Some(&theirs) {
        // No pid namespace of its own: only the init is known to be its.
        return Ok(vec![init]);
    }
    let mut out: Vec<i32> = std::fs::read_dir("/proc")
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let name = e.file_name().into_string().ok()?;
                    let pid = name.parse::<i32>().ok()?;
                    (ns(&name).as_ref() == Some(&theirs)).then_some(pid)
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort_unstable();
    Ok(out)
}

/// Send `sig` to every process of the container.
pub fn signal_all(c: &Container, sig: Signal) -> Result<()> {
    if has_cgroup(c) {
        return Ok(cgroups::signal_all(&c.state.cgroup_paths, sig)?);
    }
    // The init last: when it dies, the kernel kills the rest of its pid
    // namespace, and they would not all see the signal sent.
    let init = c.state.pid;
    for pid in pids(c)?.into_iter().filter(|p| *p != init) {
        let _ = kill(Pid::from_raw(pid), sig);
    }
    if c.init_alive() {
        let _ = kill(Pid::from_raw(init), sig);
    }
    Ok(())
}
