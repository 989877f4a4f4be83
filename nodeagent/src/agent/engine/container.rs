//! Starting, watching, stopping and cleaning up one container instance.
//!
//! Each instance runs under its own monitor ([`crate::monitor`]); the agent
//! learns of its end through a pidfd (pidfd_open(2)) on the monitor, which
//! becomes readable when the process exits, whether or not the agent is
//! its parent. If the monitor dies before the container, the container is
//! re-parented to the agent (a child subreaper), which then waits for it
//! itself and writes the exit record the monitor could not.

use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::sync::mpsc;

use super::{Agent, Msg};
use crate::monitor::{self, Exited, Report, Started};

/// Everything a monitor needs, and where it writes.
pub struct Launch<'a> {
    /// The container's id in the runtime.
    pub id: &'a str,
    /// The bundle to create it from (`config.json` and the root filesystem).
    pub bundle: &'a Path,
    /// The monitor's directory: `state.json`, `exit.json`, the FIFOs, and
    /// the logs of skiff and of the monitor.
    pub dir: &'a Path,
    /// The CRI log file the container's output goes to; `None` for a pause
    /// container, which has no log.
    pub log: Option<&'a Path>,
    /// The pod-start trace the runtime adds its spans to (`SKIFF_TRACE` for
    /// the monitor's `skiff create` and `skiff start`), if one is written.
    pub trace: Option<&'a Path>,
}

/// Start a monitor for the container and wait for its report.
pub async fn launch(agent: &Arc<Agent>, l: Launch<'_>) -> Result<(Started, i32), String> {
    std::fs::create_dir_all(l.dir).map_err(|e| format!("create {}: {e}", l.dir.display()))?;
    let _ = std::fs::remove_file(l.dir.join("exit.json"));
    let cfg = &agent.cfg;
    let (r, w) = std::io::pipe().map_err(|e| format!("pipe: {e}"))?;
    let args = monitor::MonitorArgs {
        bundle: Some(l.bundle.to_path_buf()),
        id: l.id.to_string(),
        dir: l.dir.to_path_buf(),
        log: l.log.map(Path::to_path_buf),
        adopt: None,
        ..monitor_args(agent)
    };
    let mut cmd = Command::new(&cfg.exe);
    cmd.arg("monitor").args(args.to_args());
    if let Some(t) = l.trace {
        cmd.env(skiff_runtime::trace::ENV, t);
    }
    let errlog = std::fs::File::create(l.dir.join("monitor.log"))
        .map_err(|e| format!("create monitor log: {e}"))?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(errlog);
    let wfd = w.as_raw_fd();
    // SAFETY: between fork and exec only async-signal-safe calls: setsid
    // and dup2. The monitor gets its own session (it must not share the
    // agent's terminal or process group) and the report pipe as fd 3.
    unsafe {
        cmd.pre_exec(move || {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            let r = if wfd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(wfd, 3)
            };
            if r < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .map_err(|e| format!("run {}: {e}", cfg.exe.display()))?;
    drop(cmd);
    drop(w);
    let monitor_pid = child.id() as i32;
    // The child is reaped by the exit watcher (waitpid), never by `Child`.
    std::mem::forget(child);
    let report = tokio::task::spawn_blocking(move || monitor::read_report(r))
        .await
        .map_err(|e| e.to_string())?;
    // A start allocates much (spec, bundle, the runtime's output): give it
    // back once the starts have settled.
    crate::agent::heap::work_done();
    match report {
        Report::Started(s) => Ok((s, monitor_pid)),
        Report::Failed(msg) => {
            reap(monitor_pid).await;
            Err(msg)
        }
    }
}

/// Wait for `pid` (a child) to finish and reap it.
async fn reap(pid: i32) {
    for _ in 0..200 {
        match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => tokio::time::sleep(Duration::from_millis(10)).await,
            _ => return,
        }
    }
}

/// Wait until process `pid` exits (any process, via a pidfd); collect its
/// status if it is our child. `None` when it was not ours.
async fn wait_exit(pid: i32) -> Option<WaitStatus> {
    if let Ok(fd) = skiff_runtime::pidfd::pidfd_open(pid) {
        // SAFETY: the AsyncFd owns the pidfd for as long as it lives.
        let afd = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
        };
        if let Ok(afd) = afd {
            let _ = afd.readable().await;
        }
    }
    match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::StillAlive) => {
            // Readable means exited; a zombie's status is ready at once.
            waitpid(Pid::from_raw(pid), None).ok()
        }
        Ok(s) => Some(s),
        Err(_) => None,
    }
}

/// Watch a process that runs without a monitor (a pod's pause container):
/// when it exits, the worker hears `Exited { id }`. The agent, a child
/// subreaper, inherits it once `skiff create` has exited, and reaps it
/// here; a restarted agent is not its parent, and only watches.
pub fn watch_unmonitored(tx: mpsc::UnboundedSender<Msg>, id: String, pid: i32) {
    tokio::spawn(async move {
        if pid > 0 {
            wait_exit(pid).await;
        }
        let _ = tx.send(Msg::Exited { id });
    });
}

/// Whether process `pid` exists and has not exited (a zombie has exited);
/// 0 and negative pids never count.
pub fn alive(pid: i32) -> bool {
    pid > 0
        && nix::sys::signal::kill(Pid::from_raw(pid), None).is_ok()
        && skiff_runtime::utils::process_stat(pid).is_some_and(|(state, _)| state != 'Z')
}

/// Keep the instance's FIFOs open (read and write) for as long as it is
/// watched, so that the container never writes into a FIFO without a
/// reader while its monitor is being replaced (see [`crate::monitor`]).
fn keep_fifos(dir: &Path) -> Vec<std::fs::File> {
    crate::monitor::FIFOS
        .iter()
        .filter_map(|(_, name)| {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(dir.join(name))
                .ok()
        })
        .collect()
}

/// A monitor's flags that come from the agent's configuration; the caller
/// fills in the container's own.
fn monitor_args(agent: &Agent) -> monitor::MonitorArgs {
    let cfg = &agent.cfg;
    monitor::MonitorArgs {
        skiff: cfg.runtime.clone(),
        root: cfg.runtime_root(),
        bundle: None,
        id: String::new(),
        dir: PathBuf::new(),
        log: None,
        log_max_size: cfg.log_max_size,
        log_max_files: cfg.log_max_files,
        adopt: None,
    }
}

/// Start a monitor that takes over a running container from a dead one:
/// it copies the container's output from the FIFOs until the container
/// exits. Returns its pid.
fn replace_monitor(agent: &Agent, id: &str, dir: &Path, pid: i32, log: &Path) -> Option<i32> {
    let cfg = &agent.cfg;
    let errlog = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("monitor.log"))
        .ok()?;
    let args = monitor::MonitorArgs {
        id: id.to_string(),
        dir: dir.to_path_buf(),
        log: Some(log.to_path_buf()),
        adopt: Some(pid),
        ..monitor_args(agent)
    };
    let mut cmd = Command::new(&cfg.exe);
    cmd.arg("monitor")
        .args(args.to_args())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(errlog);
    // SAFETY: only setsid between fork and exec (async-signal-safe).
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    let child = cmd.spawn().ok()?;
    let monitor = child.id() as i32;
    // Reaped by the watcher (waitpid), never by `Child`.
    std::mem::forget(child);
    Some(monitor)
}

/// Watch an instance until it has ended and its `exit.json` exists, then
/// tell the pod worker. A monitor that dies before its container is
/// replaced (for the logs), and the container's exit is then collected
/// here: the agent, a child subreaper, inherits a dead monitor's children.
pub fn watch(
    agent: &Arc<Agent>,
    tx: mpsc::UnboundedSender<Msg>,
    id: String,
    dir: PathBuf,
    pid: i32,
    monitor_pid: i32,
    log: Option<PathBuf>,
) {
    let agent = agent.clone();
    tokio::spawn(async move {
        let _keep = keep_fifos(&dir);
        let exit_file = dir.join("exit.json");
        if monitor_pid > 0 {
            wait_exit(monitor_pid).await;
        }
        if !exit_file.exists() {
            // The monitor died first.
            let replacement = match &log {
                Some(log) if alive(pid) => {
                    tracing::info!("container {id}: its monitor died; starting a new one");
                    replace_monitor(&agent, &id, &dir, pid, log)
                }
                _ => None,
            };
            let record = |exit_code, signal| Exited {
                exit_code,
                signal,
                started_at: monitor::read_json::<Started>(&dir.join("state.json"))
                    .map(|s| s.started_at),
                finished_at: jiff::Timestamp::now(),
                error: None,
            };
            let exit = if alive(pid) || nix::sys::signal::kill(Pid::from_raw(pid), None).is_ok() {
                match wait_exit(pid).await {
                    Some(WaitStatus::Exited(_, c)) => record(c, None),
                    Some(WaitStatus::Signaled(_, s, _)) => record(128 + s as i32, Some(s as i32)),
                    _ => Exited {
                        error: Some("exit status lost: the container's monitor died".into()),
                        ..record(255, None)
                    },
                }
            } else {
                Exited {
                    error: Some("exit status lost: the container's monitor died".into()),
                    ..record(255, None)
                }
            };
            // Its output is all in the log once the new monitor is done.
            if let Some(m) = replacement {
                wait_exit(m).await;
            }
            let _ = monitor::write_json(&dir, "exit.json", &exit);
        }
        let _ = tx.send(Msg::Exited { id });
    });
}

/// `skiff` with the agent's root.
pub fn skiff(agent: &Agent) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(&agent.cfg.runtime);
    c.arg("--root").arg(agent.cfg.runtime_root());
    c.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

/// Send a signal to the container's init (by name, `TERM` or `KILL`).
pub async fn signal(agent: &Agent, id: &str, sig: &str) {
    let _ = skiff(agent).args(["kill", id, sig]).status().await;
}

/// Remove the runtime's record and cgroup of a finished container.
pub async fn delete(agent: &Agent, id: &str) {
    match skiff(agent).args(["delete", "--force", id]).output().await {
        Ok(o) if !o.status.success() => {
            let e = String::from_utf8_lossy(&o.stderr);
            if !e.contains("does not exist") && !e.contains("not exist") {
                tracing::warn!("skiff delete {id}: {}", e.trim());
            }
        }
        Err(e) => tracing::warn!("skiff delete {id}: {e}"),
        _ => {}
    }
}

/// The container's cgroup saw the OOM killer (read before `delete`).
pub fn oom_killed(cgroups_path: &str, id: &str) -> bool {
    skiff_runtime::cgroups::resolve_paths(Some(Path::new(cgroups_path)), id)
        .map(|p| skiff_runtime::cgroups::stats::oom_kills(&p) > 0)
        .unwrap_or(false)
}
