//! The per-container monitor, Skiff's conmon.
//!
//! A container must outlive the agent that started it, so the agent does
//! not hold its stdio or wait for it itself. For every container it starts
//! `skiff-agent monitor`, a small synchronous process in its own session
//! that:
//! 1. becomes a *child subreaper* (`prctl(PR_SET_CHILD_SUBREAPER)`, see
//!    prctl(2)): when `skiff create` exits, the container's init is
//!    re-parented to the monitor instead of to PID 1, so the monitor can
//!    `waitpid(2)` it and learn its exit status;
//! 2. creates the stdout and stderr FIFOs (fifo(7)) the container writes
//!    to, in its directory, and runs `skiff create` and `skiff start` with
//!    them (the runtime hands its own stdio to the container, as runc does
//!    when there is no terminal);
//! 3. reports the container's PID (or the runtime's error) to the agent on
//!    fd 3, and records it in `state.json` in its directory;
//! 4. copies the pipes into the CRI log file ([`crate::cri_log`]), in a
//!    single thread that sleeps in poll(2) on both FIFOs and on a
//!    signalfd(2) for SIGCHLD, so it wakes only for output or for the end;
//! 5. when the init exits (waitpid(2) after SIGCHLD), copies what is
//!    still waiting, writes `exit.json` (exit code, signal, times)
//!    atomically and exits itself.
//!
//! The agent watches each monitor with a pidfd; a restarted agent finds
//! them again through their directories.
//!
//! Why FIFOs, not pipes: a pipe's read end lives only in the process that
//! made it, so a killed monitor would take the container's output with it
//! (and the container's next write would get SIGPIPE). A FIFO has a name:
//! the agent keeps each one open too (read and write, so it is never the
//! last reader or the last writer), and when a monitor dies it starts a new
//! one with `--adopt PID`, which opens the same FIFOs and goes on copying.
//! Because the agent also holds them, a monitor never sees end-of-file:
//! it copies until the container has exited and nothing more is waiting.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::cri_log;

/// What a monitor was asked to run: its command line, which the agent
/// writes with [`MonitorArgs::to_args`] and the monitor reads back with
/// [`MonitorArgs::parse`].
///
/// The monitor parses it with `lexopt`, not clap: a monitor lives as long
/// as its container, and what a parser allocates while it runs is left on
/// heap pages that stay resident next to the few objects that live on
/// (with clap a monitor's heap after start-up was 44 KiB, with lexopt
/// 24 KiB).
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorArgs {
    /// The skiff binary (`--skiff`).
    pub skiff: PathBuf,
    /// skiff's `--root` (`--root`).
    pub root: PathBuf,
    /// The bundle to create the container from (`--bundle`; not with
    /// `--adopt`).
    pub bundle: Option<PathBuf>,
    /// The container id (`--id`).
    pub id: String,
    /// Directory for state.json, exit.json and skiff.log (`--dir`).
    pub dir: PathBuf,
    /// CRI log file; no log when absent (`--log`).
    pub log: Option<PathBuf>,
    /// Rotate the CRI log when it would grow past this many bytes; 0:
    /// never (`--log-max-size`).
    pub log_max_size: u64,
    /// How many rotated log files to keep (`--log-max-files`).
    pub log_max_files: u32,
    /// Take over a running container whose monitor died: copy its output
    /// until it exits; its exit status is its parent's to collect
    /// (`--adopt PID`).
    pub adopt: Option<i32>,
}

/// The monitor's command line, for `--help` and for errors.
pub const USAGE: &str = "usage: skiff-monitor monitor --skiff PATH --root DIR \
(--bundle DIR | --adopt PID) --id ID --dir DIR [--log FILE] \
[--log-max-size BYTES] [--log-max-files N]";

/// A monitor's command line that cannot be run.
#[derive(Debug, thiserror::Error)]
pub enum ArgsError {
    /// An unknown flag, a flag without its value, or a value that is not
    /// valid Unicode where text is needed.
    #[error("monitor arguments: {0}")]
    Syntax(#[from] lexopt::Error),
    /// A flag's value is not what the flag takes.
    #[error("monitor arguments: --{flag} {value:?}: {reason}")]
    Value {
        /// The flag, without its dashes.
        flag: &'static str,
        /// The value as given.
        value: String,
        /// Why it is not one.
        reason: String,
    },
    /// A flag that must be given was not.
    #[error("monitor arguments: --{0} is required")]
    Missing(&'static str),
    /// `--bundle` and `--adopt` were both given: a monitor either starts
    /// a container or takes over a running one.
    #[error("monitor arguments: --bundle and --adopt exclude each other")]
    BundleAndAdopt,
    /// `--help` or `-h`: not an error, the caller prints [`USAGE`].
    #[error("{USAGE}")]
    Help,
}

impl MonitorArgs {
    /// Rotate at 10 MiB when `--log-max-size` is absent.
    pub const DEFAULT_LOG_MAX_SIZE: u64 = 10 << 20;
    /// Keep 5 rotated files when `--log-max-files` is absent.
    pub const DEFAULT_LOG_MAX_FILES: u32 = 5;

    /// Read the flags that follow `monitor` on a monitor's command line
    /// (`--flag VALUE` or `--flag=VALUE`).
    pub fn parse<I>(args: I) -> Result<MonitorArgs, ArgsError>
    where
        I: IntoIterator,
        I::Item: Into<std::ffi::OsString>,
    {
        use lexopt::prelude::*;
        let mut p = lexopt::Parser::from_args(args);
        let (mut skiff, mut root, mut dir, mut id) = (None, None, None, None);
        let mut a = MonitorArgs {
            skiff: PathBuf::new(),
            root: PathBuf::new(),
            bundle: None,
            id: String::new(),
            dir: PathBuf::new(),
            log: None,
            log_max_size: Self::DEFAULT_LOG_MAX_SIZE,
            log_max_files: Self::DEFAULT_LOG_MAX_FILES,
            adopt: None,
        };
        while let Some(arg) = p.next()? {
            match arg {
                Long("skiff") => skiff = Some(PathBuf::from(p.value()?)),
                Long("root") => root = Some(PathBuf::from(p.value()?)),
                Long("bundle") => a.bundle = Some(PathBuf::from(p.value()?)),
                Long("id") => id = Some(p.value()?.string()?),
                Long("dir") => dir = Some(PathBuf::from(p.value()?)),
                Long("log") => a.log = Some(PathBuf::from(p.value()?)),
                Long("log-max-size") => a.log_max_size = number(&mut p, "log-max-size")?,
                Long("log-max-files") => a.log_max_files = number(&mut p, "log-max-files")?,
                Long("adopt") => {
                    let pid: i32 = number(&mut p, "adopt")?;
                    if pid <= 0 {
                        return Err(ArgsError::Value {
                            flag: "adopt",
                            value: pid.to_string(),
                            reason: "not a process id".into(),
                        });
                    }
                    a.adopt = Some(pid);
                }
                Long("help") | Short('h') => return Err(ArgsError::Help),
                _ => return Err(arg.unexpected().into()),
            }
        }
        a.skiff = skiff.ok_or(ArgsError::Missing("skiff"))?;
        a.root = root.ok_or(ArgsError::Missing("root"))?;
        a.id = id.ok_or(ArgsError::Missing("id"))?;
        a.dir = dir.ok_or(ArgsError::Missing("dir"))?;
        match (&a.bundle, a.adopt) {
            (None, None) => Err(ArgsError::Missing("bundle")),
            (Some(_), Some(_)) => Err(ArgsError::BundleAndAdopt),
            _ => Ok(a),
        }
    }

    /// The flags [`MonitorArgs::parse`] reads back as `self`.
    pub fn to_args(&self) -> Vec<std::ffi::OsString> {
        let mut v: Vec<std::ffi::OsString> = Vec::with_capacity(18);
        let mut flag = |name: &str, value: &std::ffi::OsStr| {
            v.push(name.into());
            v.push(value.into());
        };
        flag("--skiff", self.skiff.as_os_str());
        flag("--root", self.root.as_os_str());
        if let Some(b) = &self.bundle {
            flag("--bundle", b.as_os_str());
        }
        flag("--id", self.id.as_ref());
        flag("--dir", self.dir.as_os_str());
        if let Some(l) = &self.log {
            flag("--log", l.as_os_str());
        }
        flag("--log-max-size", self.log_max_size.to_string().as_ref());
        flag("--log-max-files", self.log_max_files.to_string().as_ref());
        if let Some(pid) = self.adopt {
            flag("--adopt", pid.to_string().as_ref());
        }
        v
    }
}

/// The value of `--FLAG`, as a number.
fn number<T>(p: &mut lexopt::Parser, flag: &'static str) -> Result<T, ArgsError>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    let value = p.value()?.to_string_lossy().into_owned();
    value.parse().map_err(|e: T::Err| ArgsError::Value {
        flag,
        reason: e.to_string(),
        value,
    })
}

/// The FIFOs of a monitor's directory, for the container's stdout and stderr.
pub const FIFOS: [(&str, &str); 2] = [("stdout", "stdout.fifo"), ("stderr", "stderr.fifo")];

/// `state.json`: the container is running.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Started {
    /// The container's init pid, on the host.
    pub pid: i32,
    /// When `skiff start` succeeded.
    pub started_at: jiff::Timestamp,
}

/// `exit.json`: how the container ended (or failed to start).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Exited {
    /// The exit status: 128 + the signal's number when a signal killed it,
    /// 128 when it never started, 255 when the status was lost.
    pub exit_code: i32,
    /// The signal that killed it, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// When it started; `None` if it never did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<jiff::Timestamp>,
    /// When the monitor saw it end (or gave up starting it).
    pub finished_at: jiff::Timestamp,
    /// The runtime could not create or start the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What the monitor says on fd 3.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Report {
    /// The container runs.
    Started(Started),
    /// The runtime could not create or start it: its last error.
    Failed(String),
}

/// Write `value` as JSON to `dir/name` atomically (temp file + rename), so
/// a reader sees the old file or the new one, never half of one.
///
/// Not fsync(2)ed: these records (a pod's, a monitor's) must outlive the
/// agent or the monitor being killed, and the page cache outlives any
/// process. Only a crash of the machine loses them, and that ends every
/// container they describe; the agent then finds none of their processes
/// and starts the pods again. An fsync per record cost a pod start about
/// a dozen waits on the disk's journal (0.5 ms each when idle, more under
/// load), since every status change of a pod saves its record.
pub fn write_json(dir: &Path, name: &str, value: &impl Serialize) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = File::create(&tmp)?;
    f.write_all(&serde_json::to_vec(value)?)?;
    drop(f);
    std::fs::rename(&tmp, dir.join(name))
}

/// Read and parse a JSON file; `None` if it is missing or does not parse.
pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// The pid the monitor of directory `dir` wrote (`monitor.pid`).
pub fn read_pid(dir: &Path) -> Option<i32> {
    std::fs::read_to_string(dir.join("monitor.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The last error skiff logged (its JSON log lines carry `level` and `msg`).
fn runtime_error(log: &Path, fallback: String) -> String {
    skiff_runtime::logging::last_error(log).unwrap_or(fallback)
}

fn skiff(a: &MonitorArgs) -> Command {
    let mut c = Command::new(&a.skiff);
    c.arg("--root")
        .arg(&a.root)
        .arg("--log")
        .arg(a.dir.join("skiff.log"))
        .arg("--log-format")
        .arg("json");
    c
}

/// `PROG monitor ARGS...`, in `skiff-monitor` and in the agent's own
/// `monitor` subcommand: read ARGS and run; returns the exit code. `--help`
/// prints [`USAGE`]; a command line that cannot run prints why and
/// [`USAGE`], and exits with 2.
pub fn main<I>(prog: &str, args: I) -> i32
where
    I: IntoIterator,
    I::Item: Into<std::ffi::OsString>,
{
    match MonitorArgs::parse(args) {
        Ok(a) => run(&a),
        Err(ArgsError::Help) => {
            println!("{USAGE}");
            0
        }
        Err(e) => {
            eprintln!("{prog}: {e}\n{USAGE}");
            2
        }
    }
}

/// Run the monitor; returns the process exit code.
pub fn run(a: &MonitorArgs) -> i32 {
    // SAFETY: fd 3 is only borrowed to ask whether it is open.
    let open = nix::fcntl::fcntl(
        unsafe { std::os::fd::BorrowedFd::borrow_raw(3) },
        nix::fcntl::FcntlArg::F_GETFD,
    )
    .is_ok();
    // SAFETY: an open fd 3 is the report pipe the agent passed; nothing
    // else in this process uses it, so this File is its only owner.
    let mut report = open.then(|| unsafe { File::from_raw_fd(3) });
    let mut say = |r: Report| {
        if let Some(mut f) = report.take() {
            let _ = f.write_all(&serde_json::to_vec(&r).unwrap_or_default());
        }
    };
    let _ = std::fs::write(a.dir.join("monitor.pid"), std::process::id().to_string());
    if let Some(pid) = a.adopt {
        return adopt(a, pid);
    }
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        say(Report::Failed(format!("monitor: set child subreaper: {e}")));
        return 1;
    }
    match start(a) {
        Ok((started, fifos)) => {
            let _ = write_json(&a.dir, "state.json", &started);
            say(Report::Started(started.clone()));
            // What starting the container used and freed (argument parsing,
            // the runtimes' command lines and output, and the stack all that
            // ran on) goes back to the kernel: a monitor lives as long as its
            // container.
            crate::agent::heap::release_start_up_memory();
            let (exit_code, signal) = copy_until_exit(a, fifos, Exit::child(started.pid));
            let exit = Exited {
                exit_code,
                signal,
                started_at: Some(started.started_at),
                finished_at: jiff::Timestamp::now(),
                error: None,
            };
            let _ = write_json(&a.dir, "exit.json", &exit);
            0
        }
        Err(msg) => {
            let exit = Exited {
                exit_code: 128,
                signal: None,
                started_at: None,
                finished_at: jiff::Timestamp::now(),
                error: Some(msg.clone()),
            };
            let _ = write_json(&a.dir, "exit.json", &exit);
            say(Report::Failed(msg));
            1
        }
    }
}

/// Take over from a dead monitor: copy the FIFOs until the container
/// `pid` has exited (seen through a pidfd: it is not our child).
fn adopt(a: &MonitorArgs, pid: i32) -> i32 {
    let Ok(fifos) = open_readers(&a.dir) else {
        eprintln!("monitor: open the FIFOs in {}", a.dir.display());
        return 1;
    };
    let exit = Exit::Pidfd(skiff_runtime::pidfd::pidfd_open(pid).ok());
    crate::agent::heap::release_start_up_memory();
    copy_until_exit(a, Some(fifos), exit);
    0
}

/// Make the FIFOs (anew) and open their read ends, non-blocking.
fn make_fifos(dir: &Path) -> Result<[OwnedFd; 2], String> {
    for (_, name) in FIFOS {
        let path = dir.join(name);
        let _ = std::fs::remove_file(&path);
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600))
            .map_err(|e| format!("monitor: mkfifo {}: {e}", path.display()))?;
    }
    open_readers(dir).map_err(|e| format!("monitor: open FIFOs in {}: {e}", dir.display()))
}

fn open_readers(dir: &Path) -> nix::Result<[OwnedFd; 2]> {
    use nix::fcntl::{open, OFlag};
    let open_one = |name: &str| {
        open(
            &dir.join(name),
            OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
    };
    Ok([open_one(FIFOS[0].1)?, open_one(FIFOS[1].1)?])
}

/// The container's stdout or stderr: a FIFO's write end (there is a
/// reader, so this open does not block), or /dev/null without a log.
fn container_stdio(a: &MonitorArgs, i: usize) -> Result<Stdio, String> {
    if a.log.is_none() {
        return Ok(Stdio::null());
    }
    let path = a.dir.join(FIFOS[i].1);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .map(Stdio::from)
        .map_err(|e| format!("monitor: open {}: {e}", path.display()))
}

/// `skiff create` with the FIFOs as stdio, then `skiff start`.
fn start(a: &MonitorArgs) -> Result<(Started, Option<[OwnedFd; 2]>), String> {
    let fifos = match &a.log {
        Some(_) => Some(make_fifos(&a.dir)?),
        None => None,
    };
    let pid_file = a.dir.join("init.pid");
    let st = skiff(a)
        .arg("create")
        .arg("--bundle")
        .arg(a.bundle.as_deref().unwrap_or(Path::new(".")))
        .arg("--pid-file")
        .arg(&pid_file)
        .arg(&a.id)
        .stdin(Stdio::null())
        .stdout(container_stdio(a, 0)?)
        .stderr(container_stdio(a, 1)?)
        .status()
        .map_err(|e| format!("run {}: {e}", a.skiff.display()))?;
    let log = a.dir.join("skiff.log");
    if !st.success() {
        return Err(runtime_error(&log, format!("skiff create: {st}")));
    }
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| format!("read {}", pid_file.display()))?;
    let out = skiff(a)
        .arg("start")
        .arg(&a.id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("run {}: {e}", a.skiff.display()))?;
    if !out.status.success() {
        let _ = skiff(a).args(["delete", "--force", &a.id]).status();
        let _ = wait_for(pid);
        return Err(runtime_error(
            &log,
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    }
    Ok((
        Started {
            pid,
            started_at: jiff::Timestamp::now(),
        },
        fifos,
    ))
}

/// Reap children until `pid` exits; its (exit code, signal), with a signal
/// as 128+N as the runtimes report it.
fn wait_for(pid: i32) -> (i32, Option<i32>) {
    loop {
        match waitpid(None::<Pid>, None) {
            Ok(WaitStatus::Exited(p, code)) if p.as_raw() == pid => return (code, None),
            Ok(WaitStatus::Signaled(p, sig, _)) if p.as_raw() == pid => {
                return (128 + sig as i32, Some(sig as i32))
            }
            Ok(_) | Err(nix::Error::EINTR) => {}
            // Nothing left to wait for: the init is not ours (should not
            // happen for a subreaper); report an unknown status.
            Err(_) => return (255, None),
        }
    }
}

/// How the monitor learns that the container's init has ended.
enum Exit {
    /// The init is its child (it is their subreaper). SIGCHLD, blocked and
    /// read from a signalfd(2), wakes it, and waitpid(2) then reaps every
    /// child that ended: the init, and any orphan of the container's
    /// (an exec'd process whose runtime died) that was re-parented here.
    /// Without a signalfd (out of descriptors) it looks every 100 ms.
    Child {
        pid: i32,
        sfd: Option<nix::sys::signalfd::SignalFd>,
    },
    /// The init is not its child (an adopting monitor): its pidfd turns
    /// readable when it exits. `None`: it is gone already.
    Pidfd(Option<OwnedFd>),
}

impl Exit {
    /// Watch for the end of our child `pid`.
    fn child(pid: i32) -> Exit {
        use nix::sys::signal::{SigSet, Signal};
        use nix::sys::signalfd::{SfdFlags, SignalFd};
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGCHLD);
        // The monitor has one thread, so blocking it here blocks it for
        // the process. It starts nothing after this point, so no child
        // inherits the mask.
        let sfd = mask
            .thread_block()
            .and_then(|()| {
                SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            })
            .map_err(|e| eprintln!("monitor: signalfd: {e}"))
            .ok();
        Exit::Child { pid, sfd }
    }

    /// What poll(2) waits on besides the FIFOs, if anything.
    fn fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        match self {
            Exit::Child { sfd, .. } => sfd.as_ref().map(|s| s.as_fd()),
            Exit::Pidfd(fd) => fd.as_ref().map(|f| f.as_fd()),
        }
    }

    /// Has the init ended? Its (exit code, signal) when it has (unknown
    /// for one that is not our child). Never blocks.
    fn check(&mut self) -> Option<(i32, Option<i32>)> {
        use nix::sys::wait::WaitPidFlag;
        match self {
            Exit::Pidfd(None) => Some((255, None)),
            Exit::Pidfd(Some(fd)) => {
                let mut fds = [nix::poll::PollFd::new(
                    std::os::fd::AsFd::as_fd(fd),
                    nix::poll::PollFlags::POLLIN,
                )];
                let ready = nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO);
                matches!(ready, Ok(n) if n > 0).then_some((255, None))
            }
            Exit::Child { pid, sfd } => {
                if let Some(sfd) = sfd {
                    // Empty the queue: one SIGCHLD may stand for many children.
                    while let Ok(Some(_)) = sfd.read_signal() {}
                }
                loop {
                    match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
                        Ok(WaitStatus::Exited(p, code)) if p.as_raw() == *pid => {
                            return Some((code, None))
                        }
                        Ok(WaitStatus::Signaled(p, sig, _)) if p.as_raw() == *pid => {
                            return Some((128 + sig as i32, Some(sig as i32)))
                        }
                        Ok(WaitStatus::StillAlive) => return None,
                        Ok(_) | Err(nix::Error::EINTR) => {}
                        // No child at all: the init is not ours (should not
                        // happen for a subreaper); an unknown status.
                        Err(_) => return Some((255, None)),
                    }
                }
            }
        }
    }
}

/// One FIFO being copied into the log.
struct Stream {
    name: &'static str,
    fd: OwnedFd,
    lines: cri_log::Lines,
    /// False after end-of-file or an error: no more to read.
    open: bool,
}

impl Stream {
    /// One read(2) of what is waiting, split into records for `w`.
    /// False when nothing was read.
    fn copy_once(&mut self, buf: &mut [u8], w: &mut Option<cri_log::Writer>) -> bool {
        match nix::unistd::read(&self.fd, buf) {
            Ok(n) if n > 0 => {
                let name = self.name;
                self.lines.feed(&buf[..n], |full, text| {
                    if let Some(w) = w.as_mut() {
                        let _ = w.record(name, full, text);
                    }
                });
                true
            }
            Err(nix::Error::EAGAIN) | Err(nix::Error::EINTR) => false,
            // End-of-file (no writer left at all) or an error.
            _ => {
                self.open = false;
                false
            }
        }
    }
}

/// Copy the container's stdout and stderr FIFOs into its CRI log until
/// its init has ended, then what is still waiting in them; returns the
/// init's status. One thread does it all, sleeping in poll(2) on the two
/// FIFOs and on `exit`'s descriptor: it wakes only for output or for the
/// end. (A thread per stream would cost each container about 50 KiB more,
/// in stacks and malloc arenas.)
fn copy_until_exit(
    a: &MonitorArgs,
    fifos: Option<[OwnedFd; 2]>,
    mut exit: Exit,
) -> (i32, Option<i32>) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let mut writer = fifos.as_ref().and(a.log.as_ref()).and_then(|p| {
        cri_log::Writer::open(p, a.log_max_size, a.log_max_files)
            .map_err(|e| eprintln!("monitor: open {}: {e}", p.display()))
            .ok()
    });
    let mut streams: Vec<Stream> = fifos
        .into_iter()
        .flatten()
        .zip(FIFOS)
        .map(|(fd, (name, _))| Stream {
            name,
            fd,
            lines: Default::default(),
            open: true,
        })
        .collect();
    let mut buf = vec![0u8; cri_log::MAX_LINE];
    let mut status = exit.check();
    while status.is_none() {
        let mut fds: Vec<PollFd> = streams
            .iter()
            .filter(|s| s.open)
            .map(|s| PollFd::new(s.fd.as_fd(), PollFlags::POLLIN))
            .collect();
        let watched = exit.fd();
        let timeout = match watched {
            Some(fd) => {
                fds.push(PollFd::new(fd, PollFlags::POLLIN));
                PollTimeout::NONE
            }
            None => PollTimeout::from(100u8),
        };
        match poll(&mut fds, timeout) {
            Ok(_) | Err(nix::Error::EINTR) => {}
            Err(e) => {
                eprintln!("monitor: poll: {e}");
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        let mut i = 0;
        for s in streams.iter_mut().filter(|s| s.open) {
            if ready[i] {
                s.copy_once(&mut buf, &mut writer);
            }
            i += 1;
        }
        if watched.is_none() || ready.get(i).copied().unwrap_or(false) {
            status = exit.check();
        }
    }
    // Output written just before the end is still copied; bounded, as a
    // process outside the container's pid namespace may hold a FIFO open
    // and go on writing.
    for s in &mut streams {
        for _ in 0..256 {
            if !s.open || !s.copy_once(&mut buf, &mut writer) {
                break;
            }
        }
        let name = s.name;
        s.lines.finish(|full, text| {
            if let Some(w) = writer.as_mut() {
                let _ = w.record(name, full, text);
            }
        });
    }
    status.unwrap_or((255, None))
}

/// Read the report the monitor writes on its fd 3 (until it closes it).
pub fn read_report(mut f: impl Read) -> Report {
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    serde_json::from_slice(&buf)
        .unwrap_or_else(|_| Report::Failed("the container monitor exited without a report".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Result<MonitorArgs, ArgsError> {
        MonitorArgs::parse(a.iter().copied())
    }

    #[test]
    fn the_agents_command_line_reads_back_as_what_it_wrote() {
        let start = MonitorArgs {
            skiff: "/usr/bin/skiff".into(),
            root: "/run/skiff/agent/runtime".into(),
            bundle: Some("/var/lib/skiff/b c".into()),
            id: "k8s_c_p_default_0".into(),
            dir: "/run/skiff/agent/x".into(),
            log: Some("/var/log/pods/p/c/0.log".into()),
            log_max_size: 1 << 30,
            log_max_files: 2,
            adopt: None,
        };
        assert_eq!(MonitorArgs::parse(start.to_args()).unwrap(), start);
        let adopt = MonitorArgs {
            bundle: None,
            log: None,
            adopt: Some(4242),
            ..start
        };
        assert_eq!(MonitorArgs::parse(adopt.to_args()).unwrap(), adopt);
    }

    #[test]
    fn defaults_and_the_equals_form() {
        let a = args(&[
            "--skiff=/s",
            "--root",
            "/r",
            "--id",
            "i",
            "--dir",
            "/d",
            "--bundle",
            "/b",
        ])
        .unwrap();
        assert_eq!(a.skiff, PathBuf::from("/s"));
        assert_eq!(a.log, None);
        assert_eq!(a.log_max_size, 10 << 20);
        assert_eq!(a.log_max_files, 5);
    }

    #[test]
    fn bad_command_lines_say_what_is_wrong() {
        let base = ["--skiff", "/s", "--root", "/r", "--id", "i", "--dir", "/d"];
        let with = |extra: &[&'static str]| {
            let mut v = base.to_vec();
            v.extend_from_slice(extra);
            args(&v).unwrap_err().to_string()
        };
        assert_eq!(
            with(&[]),
            "monitor arguments: --bundle is required",
            "neither --bundle nor --adopt"
        );
        assert!(
            with(&["--bundle", "/b", "--adopt", "1"]).contains("exclude each other"),
            "both --bundle and --adopt"
        );
        let e = with(&["--bundle", "/b", "--log-max-size", "ten"]);
        assert!(e.contains("--log-max-size") && e.contains("ten"), "{e}");
        let e = with(&["--bundle", "/b", "--frobnicate"]);
        assert!(e.contains("--frobnicate"), "{e}");
        let e = with(&["--bundle"]);
        assert!(e.contains("--bundle"), "{e}");
        let e = with(&["--adopt", "0"]);
        assert!(e.contains("--adopt \"0\": not a process id"), "{e}");
        let e = with(&["--adopt", "-5"]);
        assert!(e.contains("not a process id"), "{e}");
        assert!(matches!(args(&["--help"]), Err(ArgsError::Help)));
        assert!(matches!(args(&["-h"]), Err(ArgsError::Help)));
        assert_eq!(
            args(&["--root", "/r", "--id", "i", "--dir", "/d", "--bundle", "/b"])
                .unwrap_err()
                .to_string(),
            "monitor arguments: --skiff is required"
        );
    }
}
