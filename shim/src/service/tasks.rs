//! What the shim knows of its one container: the init process (exec id
//! `""`) and every exec, each with its pid, status, exit and stdio, and the
//! exits that arrived before their process was known.

use std::collections::HashMap;
use std::path::PathBuf;

use containerd_shim::api;
use containerd_shim::protos::events::task::TaskExit;
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;

use crate::io::{ProcessIo, Stdio};

#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Status {
    Created,
    Running,
    Paused,
    Stopped,
}

impl Status {
    pub(super) fn api(self) -> api::Status {
        match self {
            Status::Created => api::Status::CREATED,
            Status::Running => api::Status::RUNNING,
            Status::Paused => api::Status::PAUSED,
            Status::Stopped => api::Status::STOPPED,
        }
    }
}

/// One process: the init (exec id "") or an exec.
pub(super) struct Proc {
    pub(super) pid: i32,
    pub(super) status: Status,
    pub(super) exit_status: u32,
    pub(super) exited_at: Option<Timestamp>,
    pub(super) stdio: Stdio,
    pub(super) io: ProcessIo,
    /// An exec's process.json, written at Exec, used at Start.
    pub(super) process_json: Option<PathBuf>,
    /// An exit seen before Start finished: published right after
    /// TaskStart / TaskExecStarted, so events stay in order.
    pub(super) deferred_exit: Option<TaskExit>,
    /// Start is running `skiff start` for this (init) process.
    pub(super) starting: bool,
}

impl Proc {
    pub(super) fn new(stdio: Stdio) -> Proc {
        Proc {
            pid: 0,
            status: Status::Created,
            exit_status: 0,
            exited_at: None,
            stdio,
            io: ProcessIo::default(),
            process_json: None,
            deferred_exit: None,
            starting: false,
        }
    }
}

/// An exit not yet matched to a process (see `Tasks::early_exits`).
pub(super) struct EarlyExit {
    pub(super) pid: i32,
    pub(super) code: u32,
    pub(super) at: Timestamp,
    pub(super) seen: std::time::Instant,
}

/// How many unmatched exits to remember, and for how long: most are the
/// shim's own `skiff` commands, and an old entry could belong to a pid
/// since reused.
pub(super) const EARLY_EXITS_KEPT: usize = 64;
pub(super) const EARLY_EXIT_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Default)]
pub(super) struct Tasks {
    pub(super) id: String,
    pub(super) bundle: PathBuf,
    pub(super) rootfs_mounted: bool,
    pub(super) procs: HashMap<String, Proc>,
    /// The container's cgroup, once created (for Stats and OOM watching).
    pub(super) cgroup: Option<skiff_runtime::cgroups::CgroupPaths>,
    /// Exits of pids not (yet) known as ours: a short exec can exit and be
    /// reaped before `skiff exec` has told us its pid.
    pub(super) early_exits: std::collections::VecDeque<EarlyExit>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_containerds() {
        assert_eq!(Status::Created.api(), api::Status::CREATED);
        assert_eq!(Status::Running.api(), api::Status::RUNNING);
        assert_eq!(Status::Paused.api(), api::Status::PAUSED);
        assert_eq!(Status::Stopped.api(), api::Status::STOPPED);
    }
}
