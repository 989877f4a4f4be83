//! Joining v1 cgroups without stopping the machine's forks: the init moves
//! itself, one thread.
//!
//! Writing a pid to `cgroup.procs` moves a whole process, so the kernel
//! holds every fork and exit on the machine still while it does: it takes
//! the global `cgroup_threadgroup_rwsem` for writing, and turning that
//! per-cpu semaphore over to a writer waits for an RCU grace period (see
//! `cgroup_procs_write_start` in kernel/cgroup/cgroup.c, and
//! [`crate::clone_into_cgroup`], which avoids the move on cgroup v2).
//!
//! There is one exception, written down in that function: when a thread
//! moves *itself*, and only itself, nothing can fork from it or exit it
//! under the kernel's hands, so the global lock is skipped. On v1 a thread
//! moves itself by writing `0` (meaning "the caller") to a cgroup's
//! `tasks` file, which moves one thread (cgroups(7), "Managing tasks").
//! The init is single-threaded right after fork(2) (only the forking
//! thread is copied), so moving its one thread moves all of it.
//!
//! So on a v1 or hybrid host (Linux 5.5 or later, where the exception
//! exists) the runtime opens each hierarchy's `tasks` file before it forks, and the init writes `0` to each of them as the
//! first thing it does. Measured on the development machine (Linux 6.18,
//! hybrid, seven v1 hierarchies): 0.1 ms, against 6–27 ms for writing the
//! pid to their `cgroup.procs`, most of it the grace period.
//!
//! The cgroup2 tree of a hybrid host takes no single-thread moves between
//! its cgroups (a thread must stay in its process's domain), so there the
//! init is born in its cgroup with clone3(2) `CLONE_INTO_CGROUP`. Only if
//! that fails does the init write `0` to that cgroup's `cgroup.procs`, which
//! moves it with the global lock, as before.
//!
//! The files are opened close-on-exec and closed as soon as the init has
//! moved: a descriptor of the host's cgroup tree must never reach the
//! container (runc's CVE-2024-21626 leaked one as the working directory).

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;

use super::{CgroupError, CgroupPaths, Result};

/// The cgroup files the init writes `0` to, opened by the runtime.
pub struct SelfJoin {
    /// Each v1 hierarchy's `tasks` file, with its path for errors.
    tasks: Vec<(PathBuf, File)>,
    /// The cgroup2 directory's `cgroup.procs` on a hybrid host, for when
    /// the init was not born there.
    unified: Option<(PathBuf, File)>,
}

impl SelfJoin {
    /// Open the files, before the fork. `None` when the init does not join
    /// this way: a cgroup v2 host (the init is born in its cgroup), or no
    /// cgroup of its own (rootless without delegation).
    pub fn open(paths: &CgroupPaths) -> Result<Option<SelfJoin>> {
        if paths.is_v2() || paths.paths.is_empty() {
            return Ok(None);
        }
        let open = |path: PathBuf| match File::options().write(true).open(&path) {
            Ok(f) => Ok((path, f)),
            Err(err) => Err(CgroupError::Open { path, err }),
        };
        let mut tasks = Vec::new();
        let mut unified = None;
        for (key, dir) in &paths.paths {
            if key.is_empty() {
                unified = Some(open(dir.join("cgroup.procs"))?);
            } else {
                tasks.push(open(dir.join("tasks"))?);
            }
        }
        Ok(Some(SelfJoin { tasks, unified }))
    }

    /// In the init, right after the fork, while it is single-threaded: move
    /// it into its cgroup in every hierarchy (`born_unified`: it was born in
    /// its cgroup2 one), then close the files.
    pub fn join(self, born_unified: bool) -> Result<()> {
        crate::explain!(
            "cgroups(7)",
            "the init moves itself into its cgroup: writing 0 to `tasks` in {} v1 hierarchies moves only the calling thread, which needs no global lock",
            self.tasks.len()
        );
        let unified = self.unified.filter(|_| !born_unified);
        if let Some((path, _)) = &unified {
            crate::explain!(
                "cgroups(7)",
                "it was not born in its cgroup2 directory (clone3 refused): writing 0 to {} moves it there, with the global lock",
                path.display()
            );
        }
        for (path, mut file) in self.tasks.into_iter().chain(unified) {
            file.write_all(b"0").map_err(|err| {
                CgroupError::Write {
                    path,
                    value: "0".into(),
                    err,
                }
                .on_join(0)
            })?;
        }
        Ok(())
    }
}
