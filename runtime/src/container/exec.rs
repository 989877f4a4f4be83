//! `skiff exec`: run another process inside a running container.
//!
//! There is no "enter container" system call: the new process joins the
//! container's cgroup by writing its pid to `cgroup.procs`, joins each of
//! the init's namespaces with setns(2) on `/proc/INIT/ns/*` (the user
//! namespace first), and forks once more so that it is inside the pid
//! namespace too (setns on a pid namespace only affects children). Then it
//! takes on the process's identity exactly like the init does (see
//! [`crate::process::finalize::finalize_process`]) and execs.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use nix::unistd::{fork, ForkResult};
use oci_spec::runtime::{LinuxNamespaceType, Process};

use crate::container::{Container, Status};
use crate::process::ProcessError;
use crate::sync::{self, Channel, Msg, SyncError};
use crate::{cgroups, namespaces, Result};

/// What can stop `exec`.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The container is paused.
    #[error("cannot exec in a paused container")]
    Paused,
    /// The container is stopped or still being created (or its init died
    /// while exec was starting).
    #[error("cannot exec in a stopped container")]
    Stopped,
    /// No program to run: `process.args` is empty.
    #[error("process args cannot be empty")]
    NoArgs,
    /// `process.terminal` is set, exec is detached, and no `--console-socket`
    /// was given to receive the pty.
    #[error("cannot allocate tty if runc will detach without setting console socket")]
    TtyNeedsConsoleSocket,
    /// `--console-socket` was given but the process has no terminal.
    #[error("cannot use console socket if runc will not detach or allocate tty")]
    ConsoleSocketNeedsTty,
    /// The foreground console's socket cannot be duplicated for the process.
    #[error("dup console socket")]
    DupConsole(#[source] std::io::Error),
    /// fork(2) failed.
    #[error("fork")]
    Fork(#[source] nix::Error),
    /// Anything that went wrong in or for the new process, as runc words it.
    #[error("unable to start container process")]
    StartProcess(#[source] Box<crate::Error>),
    /// The process ran without ever reporting its pid.
    #[error("exec: no pid reported")]
    NoPid,
    /// `--user` is not `UID[:GID]` with numeric ids.
    #[error("invalid --user {0:?}")]
    User(String),
    /// A `--cap` name that is not a capability (like `CAP_NET_ADMIN`).
    #[error("unknown capability {0:?}")]
    Capability(String),
}

/// What `exec`'s flags say when no `--process` file is given (runc's).
#[derive(Debug, Default, Clone)]
pub struct ExecFlags {
    /// The program and its arguments.
    pub args: Vec<String>,
    /// `--tty`: give the process a terminal.
    pub tty: bool,
    /// `--env K=V`, each overriding the config's value of the same name.
    pub env: Vec<String>,
    /// `--cwd`: the working directory, instead of the config's.
    pub cwd: Option<PathBuf>,
    /// `--user UID[:GID]`.
    pub user: Option<String>,
    /// `--additional-gids`: supplementary groups, replacing the config's.
    pub additional_gids: Vec<u32>,
    /// `--no-new-privs`: set `process.noNewPrivileges`.
    pub no_new_privs: bool,
    /// `--cap CAP_X`: added to the bounding, effective and permitted sets
    /// (and ambient when the config has inheritable ones).
    pub caps: Vec<String>,
}

/// The process to exec: the container's own `process`, changed as the
/// flags say.
pub fn process_from_flags(base: &Process, f: &ExecFlags) -> Result<Process> {
    let mut p = base.clone();
    if f.args.is_empty() {
        return Err(ExecError::NoArgs.into());
    }
    p.set_args(Some(f.args.clone()));
    p.set_terminal(Some(f.tty));
    // --env overrides the config's value of the same name (last wins).
    let key = |kv: &str| kv.split_once('=').map_or(kv, |(k, _)| k).to_string();
    let mut env = p.env().clone().unwrap_or_default();
    for kv in &f.env {
        env.retain(|e| key(e) != key(kv));
        env.push(kv.clone());
    }
    p.set_env(Some(env));
    if let Some(cwd) = &f.cwd {
        p.set_cwd(cwd.clone());
    }
    if let Some(u) = &f.user {
        // Without a gid, the config's gid stays, as with runc.
        let mut user = p.user().clone();
        let (uid, gid) = match u.split_once(':') {
            Some((uid, gid)) => (uid, Some(gid)),
            None => (u.as_str(), None),
        };
        let bad = || ExecError::User(u.clone());
        user.set_uid(uid.parse().map_err(|_| bad())?);
        if let Some(gid) = gid {
            user.set_gid(gid.parse().map_err(|_| bad())?);
        }
        p.set_user(user);
    }
    if !f.additional_gids.is_empty() {
        let mut user = p.user().clone();
        user.set_additional_gids(Some(f.additional_gids.clone()));
        p.set_user(user);
    }
    if f.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if !f.caps.is_empty() {
        use oci_spec::runtime::{Capabilities, Capability};
        let mut caps = p.capabilities().clone().unwrap_or_default();
        let extra: Vec<Capability> = f
            .caps
            .iter()
            .map(|c| {
                serde_json::from_value(serde_json::Value::String(c.clone()))
                    .map_err(|_| ExecError::Capability(c.clone()))
            })
            .collect::<std::result::Result<_, _>>()?;
        let add = |s: Option<Capabilities>| {
            let mut s = s.unwrap_or_default();
            s.extend(extra.iter().copied());
            Some(s)
        };
        caps.set_bounding(add(caps.bounding().clone()));
        caps.set_effective(add(caps.effective().clone()));
        caps.set_permitted(add(caps.permitted().clone()));
        // Ambient needs inheritable: only when the config has an
        // inheritable set (runc's rule).
        if caps.inheritable().as_ref().is_some_and(|i| !i.is_empty()) {
            caps.set_ambient(add(caps.ambient().clone()));
        }
        p.set_capabilities(Some(caps));
    }
    Ok(p)
}

fn start_process(e: impl Into<crate::Error>) -> crate::Error {
    ExecError::StartProcess(Box::new(e.into())).into()
}

/// Options of `exec`.
pub struct ExecOptions {
    /// The process to run (from `--process`, or from the flags).
    pub process: Process,
    /// `--detach`: return once the process runs, instead of waiting for it.
    pub detach: bool,
    /// `--pid-file`: where to write the new process's pid.
    pub pid_file: Option<PathBuf>,
    /// `--console-socket`: a unix socket to send the pty master to.
    pub console_socket: Option<PathBuf>,
    /// `--preserve-fds`: how many descriptors after stderr (3, 4...) the
    /// process inherits.
    pub preserve_fds: i32,
}

/// The container's namespaces to join, opened from the init's /proc entries.
fn open_namespaces(c: &Container) -> Result<Vec<(LinuxNamespaceType, PathBuf, File)>> {
    let linux = c.state.config.linux().clone().unwrap_or_default();
    let mut out = Vec::new();
    for ns in linux.namespaces().as_deref().unwrap_or(&[]) {
        let name = namespaces::proc_name(ns.typ());
        let path = PathBuf::from(format!("/proc/{}/ns/{name}", c.state.pid));
        let own = std::fs::metadata(format!("/proc/self/ns/{name}"))
            .map(|m| m.ino())
            .ok();
        let theirs = std::fs::metadata(&path).map(|m| m.ino()).ok();
        if own.is_some() && own == theirs {
            continue; // already there (setns into our own user namespace is an error)
        }
        let f = File::open(&path).map_err(|err| namespaces::NamespaceError::Open {
            typ: name,
            path: path.clone(),
            err,
        })?;
        out.push((ns.typ(), path, f));
    }
    Ok(out)
}

/// Start the process; returns its pid, and with `detach == false` waits and
/// returns its exit code as the second value.
pub fn exec(c: &mut Container, opts: &ExecOptions) -> Result<(i32, Option<i32>)> {
    match c.refresh() {
        Status::Running | Status::Created => {}
        Status::Paused => return Err(ExecError::Paused.into()),
        _ => return Err(ExecError::Stopped.into()),
    }
    if opts.process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(ExecError::NoArgs.into());
    }
    crate::process::validate_env(opts.process.env().as_deref().unwrap_or(&[]))?;
    let terminal = opts.process.terminal().unwrap_or(false);
    let mut foreground = None;
    let console: Option<OwnedFd> = match (&opts.console_socket, terminal) {
        (Some(p), true) => Some(crate::terminal::connect(p)?),
        (None, true) if !opts.detach => {
            let fc = crate::terminal::ForegroundConsole::new()?;
            let theirs = fc.theirs.try_clone().map_err(ExecError::DupConsole)?;
            foreground = Some(fc);
            Some(theirs)
        }
        (None, true) => return Err(ExecError::TtyNeedsConsoleSocket.into()),
        (Some(_), false) => return Err(ExecError::ConsoleSocketNeedsTty.into()),
        (None, false) => None,
    };
    let ns_files = open_namespaces(c)?;
    // The namespace files are open now; make sure they were the init's and
    // not those of a process that reused its pid meanwhile.
    if !c.init_alive() {
        return Err(ExecError::Stopped.into());
    }
    // In a user namespace setgroups(2) may be denied; the config says whether there is one.
    let in_userns = c
        .state
        .config
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|n| n.iter().any(|x| x.typ() == LinuxNamespaceType::User));
    if !opts.detach {
        crate::signals::block_forwarded();
    }
    let (runtime_end, child_end) = sync::pair()?;
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    // SAFETY: single-threaded here, so the child may run any code.
    let middle = match unsafe { fork() }.map_err(ExecError::Fork)? {
        ForkResult::Child => {
            drop(runtime_end);
            let code =
                match join_and_fork(c, &ns_files, &child_end, opts, console.as_ref(), in_userns) {
                    Ok(()) => 0,
                    Err(e) => {
                        let _ = child_end.send(&Msg::Error(crate::error_chain(&e)));
                        1
                    }
                };
            // SAFETY: end the forked process without running the parent's exit handlers.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => child,
    };
    drop(child_end);
    drop(console);
    let mut pid = None;
    let result = loop {
        match runtime_end.recv() {
            Ok(Msg::Pid(p)) => {
                let _ = nix::sys::wait::waitpid(middle, None);
                pid = Some(p);
                runtime_end.send(&Msg::Continue)?;
            }
            Ok(Msg::SeccompFd) => {
                let fd = runtime_end.recv_fd()?;
                let p = pid.unwrap_or(0);
                let st = crate::hooks::state_json(
                    c.id(),
                    Status::Running,
                    Some(p),
                    &c.state.bundle,
                    &c.state.annotations,
                );
                if let Err(e) = crate::seccomp::forward_to_listener(&c.state.config, &fd, p, &st) {
                    break Err(e);
                }
                runtime_end.send(&Msg::Continue)?;
            }
            Ok(Msg::Ready) => {
                // Keep reading: end-of-file means execve succeeded.
                break match runtime_end.recv() {
                    Err(sync::SyncError::Eof) => Ok(()),
                    Ok(Msg::Error(e)) => Err(start_process(SyncError::Reported(e))),
                    Ok(other) => Err(sync::SyncError::Unexpected {
                        expected: "end of file",
                        got: other,
                    }
                    .into()),
                    Err(e) => Err(e.into()),
                };
            }
            Ok(Msg::Error(e)) => break Err(start_process(SyncError::Reported(e))),
            Ok(other) => {
                break Err(sync::SyncError::Unexpected {
                    expected: "pid or ready",
                    got: other,
                }
                .into())
            }
            Err(e) => break Err(e.into()),
        }
    };
    let _ = nix::sys::wait::waitpid(middle, Some(nix::sys::wait::WaitPidFlag::WNOHANG));
    let pid = match (result, pid) {
        (Ok(()), Some(p)) => p,
        (Err(e), p) => {
            if let Some(p) = p {
                let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(p), None);
            }
            return Err(e);
        }
        (Ok(()), None) => return Err(ExecError::NoPid.into()),
    };
    if let Some(pf) = &opts.pid_file {
        crate::container::write_pid_file(pf, pid)?;
    }
    if opts.detach {
        return Ok((pid, None));
    }
    if let Some(fc) = foreground {
        let proxy = fc.start_proxy()?;
        return Ok((
            pid,
            Some(crate::signals::wait_forwarding(pid, Some(&proxy))),
        ));
    }
    Ok((pid, Some(crate::signals::wait_forwarding(pid, None))))
}

fn join_and_fork(
    c: &Container,
    ns_files: &[(LinuxNamespaceType, PathBuf, File)],
    chan: &Channel,
    opts: &ExecOptions,
    console: Option<&OwnedFd>,
    in_userns: bool,
) -> Result<()> {
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    crate::signals::reset_signals();
    cgroups::add_pid(&c.state.cgroup_paths, std::process::id() as i32)?;
    // Written here, through the host's /proc and inherited by the fork below:
    // once in the container's mount namespace, /proc is whatever the
    // container mounted there (runc CVE-2019-16884).
    if let Some(adj) = opts.process.oom_score_adj() {
        crate::process::set_oom_score_adj(adj)?;
    }
    namespaces::join(ns_files)?;
    // SAFETY: single-threaded, as above.
    match unsafe { fork() }.map_err(ExecError::Fork)? {
        ForkResult::Parent { child } => {
            chan.send(&Msg::Pid(child.as_raw()))?;
            // SAFETY: see above.
            unsafe { libc::_exit(0) }
        }
        ForkResult::Child => {}
    }
    chan.expect(Msg::Continue, "continue")?;
    let process = &opts.process;
    if process.terminal().unwrap_or(false) {
        if let Some(sock) = console {
            let size = process
                .console_size()
                .as_ref()
                .map(|b| (b.height() as u16, b.width() as u16));
            crate::terminal::setup(sock.as_raw_fd(), size, false)?;
        }
    }
    // The container's seccomp filter applies to every process in it.
    let filter = c
        .state
        .config
        .linux()
        .as_ref()
        .and_then(|l| l.seccomp().as_ref())
        .map(|s| crate::seccomp::build(s, c.state.seccomp_wait_killable_recv))
        .transpose()?;
    let last =
        crate::process::finalize::finalize_process(process, in_userns, filter.as_ref(), chan)?;
    let env = crate::process::finalize::process_env(process);
    let args = process.args().clone().unwrap_or_default();
    let program = crate::process::exec::find(&args[0], &env)?;
    chan.send(&Msg::Ready)?;
    // The channel is close-on-exec: the runtime reads end-of-file once the
    // program runs, or this error if execve fails.
    let err: ProcessError = crate::process::exec::exec(
        &program,
        &args,
        &env,
        opts.preserve_fds,
        &[chan.as_raw_fd()],
        &last,
    );
    Err(err.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Process {
        let mut p = Process::default();
        p.set_env(Some(vec!["PATH=/bin".into(), "A=1".into()]));
        // runc spec's sets: no inheritable, so no ambient either.
        let kill = std::collections::HashSet::from([oci_spec::runtime::Capability::Kill]);
        let mut caps = oci_spec::runtime::LinuxCapabilities::default();
        caps.set_bounding(Some(kill.clone()));
        caps.set_effective(Some(kill.clone()));
        caps.set_permitted(Some(kill));
        caps.set_inheritable(None);
        caps.set_ambient(None);
        p.set_capabilities(Some(caps));
        p
    }

    #[test]
    fn flags_change_the_containers_process_as_runc_does() {
        let f = ExecFlags {
            args: vec!["sh".into()],
            tty: true,
            env: vec!["A=2".into(), "B=3".into()],
            cwd: Some("/tmp".into()),
            user: Some("1000".into()),
            additional_gids: vec![5],
            no_new_privs: true,
            caps: vec!["CAP_NET_ADMIN".into()],
        };
        let p = process_from_flags(&base(), &f).unwrap();
        assert_eq!(p.args().as_deref(), Some(&["sh".to_string()][..]));
        assert_eq!(p.terminal(), Some(true));
        assert_eq!(
            p.env().as_deref(),
            Some(&["PATH=/bin".to_string(), "A=2".into(), "B=3".into()][..]),
            "--env replaces a variable of the same name"
        );
        assert_eq!(p.cwd(), &PathBuf::from("/tmp"));
        assert_eq!(p.user().uid(), 1000);
        assert_eq!(p.user().gid(), 0, "no gid given: the config's stays");
        assert_eq!(p.user().additional_gids().as_deref(), Some(&[5][..]));
        assert_eq!(p.no_new_privileges(), Some(true));
        let caps = p.capabilities().clone().unwrap();
        assert!(caps
            .bounding()
            .as_ref()
            .unwrap()
            .contains(&oci_spec::runtime::Capability::NetAdmin));
        assert!(caps.ambient().is_none() || caps.ambient().as_ref().unwrap().is_empty());
    }

    #[test]
    fn bad_flags_are_refused() {
        let no_args = ExecFlags::default();
        assert!(matches!(
            process_from_flags(&base(), &no_args),
            Err(crate::Error::Exec(ExecError::NoArgs))
        ));
        let user = ExecFlags {
            args: vec!["sh".into()],
            user: Some("root".into()),
            ..Default::default()
        };
        assert!(process_from_flags(&base(), &user)
            .unwrap_err()
            .to_string()
            .contains("--user"));
        let cap = ExecFlags {
            args: vec!["sh".into()],
            caps: vec!["CAP_NOPE".into()],
            ..Default::default()
        };
        assert!(process_from_flags(&base(), &cap).is_err());
    }
}
