//! `skiff create`: build the container and leave its init waiting.
//!
//! The runtime (this process) prepares what only the host can do: the state
//! directory and its `exec.fifo`, the cgroup, the namespace files to join,
//! the console socket. It forks the init (see [`crate::init`]) and then
//! answers its requests over the sync channel: put it in the cgroup, write
//! its uid/gid maps, run the `prestart` and `createRuntime` hooks. When the
//! init reports ready, `state.json` and `--pid-file` are written and
//! `create` returns; the init stays blocked on the fifo until `start`.
//!
//! Any failure undoes everything: the init is killed, the cgroup and the
//! state directory removed. The container's mounts live only in its own
//! mount namespace, so they vanish with its last process.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult, Pid};

use crate::cgroups::{self, CgroupPaths};
use crate::container::{self, Container, State, Status};
use crate::init::InitConfig;
use crate::namespaces::{self, Plan};
use crate::sync::{self, Msg};
use crate::{spec, Error, Result};
use oci_spec::runtime::LinuxNamespaceType;

/// Options of `create` (and the create half of `run`).
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub root: PathBuf,
    pub id: String,
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub no_pivot: bool,
    /// Give the container a session keyring of its own (not `--no-new-keyring`).
    pub new_keyring: bool,
    pub preserve_fds: i32,
    /// Set by `run` in the foreground: without `--console-socket`, a
    /// terminal's master comes back to us (see [`Created::console`]).
    pub foreground: bool,
}

/// What `create` leaves for `run`: the container and, for a foreground
/// terminal, the console that receives the pty master.
pub struct Created {
    pub container: Container,
    pub console: Option<crate::terminal::ForegroundConsole>,
}

/// Everything made so far, undone on drop unless disarmed.
struct Cleanup {
    dir: Option<PathBuf>,
    cgroups: Option<CgroupPaths>,
    pids: Vec<i32>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for &p in &self.pids {
            let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
            let _ = waitpid(Pid::from_raw(p), None);
        }
        if let Some(c) = &self.cgroups {
            let _ = cgroups::remove(c);
        }
        if let Some(d) = &self.dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

pub fn create(opts: &CreateOptions) -> Result<Created> {
    container::validate_id(&opts.id)?;
    let bundle = std::fs::canonicalize(&opts.bundle)
        .map_err(|e| Error::Other(format!("chdir {}: {}", opts.bundle.display(), io_msg(&e))))?;
    let (spec, extras) = spec::load(&bundle)?;
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::Other("process property must not be empty".into()))?;
    crate::process::validate_env(process.env().as_deref().unwrap_or(&[]))
        .map_err(|e| prefix_init(e.into()))?;
    let rootfs = spec::rootfs_path(&bundle, &spec)?;
    // Like runc, work from the bundle: relative bind mount sources in the
    // config are relative to it. (Paths given on the command line were made
    // absolute by the caller.)
    std::env::set_current_dir(&bundle)
        .map_err(|e| Error::Other(format!("chdir {}: {}", bundle.display(), io_msg(&e))))?;
    let terminal = process.terminal().unwrap_or(false);
    if terminal && opts.console_socket.is_none() && !opts.foreground {
        return Err(Error::Other(
            "cannot allocate tty if runc will detach without setting console socket".into(),
        ));
    }
    if !terminal && opts.console_socket.is_some() {
        return Err(Error::Other(
            "cannot use console socket if runc will not detach or allocate tty".into(),
        ));
    }
    let linux = spec.linux().clone().unwrap_or_default();
    let plan = Plan::from_spec(linux.namespaces().as_deref().unwrap_or(&[]))?;
    let cg_paths = cgroups::resolve_paths(linux.cgroups_path().as_deref(), &opts.id)?;

    let dir = container::create_dir(&opts.root, &opts.id)?;
    let mut cleanup = Cleanup {
        dir: Some(dir.clone()),
        cgroups: None,
        pids: Vec::new(),
    };

    let fifo = dir.join(container::EXEC_FIFO);
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o622))
        .map_err(|e| Error::Other(format!("create exec fifo {}: {e}", fifo.display())))?;
    // The umask narrowed mkfifo's mode: the container's user (any uid) must
    // be able to open it for writing, so set 0622 exactly.
    std::fs::set_permissions(&fifo, std::os::unix::fs::PermissionsExt::from_mode(0o622))
        .map_err(|e| Error::Other(format!("chmod exec fifo {}: {e}", fifo.display())))?;
    let state_dir =
        File::open(&dir).map_err(|e| Error::Other(format!("open {}: {e}", dir.display())))?;

    let ns_files = namespaces::open_joins(&plan)?;
    let foreground_console = if terminal && opts.console_socket.is_none() {
        Some(crate::terminal::ForegroundConsole::new()?)
    } else {
        None
    };
    let console_socket = match (&opts.console_socket, &foreground_console) {
        (Some(p), _) => Some(crate::terminal::connect(p)?),
        (None, Some(fc)) => Some(
            fc.theirs
                .try_clone()
                .map_err(|e| Error::Other(format!("dup console socket: {e}")))?,
        ),
        _ => None,
    };
    let (runtime_end, init_end) = sync::pair()?;
    let exec_fifo = crate::init::ExecFifo::open(&state_dir)?;

    // Orphans of the init's middle process come back to us, not to the host's init.
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    // When the container gets a new pid namespace and nothing else needs a
    // two-step start (a user namespace must own the pid namespace; time and
    // joined pid namespaces apply only to children), the runtime unshares the
    // pid namespace itself: its next child is then pid 1 directly, saving
    // the init a second fork.
    let mut init_plan = plan.clone();
    let direct = plan.creates(LinuxNamespaceType::Pid)
        && !plan.has(LinuxNamespaceType::User)
        && !plan.has(LinuxNamespaceType::Time);
    let own_pidns = if direct {
        init_plan.new.retain(|t| *t != LinuxNamespaceType::Pid);
        let own = File::open("/proc/self/ns/pid")
            .map_err(|e| Error::Other(format!("open /proc/self/ns/pid: {e}")))?;
        namespaces::unshare_flags(nix::sched::CloneFlags::CLONE_NEWPID)?;
        Some(own)
    } else {
        None
    };
    crate::explain!(
        "fork(2)",
        "forking the process that will become the container's init"
    );
    let cfg = InitConfig {
        id: &opts.id,
        spec: &spec,
        bundle: &bundle,
        rootfs: &rootfs,
        cgroups: &cg_paths,
        plan: &init_plan,
        ns_files: &ns_files,
        exec_fifo: &exec_fifo,
        console_socket: console_socket.as_ref(),
        no_pivot: opts.no_pivot,
        new_keyring: opts.new_keyring,
        preserve_fds: opts.preserve_fds,
        seccomp_wait_killable_recv: extras.seccomp_wait_killable_recv,
    };
    // SAFETY: the runtime is single-threaded here, so the child may run any code.
    let forked = unsafe { fork() };
    if let Some(own) = &own_pidns {
        if matches!(forked, Ok(ForkResult::Parent { .. }) | Err(_)) {
            // Back to our own pid namespace for whatever we fork later (hooks).
            nix::sched::setns(own, nix::sched::CloneFlags::CLONE_NEWPID)
                .map_err(|e| Error::Other(format!("return to the runtime's pid namespace: {e}")))?;
        }
    }
    let child = match forked.map_err(|e| Error::Other(format!("fork: {e}")))? {
        ForkResult::Child => {
            drop(runtime_end);
            crate::init::run(&cfg, &init_end)
        }
        ForkResult::Parent { child } => child.as_raw(),
    };
    drop(init_end);
    drop(console_socket);
    cleanup.pids.push(child);

    // Recorded at once, as `creating`: a runtime killed from here on leaves
    // a container that `state` and `list` show and `delete` removes (the
    // init dies with the runtime until the record is complete).
    let annotations = spec.annotations().clone().unwrap_or_default();
    let mut c = Container {
        dir,
        state: State {
            oci_version: container::OCI_VERSION.into(),
            id: opts.id.clone(),
            pid: child,
            status: Status::Creating,
            bundle: bundle.clone(),
            rootfs,
            created: crate::utils::rfc3339_nano(SystemTime::now()),
            owner: String::new(),
            annotations: annotations.clone(),
            init_start_time: crate::utils::process_stat(child).map_or(0, |(_, t)| t),
            init_exe: None,
            cgroup_paths: cg_paths.clone(),
            seccomp_wait_killable_recv: extras.seccomp_wait_killable_recv,
            config: spec,
        },
    };
    c.save()?;
    let spec = &c.state.config;

    // The cgroup is made now, after the fork: the init makes its namespaces
    // meanwhile (see `crate::init`), on the other CPU if there is one.
    cleanup.cgroups = Some(cg_paths.clone());
    cgroups::create(
        &cg_paths,
        linux.resources().as_ref(),
        linux.devices().as_deref().unwrap_or(&[]),
    )?;
    let mut init_pid = child;
    if let Err(e) = cgroups::add_pid(&cg_paths, child) {
        // An init that failed to make its namespaces has exited already,
        // its reason waiting on the socket.
        if let Some(Msg::Error(msg)) = runtime_end.try_recv() {
            return Err(prefix_init(Error::Other(msg)));
        }
        return Err(e.into());
    }
    runtime_end.send(&Msg::Continue)?;
    // An init that dies without a word was most likely killed: by the OOM
    // killer, when the memory limit is below what it needs to start (runc
    // finds out as it writes the limit, which it does after the join).
    let died = |e: sync::SyncError| match (&e, memory_too_low(&linux, &cg_paths)) {
        (sync::SyncError::Eof, Some(msg)) => prefix_init(Error::Other(msg)),
        _ => prefix_init(e.into()),
    };
    loop {
        match runtime_end.recv().map_err(died)? {
            Msg::MapIds => {
                namespaces::write_id_maps(
                    child,
                    linux.uid_mappings().as_deref().unwrap_or(&[]),
                    linux.gid_mappings().as_deref().unwrap_or(&[]),
                )?;
                runtime_end.send(&Msg::Continue)?;
            }
            Msg::Pid(p) => {
                // 0: "I am the process you forked".
                let p = if p == 0 { child } else { p };
                init_pid = p;
                if p != child {
                    // The middle process exits once it has forked the init.
                    let _ = waitpid(Pid::from_raw(child), None);
                    cleanup.pids = vec![p];
                    c.state.pid = p;
                    c.state.init_start_time = crate::utils::process_stat(p).map_or(0, |(_, t)| t);
                    c.save()?;
                }
                runtime_end.send(&Msg::HostPid(p))?;
            }
            Msg::CreateRuntimeHooks => {
                let hooks = spec.hooks().as_ref();
                let state = crate::hooks::state_json(
                    &opts.id,
                    Status::Creating,
                    Some(init_pid),
                    &bundle,
                    &annotations,
                );
                let r = crate::hooks::run(
                    "prestart",
                    hooks.and_then(|h| h.prestart().as_ref()),
                    &state,
                )
                .and_then(|_| {
                    crate::hooks::run(
                        "createRuntime",
                        hooks.and_then(|h| h.create_runtime().as_ref()),
                        &state,
                    )
                });
                if let Err(e) = r {
                    return Err(prefix_init(e.into()));
                }
                runtime_end.send(&Msg::Continue)?;
            }
            Msg::SeccompFd => {
                let fd = runtime_end.recv_fd()?;
                forward_seccomp_fd(
                    spec,
                    &fd,
                    init_pid,
                    &crate::hooks::state_json(
                        &opts.id,
                        Status::Creating,
                        Some(init_pid),
                        &bundle,
                        &annotations,
                    ),
                )
                .map_err(prefix_init)?;
                runtime_end.send(&Msg::Continue)?;
            }
            Msg::Ready => break,
            Msg::Error(e) => return Err(prefix_init(Error::Other(e))),
            other => {
                return Err(sync::SyncError::Unexpected {
                    expected: "a request from the init",
                    got: other,
                }
                .into())
            }
        }
    }

    c.state.status = Status::Created;
    c.state.init_exe = container::exe_identity(init_pid);
    c.save()?;
    if let Some(pf) = &opts.pid_file {
        write_pid_file(pf, init_pid)?;
    }
    // The record is complete: the init may now outlive us.
    runtime_end.send(&Msg::Continue)?;
    runtime_end
        .expect(Msg::Continue, "acknowledgement (container recorded)")
        .map_err(prefix_init)?;
    // Success: keep everything.
    cleanup.dir = None;
    cleanup.cgroups = None;
    cleanup.pids.clear();
    Ok(Created {
        container: c,
        console: foreground_console,
    })
}

/// If the container's cgroup saw an OOM kill: what to tell the user.
fn memory_too_low(linux: &oci_spec::runtime::Linux, paths: &CgroupPaths) -> Option<String> {
    if cgroups::stats::oom_kills(paths) == 0 {
        return None;
    }
    let limit = linux
        .resources()
        .as_ref()
        .and_then(|r| r.memory().as_ref())
        .and_then(|m| m.limit())
        .map_or("its memory limit".to_string(), |l| {
            format!("the memory limit of {l} bytes")
        });
    let peak =
        cgroups::stats::memory_peak(paths).map_or(String::new(), |p| format!(" (peak usage: {p})"));
    Some(format!(
        "container init was killed by the OOM killer: {limit} (linux.resources.memory.limit) is below what it needs to start{peak}"
    ))
}

fn io_msg(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        _ => e.to_string(),
    }
}

/// Pass a seccomp notification descriptor from a container process to the
/// config's `listenerPath` (see [`crate::seccomp::send_to_listener`]).
pub fn forward_seccomp_fd(
    spec: &oci_spec::runtime::Spec,
    fd: &OwnedFd,
    pid: i32,
    state: &str,
) -> Result<()> {
    let s = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref());
    let Some(path) = s.and_then(|s| s.listener_path().as_ref()) else {
        return Err(Error::Other(
            "seccomp: SCMP_ACT_NOTIFY needs linux.seccomp.listenerPath".into(),
        ));
    };
    let metadata = s.and_then(|s| s.listener_metadata().as_deref());
    Ok(crate::seccomp::send_to_listener(
        path,
        std::os::fd::AsFd::as_fd(fd),
        pid,
        metadata,
        state,
    )?)
}

/// Errors that happened inside the init read like runc's.
fn prefix_init(e: Error) -> Error {
    Error::Other(format!("unable to start container process: {e}"))
}

/// Write `--pid-file` atomically, as runc does (a temp file, then rename).
pub fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}"));
    std::fs::write(&tmp, pid.to_string())
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| Error::Other(format!("write pid file {}: {e}", path.display())))
}
