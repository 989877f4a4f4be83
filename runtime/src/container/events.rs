//! `skiff events`: resource statistics and OOM notifications as JSON lines.
//!
//! `events --stats` prints one `{"type":"stats","id":...,"data":{...}}` line
//! and exits. Plain `events` prints statistics every `--interval` and an
//! `{"type":"oom","id":...}` line whenever the kernel's OOM killer kills a
//! process of the container (the `oom_kill` counter of v1
//! `memory.oom_control` or v2 `memory.events` goes up), until the container
//! stops.

use std::io::Write;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use serde_json::json;

use crate::cgroups::stats;
use crate::container::{Container, Status};
use crate::Result;

/// What can stop `events`.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    /// The container has stopped (its id).
    #[error("container with id {0} is not running")]
    NotRunning(String),
    /// Writing an event to the output failed.
    #[error("write events")]
    Write(#[source] std::io::Error),
    /// pidfd_open(2) on the init failed, so its end cannot be watched.
    #[error("watch container")]
    Watch(#[source] std::io::Error),
}

fn emit(out: &mut impl Write, line: serde_json::Value) -> Result<()> {
    writeln!(out, "{line}")
        .and_then(|_| out.flush())
        .map_err(|e| EventsError::Write(e).into())
}

/// `skiff events`: write one stats line if `only_stats`, else stats every
/// `interval` and an `oom` line on each OOM kill, as JSON lines to `out`,
/// until the container stops.
pub fn events(
    c: &mut Container,
    only_stats: bool,
    interval: Duration,
    out: &mut impl Write,
) -> Result<()> {
    if c.refresh() == Status::Stopped {
        return Err(EventsError::NotRunning(c.id().to_string()).into());
    }
    let id = c.id().to_string();
    let paths = c.state.cgroup_paths.clone();
    if only_stats {
        return emit(
            out,
            json!({"type": "stats", "id": id, "data": stats::stats(&paths)}),
        );
    }
    let pidfd = crate::pidfd::pidfd_open(c.state.pid).map_err(EventsError::Watch)?;
    let mut ooms = stats::oom_kills(&paths);
    let mut next_stats = Instant::now();
    loop {
        let now = Instant::now();
        if now >= next_stats {
            emit(
                out,
                json!({"type": "stats", "id": id, "data": stats::stats(&paths)}),
            )?;
            next_stats = now + interval;
        }
        let n = stats::oom_kills(&paths);
        if n > ooms {
            emit(out, json!({"type": "oom", "id": id}))?;
            ooms = n;
        }
        // Wake for the next tick, or at once if the container ends.
        let wait = next_stats
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(100));
        let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
        let ms = u16::try_from(wait.as_millis()).unwrap_or(100);
        if poll(&mut fds, PollTimeout::from(ms)).unwrap_or(0) > 0 {
            if stats::oom_kills(&paths) > ooms {
                emit(out, json!({"type": "oom", "id": id}))?;
            }
            return Ok(());
        }
    }
}
