//! `skiff create`: build the container and leave its init waiting.
//!
//! The runtime (this process) prepares what only the host can do: the state
//! directory and its `exec.fifo`, the cgroup, the namespace files to join,
//! the console socket. It forks the init (see [`crate::init`]) and then
//! serves it over the sync channel. The runtime's side of that handshake,
//! in order:
//!
//! 1. [`prepare`]: read and check the bundle (nothing is made yet);
//! 2. [`make_state_dir`]: the state directory and its `exec.fifo`;
//! 3. [`spawn_init`]: fork the init (on cgroup v2, and into the cgroup2
//!    tree of a hybrid host, straight into its cgroup, see
//!    [`crate::clone_into_cgroup`]; on v1 the init then moves itself, see
//!    [`cgroups::self_join`]; into a new pid namespace directly, when
//!    nothing else needs a two-step start);
//! 4. [`record`]: write `state.json` at once, as `creating`, so that a
//!    runtime killed from here on leaves a container that `state`, `list`
//!    and `delete` know about (until the end, the init dies with the
//!    runtime);
//! 5. [`join_cgroup`]: make the cgroup and put the init in it, unless it
//!    is in already (made ahead, then born or moved in by itself);
//! 6. [`serve_init`]: answer the init's requests — write its uid/gid maps,
//!    take its real pid, run the `prestart` and `createRuntime` hooks, pass
//!    a seccomp listener descriptor on — until it reports ready;
//! 7. [`commit`]: the record becomes `created`, `--pid-file` is written,
//!    and the init is told it may outlive the runtime.
//!
//! Any failure undoes everything: the init is killed, the cgroup and the
//! state directory removed. The container's mounts live only in its own
//! mount namespace, so they vanish with its last process.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::SystemTime;

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult, Pid};
use oci_spec::runtime::{Linux, LinuxNamespaceType, Spec};

use crate::cgroups::{self, CgroupPaths};
use crate::container::{self, Container, State, Status};
use crate::init::InitConfig;
use crate::namespaces::{self, Plan};
use crate::sync::{self, Channel, Msg, SyncError};
use crate::utils::IoCause;
use crate::{spec, Result};

/// What can stop `create`, step by step.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// The bundle directory cannot be resolved or entered.
    #[error("chdir {path}")]
    Bundle {
        /// The bundle directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: IoCause,
    },
    /// The config has no `process`.
    #[error("process property must not be empty")]
    NoProcess,
    /// `process.terminal` is set, the container is detached, and no
    /// `--console-socket` was given to receive the pty.
    #[error("cannot allocate tty if runc will detach without setting console socket")]
    TtyNeedsConsoleSocket,
    /// `--console-socket` was given but `process.terminal` is not set.
    #[error("cannot use console socket if runc will not detach or allocate tty")]
    ConsoleSocketNeedsTty,
    /// Creating `exec.fifo` in the state directory, or setting its mode, failed.
    #[error("{op} exec fifo {path}")]
    ExecFifo {
        /// The step that failed (`"create"`, `"chmod"`).
        op: &'static str,
        /// The fifo.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The new state directory cannot be opened.
    #[error("open {path}")]
    StateDir {
        /// The state directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The foreground console's socket cannot be duplicated for the init.
    #[error("dup console socket")]
    DupConsole(#[source] std::io::Error),
    /// The runtime's own pid namespace cannot be opened, to return to it after
    /// forking the init into a new one.
    #[error("open /proc/self/ns/pid")]
    OwnPidNamespace(#[source] std::io::Error),
    /// setns(2) back into the runtime's pid namespace failed.
    #[error("return to the runtime's pid namespace")]
    ReturnPidNamespace(#[source] nix::Error),
    /// fork(2) of the init failed.
    #[error("fork")]
    Fork(#[source] nix::Error),
    /// Anything that went wrong in or for the init, as runc words it.
    #[error("unable to start container process")]
    StartProcess(#[source] Box<crate::Error>),
    /// The init was OOM-killed while starting: the memory limit is too low for
    /// it.
    #[error("container init was killed by the OOM killer: {limit} (linux.resources.memory.limit) is below what it needs to start{peak}")]
    MemoryTooLow {
        /// The limit, as a phrase (`the memory limit of N bytes`).
        limit: String,
        /// ` (peak usage: N)`, when the cgroup reports a peak; else empty.
        peak: String,
    },
}

/// Errors in or for the init read like runc's: "unable to start container
/// process: ...".
fn start_process(e: impl Into<crate::Error>) -> crate::Error {
    CreateError::StartProcess(Box::new(e.into())).into()
}

/// Options of `create` (and the create half of `run`).
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// `--root`: the runtime's state directory, holding one directory per
    /// container.
    pub root: PathBuf,
    /// The container id.
    pub id: String,
    /// `--bundle`: the directory holding `config.json`.
    pub bundle: PathBuf,
    /// `--pid-file`: where to write the init's pid once the container is
    /// created.
    pub pid_file: Option<PathBuf>,
    /// `--console-socket`: a unix socket to send the pty master to, with
    /// `process.terminal`.
    pub console_socket: Option<PathBuf>,
    /// `--no-pivot`: enter the rootfs with `MS_MOVE` and chroot(2) instead of
    /// pivot_root(2).
    pub no_pivot: bool,
    /// Give the container a session keyring of its own (not `--no-new-keyring`).
    pub new_keyring: bool,
    /// `--preserve-fds`: how many descriptors after stderr (3, 4...) the
    /// container's process inherits.
    pub preserve_fds: i32,
    /// Set by `run` in the foreground: without `--console-socket`, a
    /// terminal's master comes back to us (see [`Created::console`]).
    pub foreground: bool,
}

/// What `create` leaves for `run`: the container and, for a foreground
/// terminal, the console that receives the pty master.
pub struct Created {
    /// The container, recorded as `created`.
    pub container: Container,
    /// The console that receives the pty master, when `run` in the foreground
    /// gave the container a terminal without `--console-socket`.
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

/// The bundle, read and checked.
struct Prepared {
    bundle: PathBuf,
    spec: Spec,
    extras: spec::Extras,
    rootfs: PathBuf,
    linux: Linux,
    plan: Plan,
    cgroup_paths: CgroupPaths,
    /// The cgroups the container lives in, for its `/sys/fs/cgroup`: its
    /// own, or the caller's when it has none (rootless).
    view_cgroups: CgroupPaths,
    terminal: bool,
    /// See [`defer_join`].
    deferred_join: bool,
    /// See [`joins_itself`]; decided once, as it asks the kernel's version.
    joins_itself: bool,
}

/// `skiff create`: build the container and leave its init waiting on
/// `exec.fifo` (see the module docs for the steps). On failure everything
/// made is undone.
pub fn create(opts: &CreateOptions) -> Result<Created> {
    let span = crate::span!("create: read and check the bundle");
    let p = prepare(opts)?;
    drop(span);
    let span = crate::span!("create: state directory, fifo, console");
    let (dir, state_dir) = make_state_dir(opts)?;
    let mut cleanup = Cleanup {
        dir: Some(dir.clone()),
        cgroups: None,
        pids: Vec::new(),
    };
    let ns_files = namespaces::open_joins(&p.plan)?;
    let foreground_console = if p.terminal && opts.console_socket.is_none() {
        Some(crate::terminal::ForegroundConsole::new()?)
    } else {
        None
    };
    let console_socket = match (&opts.console_socket, &foreground_console) {
        (Some(path), _) => Some(crate::terminal::connect(path)?),
        (None, Some(fc)) => Some(fc.theirs.try_clone().map_err(CreateError::DupConsole)?),
        _ => None,
    };
    let exec_fifo = crate::exec_fifo::ExecFifo::open(&state_dir)?;
    let (runtime_end, init_end) = sync::pair()?;
    drop(span);
    let deferred = p.deferred_join;
    // Made before the fork: when the init will reach its /sys/fs/cgroup
    // mount without waiting for us (the directories it binds must exist by
    // then), and when it can be born in the cgroup.
    let ahead = deferred || born_in_cgroup(&p).is_some() || p.joins_itself;
    if ahead {
        let _s = crate::span!("create: cgroup (made ahead)");
        cleanup.cgroups = Some(p.cgroup_paths.clone());
        make_cgroup(&p)?;
    }
    let span = crate::span!("create: fork the init");
    let Spawned {
        pid: child,
        in_cgroup,
    } = spawn_init(
        opts,
        &p,
        &ns_files,
        &exec_fifo,
        console_socket,
        runtime_end.as_raw_fd(),
        init_end,
    )?;
    cleanup.pids.push(child);
    if deferred {
        // Its pid is known: no need to ask (see `Msg::Pid` below).
        runtime_end
            .send(&Msg::HostPid(child))
            .map_err(|e| init_gone(&p, &runtime_end, e))?;
    }
    drop(span);
    let span = crate::span!("create: record state.json");
    let mut c = record(opts, dir, p.spec.clone(), &p, child)?;
    drop(span);
    cleanup.cgroups = Some(p.cgroup_paths.clone());
    let span = crate::span!("create: cgroup");
    if !ahead {
        make_cgroup(&p)?;
    }
    if !in_cgroup {
        add_init(&p, child, &runtime_end)?;
    }
    if !deferred {
        runtime_end
            .send(&Msg::Continue)
            .map_err(|e| init_gone(&p, &runtime_end, e))?;
    }
    drop(span);
    let span = crate::span!("create: serve the init until ready");
    let init_pid = serve_init(
        opts,
        &p,
        &mut c,
        child,
        &runtime_end,
        &mut cleanup,
        deferred,
    )?;
    drop(span);
    let _span = crate::span!("create: commit");
    commit(opts, &mut c, init_pid, &runtime_end)?;
    // Success: keep everything.
    cleanup.dir = None;
    cleanup.cgroups = None;
    cleanup.pids.clear();
    Ok(Created {
        container: c,
        console: foreground_console,
    })
}

/// Step 1: read and check everything, make nothing.
fn prepare(opts: &CreateOptions) -> Result<Prepared> {
    container::validate_id(&opts.id)?;
    let bundle = std::fs::canonicalize(&opts.bundle).map_err(|source| CreateError::Bundle {
        path: opts.bundle.clone(),
        source: IoCause(source),
    })?;
    let (spec, extras) = spec::load(&bundle)?;
    let process = spec.process().as_ref().ok_or(CreateError::NoProcess)?;
    crate::process::validate_env(process.env().as_deref().unwrap_or(&[])).map_err(start_process)?;
    let rootfs = spec::rootfs_path(&bundle, &spec)?;
    // Like runc, work from the bundle: relative bind mount sources in the
    // config are relative to it. (Paths given on the command line were made
    // absolute by the caller.)
    std::env::set_current_dir(&bundle).map_err(|source| CreateError::Bundle {
        path: bundle.clone(),
        source: IoCause(source),
    })?;
    let terminal = process.terminal().unwrap_or(false);
    if terminal && opts.console_socket.is_none() && !opts.foreground {
        return Err(CreateError::TtyNeedsConsoleSocket.into());
    }
    if !terminal && opts.console_socket.is_some() {
        return Err(CreateError::ConsoleSocketNeedsTty.into());
    }
    let linux = spec.linux().clone().unwrap_or_default();
    let plan = Plan::from_spec(linux.namespaces().as_deref().unwrap_or(&[]))?;
    let mut cgroup_paths = cgroups::resolve_paths(linux.cgroups_path().as_deref(), &opts.id)?;
    if crate::rootless::is_rootless() {
        cgroup_paths = rootless_cgroups(cgroup_paths, &linux)?;
    }
    // What the container's /sys/fs/cgroup shows without a cgroup of its
    // own: on v1 the caller's cgroups, read-only; on v2 nothing (runc's
    // choices).
    let view_cgroups = if !cgroup_paths.paths.is_empty() {
        cgroup_paths.clone()
    } else {
        let own = cgroups::own_paths()?;
        if own.is_v2() {
            CgroupPaths {
                mode: own.mode,
                paths: Default::default(),
            }
        } else {
            own
        }
    };
    let mut p = Prepared {
        bundle,
        spec,
        extras,
        rootfs,
        linux,
        plan,
        cgroup_paths,
        view_cgroups,
        terminal,
        deferred_join: false,
        joins_itself: false,
    };
    p.deferred_join = defer_join(&p);
    p.joins_itself = joins_itself(&p);
    Ok(p)
}

/// Without root, the container gets its cgroup only where the caller may
/// make it (a delegated subtree). Elsewhere it runs without one, which is
/// fine unless the spec asks for limits.
fn rootless_cgroups(paths: CgroupPaths, linux: &Linux) -> Result<CgroupPaths> {
    let denied = paths
        .paths
        .values()
        .find_map(|p| crate::rootless::cgroup_writable(p).err());
    let Some((path, err)) = denied else {
        return Ok(paths);
    };
    if let Some(what) = linux.resources().as_ref().and_then(cgroups::requested) {
        return Err(crate::rootless::RootlessError::CgroupNeeded {
            what,
            uid: nix::unistd::Uid::effective().as_raw(),
            path,
            err,
        }
        .into());
    }
    tracing::debug!(
        "rootless: no cgroup for the container ({} is not writable: {err}); it runs in the caller's",
        path.display()
    );
    crate::explain!("cgroups(7)", "no cgroup: {} is not the caller's to write (no delegated subtree), and the container asks for no limits, so it stays in the caller's cgroup", path.display());
    Ok(CgroupPaths::default())
}

/// Step 2: the state directory (the id is reserved by its creation) and
/// `exec.fifo` in it; returns the directory, opened.
fn make_state_dir(opts: &CreateOptions) -> Result<(PathBuf, File)> {
    let dir = container::create_dir(&opts.root, &opts.id)?;
    let made = (|| {
        let fifo = dir.join(container::EXEC_FIFO);
        let fifo_err = |op| {
            let path = fifo.clone();
            move |e: nix::Error| CreateError::ExecFifo {
                op,
                path,
                source: e.into(),
            }
        };
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o622))
            .map_err(fifo_err("create"))?;
        // The umask narrowed mkfifo's mode: the container's user (any uid)
        // must be able to open it for writing, so set 0622 exactly.
        std::fs::set_permissions(&fifo, std::os::unix::fs::PermissionsExt::from_mode(0o622))
            .map_err(|source| CreateError::ExecFifo {
                op: "chmod",
                path: fifo.clone(),
                source,
            })?;
        File::open(&dir).map_err(|source| CreateError::StateDir {
            path: dir.clone(),
            source,
        })
    })();
    match made {
        Ok(f) => Ok((dir, f)),
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            Err(e.into())
        }
    }
}

/// Step 3: fork the process that becomes the container's init. Returns the
/// child's pid; the child never returns from here.
fn spawn_init(
    opts: &CreateOptions,
    p: &Prepared,
    ns_files: &[(LinuxNamespaceType, PathBuf, File)],
    exec_fifo: &crate::exec_fifo::ExecFifo,
    console_socket: Option<OwnedFd>,
    runtime_end: i32,
    init_end: Channel,
) -> Result<Spawned> {
    // Orphans of the init's middle process come back to us, not to the host's init.
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    // On v1 the init moves itself into its cgroups, with files opened here
    // (the directories were made ahead).
    let self_join = if p.joins_itself {
        cgroups::self_join::SelfJoin::open(&p.cgroup_paths)?
    } else {
        None
    };
    // When the container gets a new pid namespace and nothing else needs a
    // two-step start (a user namespace must own the pid namespace; time and
    // joined pid namespaces apply only to children), the runtime unshares the
    // pid namespace itself: its next child is then pid 1 directly, saving
    // the init a second fork.
    let mut init_plan = p.plan.clone();
    let direct = direct_pid_namespace(&p.plan);
    let own_pidns = if direct {
        init_plan.new.retain(|t| *t != LinuxNamespaceType::Pid);
        let own = File::open("/proc/self/ns/pid").map_err(CreateError::OwnPidNamespace)?;
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
        spec: &p.spec,
        bundle: &p.bundle,
        rootfs: &p.rootfs,
        cgroups: &p.view_cgroups,
        plan: &init_plan,
        ns_files,
        exec_fifo,
        console_socket: console_socket.as_ref(),
        no_pivot: opts.no_pivot,
        new_keyring: opts.new_keyring,
        preserve_fds: opts.preserve_fds,
        seccomp_wait_killable_recv: p.extras.seccomp_wait_killable_recv,
        deferred_join: p.deferred_join,
    };
    // On cgroup v2 the init can be born in its cgroup (made ahead) instead
    // of being moved there.
    let into = born_in_cgroup(p);
    // SAFETY: the runtime is single-threaded here, so the child may run any code.
    let born = into.and_then(|dir| unsafe { crate::clone_into_cgroup::fork_into(dir) });
    let forked = match &born {
        Some(crate::clone_into_cgroup::Forked::Child) => Ok(ForkResult::Child),
        Some(crate::clone_into_cgroup::Forked::Parent(pid)) => Ok(ForkResult::Parent {
            child: Pid::from_raw(*pid),
        }),
        // SAFETY: as above.
        None => unsafe { fork() },
    };
    if let Some(own) = &own_pidns {
        if matches!(forked, Ok(ForkResult::Parent { .. }) | Err(_)) {
            // Back to our own pid namespace for whatever we fork later (hooks).
            nix::sched::setns(own, nix::sched::CloneFlags::CLONE_NEWPID)
                .map_err(CreateError::ReturnPidNamespace)?;
        }
    }
    match forked.map_err(CreateError::Fork)? {
        ForkResult::Child => {
            // SAFETY: the runtime's end of the channel is only the parent's.
            unsafe { libc::close(runtime_end) };
            let join = self_join.map(|j| (j, born.is_some()));
            crate::init::run(&cfg, &init_end, join)
        }
        ForkResult::Parent { child } => Ok(Spawned {
            pid: child.as_raw(),
            in_cgroup: born.is_some() || self_join.is_some(),
        }),
    }
}

/// The init, forked.
struct Spawned {
    /// Its pid.
    pid: i32,
    /// Born in its cgroup (see [`crate::clone_into_cgroup`]), or it moves
    /// itself there first thing (see [`cgroups::self_join`]): nothing for
    /// the runtime to move.
    in_cgroup: bool,
}

/// Step 4: `state.json`, as `creating`, with the child's pid.
fn record(
    opts: &CreateOptions,
    dir: PathBuf,
    spec: Spec,
    p: &Prepared,
    child: i32,
) -> Result<Container> {
    let c = Container {
        dir,
        state: State {
            oci_version: container::OCI_VERSION.into(),
            id: opts.id.clone(),
            pid: child,
            status: Status::Creating,
            bundle: p.bundle.clone(),
            rootfs: p.rootfs.clone(),
            created: crate::utils::rfc3339_nano(SystemTime::now()),
            owner: String::new(),
            annotations: spec.annotations().clone().unwrap_or_default(),
            init_start_time: crate::utils::process_stat(child).map_or(0, |(_, t)| t),
            init_exe: None,
            cgroup_paths: p.cgroup_paths.clone(),
            seccomp_wait_killable_recv: p.extras.seccomp_wait_killable_recv,
            config: spec,
        },
    };
    c.save()?;
    Ok(c)
}

/// Whether the init may build the container while the runtime moves it
/// into its cgroup, instead of waiting for the move first.
///
/// The move costs an RCU grace period, 10–20 ms on a quiet two-core
/// machine and the largest single cost of `create`, during which the init
/// would sit idle. A write to `cgroup.procs` takes the kernel's global
/// `cgroup_threadgroup_rwsem` for writing; that per-cpu semaphore is made
/// for readers (every fork and exit takes it to read), and switching it to
/// a writer waits for a grace period (`rcu_sync_enter`, then
/// `synchronize_rcu`), holding `cgroup_mutex` all along (so the cgroup's
/// directories are made first: a mkdir would wait too). It may go on meanwhile when nothing it does before `Ready`
/// needs to happen inside the cgroup: it forks nothing (the runtime made
/// its pid namespace, or there is none, and no user namespace must be
/// made first), it makes no cgroup namespace (rooted where it is when it
/// makes it), and no hook runs before `Ready` (hooks' processes belong in
/// the container's cgroup). It still joins before `Ready` is answered, so
/// before the user's program can run: until then it only sets up mounts
/// and its own credentials, charged to the runtime's cgroup.
///
/// One more case joins first: a memory limit so small that the init's own
/// set-up does not fit (below [`SMALL_MEMORY_LIMIT`]). Working inside the
/// cgroup, the init is then killed by the OOM killer during `create`, which
/// reports the limit as too low, as runc does; a deferred init would only
/// die at execve, after `create` said all was well.
fn defer_join(p: &Prepared) -> bool {
    let hooks = p.spec.hooks().as_ref();
    let early_hooks = hooks.is_some_and(|h| {
        [h.prestart(), h.create_runtime(), h.create_container()]
            .iter()
            .any(|l| l.as_ref().is_some_and(|l| !l.is_empty()))
    });
    let init_forks = !direct_pid_namespace(&p.plan) && p.plan.needs_fork();
    let small_memory = p
        .linux
        .resources()
        .as_ref()
        .and_then(|r| r.memory().as_ref())
        .and_then(|m| m.limit())
        .is_some_and(|l| l > 0 && l < SMALL_MEMORY_LIMIT);
    !small_memory
        && !p.plan.has(LinuxNamespaceType::User)
        && !p.plan.creates(LinuxNamespaceType::Cgroup)
        && !init_forks
        && !early_hooks
}

/// The cgroup the init can be born in (clone3 `CLONE_INTO_CGROUP`, see
/// [`crate::clone_into_cgroup`]): on a pure cgroup v2 host, the container's
/// one directory; on a hybrid host, its directory in the cgroup2 tree (the
/// init moves itself into the v1 ones, see [`joins_itself`]). Born there,
/// the init is inside from its first instruction, which is all that every
/// reason to join first (see [`defer_join`]) asks for: a cgroup namespace
/// it makes is rooted there, what it forks and what it allocates count
/// against the limits.
fn born_in_cgroup(p: &Prepared) -> Option<&std::path::Path> {
    if p.cgroup_paths.is_v2() && p.cgroup_paths.paths.len() != 1 {
        return None;
    }
    p.cgroup_paths.unified()
}

/// Whether the init moves itself into its v1 cgroups as the first thing it
/// does (see [`cgroups::self_join`]), rather than being moved by the
/// runtime: on every v1 or hybrid host where it has a cgroup of its own.
/// Like an init born in its cgroup, it is then inside before it does
/// anything else.
///
/// Not before Linux 5.5: the kernel skips its global lock for a thread
/// moving itself only since then ("cgroup: Optimize single thread
/// migration"). On an older kernel the init would wait out the grace period
/// itself, where the runtime's move lets it work meanwhile ([`defer_join`]).
fn joins_itself(p: &Prepared) -> bool {
    !p.cgroup_paths.is_v2()
        && !p.cgroup_paths.paths.is_empty()
        && crate::utils::kernel_version() >= (5, 5)
}

/// Below this memory limit (bytes) the init joins its cgroup before setting
/// up the container (see [`defer_join`]): about what the set-up itself
/// charges (mount and namespace structures, page tables, stack).
const SMALL_MEMORY_LIMIT: i64 = 8 << 20;

/// Whether the runtime makes the container's pid namespace itself (see
/// `spawn_init`).
fn direct_pid_namespace(plan: &Plan) -> bool {
    // Not in a user namespace of our own (rootless podman's): going back to
    // the runtime's pid namespace would need CAP_SYS_ADMIN over the host's.
    plan.creates(LinuxNamespaceType::Pid)
        && !plan.has(LinuxNamespaceType::User)
        && !plan.has(LinuxNamespaceType::Time)
        && !crate::rootless::in_user_namespace()
}

/// Step 5a: the cgroup's directories and limits.
fn make_cgroup(p: &Prepared) -> Result<()> {
    Ok(cgroups::create(
        &p.cgroup_paths,
        p.linux.resources().as_ref(),
        p.linux.devices().as_deref().unwrap_or(&[]),
    )?)
}

/// Step 5b: the init moves into the cgroup. Usually the init waits for
/// this, making its namespaces meanwhile (see `crate::init`), on the other
/// CPU if there is one; with [`defer_join`] it goes on further.
fn add_init(p: &Prepared, child: i32, chan: &Channel) -> Result<()> {
    if let Err(e) = cgroups::add_pid(&p.cgroup_paths, child) {
        // An init that failed to make its namespaces has exited already,
        // its reason waiting on the socket.
        if let Some(Msg::Error(msg)) = chan.try_recv() {
            return Err(start_process(SyncError::Reported(msg)));
        }
        return Err(e.into());
    }
    Ok(())
}

/// A failure talking to the init, as the user should read it. An init that
/// dies without a word was most likely killed: by the OOM killer, when the
/// memory limit is below what it needs to start (runc finds out as it
/// writes the limit, which it does after the join; an init born in its
/// cgroup meets the limit even earlier, before it reads a word). Whether
/// the runtime was reading (end of file, or a reset) or writing (a broken
/// pipe) when it found out, the limit is named.
///
/// An init that failed on its own (moving itself into its cgroups, say)
/// sent its reason before it exited: when the runtime finds it gone while
/// writing, that reason is read first.
fn init_gone(p: &Prepared, chan: &Channel, e: SyncError) -> crate::Error {
    let gone = match &e {
        SyncError::Eof => true,
        SyncError::Send { err, .. } => {
            matches!(err, nix::Error::EPIPE | nix::Error::ECONNRESET)
        }
        _ => false,
    };
    if gone {
        if let Some(Msg::Error(msg)) = chan.try_recv() {
            return start_process(SyncError::Reported(msg));
        }
    }
    match (gone, memory_too_low(&p.linux, &p.cgroup_paths)) {
        (true, Some(oom)) => start_process(oom),
        _ => start_process(e),
    }
}

/// Step 6: answer the init's requests until it is ready. Returns the
/// init's pid as the host sees it.
fn serve_init(
    opts: &CreateOptions,
    p: &Prepared,
    c: &mut Container,
    child: i32,
    chan: &Channel,
    cleanup: &mut Cleanup,
    deferred_join: bool,
) -> Result<i32> {
    // An init that dies without a word was most likely killed: by the OOM
    // killer, when the memory limit is below what it needs to start (runc
    // finds out as it writes the limit, which it does after the join).
    let died = |e: SyncError| init_gone(p, chan, e);
    let hook_state = |pid| {
        crate::hooks::state_json(
            &opts.id,
            Status::Creating,
            Some(pid),
            &p.bundle,
            &c.state.annotations,
        )
    };
    let mut init_pid = child;
    loop {
        match chan.recv().map_err(died)? {
            Msg::MapIds => {
                let uids = p.linux.uid_mappings().as_deref().unwrap_or(&[]);
                let gids = p.linux.gid_mappings().as_deref().unwrap_or(&[]);
                if crate::rootless::is_unprivileged() {
                    crate::rootless::write_id_maps(child, uids, gids)?;
                } else {
                    namespaces::write_id_maps(child, uids, gids)?;
                }
                chan.send(&Msg::Continue).map_err(died)?;
            }
            // With a deferred join the init's pid was sent unasked, and a
            // deferred init never forks (see `defer_join`).
            Msg::Pid(_) if deferred_join => {}
            Msg::Pid(pid) => {
                // 0: "I am the process you forked".
                init_pid = if pid == 0 { child } else { pid };
                if init_pid != child {
                    // The middle process exits once it has forked the init.
                    let _ = waitpid(Pid::from_raw(child), None);
                    cleanup.pids = vec![init_pid];
                    c.state.pid = init_pid;
                    c.state.init_start_time =
                        crate::utils::process_stat(init_pid).map_or(0, |(_, t)| t);
                    c.save()?;
                }
                chan.send(&Msg::HostPid(init_pid)).map_err(died)?;
            }
            Msg::CreateRuntimeHooks => {
                let hooks = p.spec.hooks().as_ref();
                let state = hook_state(init_pid);
                crate::hooks::run(
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
                })
                .map_err(start_process)?;
                chan.send(&Msg::Continue).map_err(died)?;
            }
            Msg::SeccompFd => {
                let fd = chan.recv_fd()?;
                crate::seccomp::forward_to_listener(&p.spec, &fd, init_pid, &hook_state(init_pid))
                    .map_err(start_process)?;
                chan.send(&Msg::Continue).map_err(died)?;
            }
            Msg::Ready => return Ok(init_pid),
            Msg::Error(e) => return Err(start_process(SyncError::Reported(e))),
            other => {
                return Err(SyncError::Unexpected {
                    expected: "a request from the init",
                    got: other,
                }
                .into())
            }
        }
    }
}

/// Step 7: the record becomes `created`, the pid file is written, and the
/// init stops dying with the runtime (and acknowledges).
fn commit(opts: &CreateOptions, c: &mut Container, init_pid: i32, chan: &Channel) -> Result<()> {
    c.state.status = Status::Created;
    c.state.init_exe = container::exe_identity(init_pid);
    c.save()?;
    if let Some(pf) = &opts.pid_file {
        container::write_pid_file(pf, init_pid)?;
    }
    chan.send(&Msg::Continue)?;
    chan.expect(Msg::Continue, "acknowledgement (container recorded)")
        .map_err(start_process)?;
    Ok(())
}

/// If the container's cgroup saw an OOM kill: the error to give.
pub(crate) fn memory_too_low(linux: &Linux, paths: &CgroupPaths) -> Option<CreateError> {
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
    Some(CreateError::MemoryTooLow { limit, peak })
}
