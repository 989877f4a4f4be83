//! The container's init: from fork(2) to execve(2).
//!
//! `create` forks a child that becomes the container. That child:
//!
//! 1. makes its new mount, uts, ipc and network namespaces at once, while
//!    the runtime creates the container's cgroup (as crun does; runc joins
//!    the cgroup first, so the kernel memory of those namespaces is
//!    charged to the container rather than to the runtime). Not when a user
//!    namespace or a namespace path is involved: those set the order;
//! 2. is in the container's cgroup before it forks anything, so everything
//!    it forks is accounted from the start: born there (cgroup v2), moved
//!    in by itself as its first act (v1, see [`crate::cgroups::self_join`]),
//!    or waiting here until the runtime has moved it;
//! 3. joins the namespaces given by path, makes a user namespace if asked
//!    (the runtime writes its uid/gid maps), then unshares the rest (the
//!    cgroup namespace only now, since its root is the cgroup joined);
//! 4. forks once more when there is a new pid or time namespace, because
//!    those only apply to children: the grandchild is pid 1 of the new
//!    namespace and becomes the init; the middle process reports the init's
//!    pid and exits;
//! 5. builds the root filesystem (see [`crate::rootfs`]), letting the runtime
//!    run its `prestart`/`createRuntime` hooks and running `createContainer`
//!    hooks itself, then pivots into it;
//! 6. sets the hostname, sysctls, terminal, masked and read-only paths;
//! 7. applies rlimits, no_new_privs, capabilities and the user;
//! 8. checks the program exists and reports "ready"; once the runtime has
//!    recorded the container, it stops dying with the runtime (until then
//!    a killed runtime takes it along: see [`die_with_runtime`]);
//! 9. blocks opening `exec.fifo` until `start` opens the other end;
//! 10. runs `startContainer` hooks and execs the user's program.
//!
//! Steps after the fork run in a copy of the runtime's memory; nothing is
//! serialized. The init is made non-dumpable first thing, so no process in
//! the container can ptrace it or read its memory while it still holds
//! descriptors of the host (see prctl(2) `PR_SET_DUMPABLE`).

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::unistd::{fork, ForkResult};
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::cgroups::CgroupPaths;
use crate::namespaces::{self, Plan};
use crate::process;
use crate::rootfs;
use crate::sync::{Channel, Msg, SyncError};
use crate::Result;

/// What can go wrong in the init, step by step (see the module docs).
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// fork(2) for a new pid or time namespace failed.
    #[error("fork init")]
    Fork(#[source] nix::Error),
    /// The config has no `process`.
    #[error("process property must not be empty")]
    NoProcess,
    /// The rootfs cannot be opened to create the working directory in it.
    #[error("open rootfs")]
    OpenRootfs(#[source] std::io::Error),
    /// The working directory (`process.cwd`) cannot be created in the rootfs.
    #[error("create cwd {0}")]
    Cwd(PathBuf, #[source] nix::Error),
    /// `process.terminal` is set but no console socket was passed.
    #[error("terminal requested but no console socket")]
    NoConsoleSocket,
    /// The container id contains a NUL byte, so cannot name a keyring.
    #[error("container id contains NUL")]
    NulInId,
    /// Joining a new session keyring failed for another reason than missing
    /// support or permission.
    #[error("unable to join session keyring")]
    Keyring(#[source] std::io::Error),
    /// A hostname or domain name is set but the container shares the host's
    /// UTS namespace (`"hostname"` or `"domainname"`).
    #[error("unable to set {0} without a private UTS namespace")]
    NoUtsNamespace(&'static str),
    /// sethostname(2) failed for this name.
    #[error("sethostname {0:?}")]
    Hostname(String, #[source] nix::Error),
    /// setdomainname(2) failed for this name.
    #[error("setdomainname {0:?}")]
    Domainname(String, #[source] std::io::Error),
}

/// Everything the init needs, prepared by the runtime before the fork.
pub struct InitConfig<'a> {
    /// The container id.
    pub id: &'a str,
    /// The bundle's config.
    pub spec: &'a Spec,
    /// The bundle directory (absolute).
    pub bundle: &'a Path,
    /// The rootfs (absolute).
    pub rootfs: &'a Path,
    /// The container's cgroup.
    pub cgroups: &'a CgroupPaths,
    /// The namespaces to create and join.
    pub plan: &'a Plan,
    /// The namespace files to join, opened by the runtime: type, path, file.
    pub ns_files: &'a [(LinuxNamespaceType, PathBuf, File)],
    /// The container's exec.fifo, opened by the runtime.
    pub exec_fifo: &'a crate::exec_fifo::ExecFifo,
    /// The socket to send the pty master to, with `process.terminal`.
    pub console_socket: Option<&'a OwnedFd>,
    /// Enter the rootfs with `MS_MOVE` and chroot(2) instead of
    /// pivot_root(2).
    pub no_pivot: bool,
    /// Join a new session keyring named after the container.
    pub new_keyring: bool,
    /// `SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV` was among `linux.seccomp.flags`.
    pub seccomp_wait_killable_recv: bool,
    /// How many descriptors after stderr the user's program inherits.
    pub preserve_fds: i32,
    /// The runtime moves the init into its cgroup while the init goes on
    /// (see `container::create::defer_join`): do not wait for the move,
    /// nor for a host pid or hooks the runtime sends unasked or not at all.
    pub deferred_join: bool,
}

/// Entry point of the forked child. Never returns: exits or execs.
/// `join`: the cgroup files it moves itself with, and whether it was born
/// in its cgroup2 directory (see [`crate::cgroups::self_join`]).
pub fn run(
    cfg: &InitConfig<'_>,
    chan: &Channel,
    join: Option<(crate::cgroups::self_join::SelfJoin, bool)>,
) -> ! {
    crate::trace::forked("container init");
    let code = match stage1(cfg, chan, join) {
        Ok(()) => 0,
        Err(e) => {
            let _ = chan.send(&Msg::Error(crate::error_chain(&e)));
            1
        }
    };
    // SAFETY: _exit ends this forked process without running the parent's
    // atexit handlers or flushing buffers that belong to the parent.
    unsafe { libc::_exit(code) }
}

fn set_non_dumpable() {
    set_dumpable(false);
}

fn set_dumpable(on: bool) {
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, libc::c_ulong::from(on), 0, 0, 0) };
}

/// While `create` builds the container, the init dies with the runtime
/// (prctl(2) `PR_SET_PDEATHSIG`): a runtime killed half-way must not leave
/// an init waiting forever for a partner, unseen by `state` and `delete`.
/// If the runtime is gone already, the kernel would never send the signal,
/// so that is checked on the channel. The kernel clears the setting when
/// the process's credentials change, so it is armed again after each
/// change; [`disarm_parent_death`] ends it once the runtime has recorded
/// the container.
fn die_with_runtime(chan: &Channel) -> Result<()> {
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    if chan.peer_gone() {
        return Err(crate::sync::SyncError::Eof.into());
    }
    Ok(())
}

fn disarm_parent_death() {
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, 0, 0, 0, 0) };
}

fn stage1(
    cfg: &InitConfig<'_>,
    chan: &Channel,
    join: Option<(crate::cgroups::self_join::SelfJoin, bool)>,
) -> Result<()> {
    if let Some((files, born_unified)) = join {
        // First, so that all it does and allocates counts in the cgroup.
        let _s = crate::span!("init: move itself into its cgroups");
        files.join(born_unified)?;
    }
    let ns_span = crate::span!("init: namespaces");
    set_non_dumpable();
    die_with_runtime(chan)?;
    crate::signals::reset_signals();
    let early = early_namespaces(cfg);
    namespaces::unshare_flags(early)?;
    if !cfg.deferred_join {
        // The runtime has recorded the container, and moved us into our
        // cgroup unless we are in it already.
        let _wait = crate::span!("init: wait for the runtime (cgroup, state)");
        chan.expect(Msg::Continue, "continue (in the cgroup, recorded)")?;
    }
    let linux = cfg.spec.linux().as_ref();

    // The user namespace first, so that it owns every namespace made after it.
    namespaces::join(cfg.ns_files)?;
    if cfg.plan.creates(LinuxNamespaceType::User) {
        namespaces::unshare_flags(nix::sched::CloneFlags::CLONE_NEWUSER)?;
        // A non-dumpable process's /proc files belong to root, so a
        // runtime without root could not open our uid_map: be dumpable
        // while it writes the maps (runc's nsexec does the same).
        let rootless = crate::rootless::is_unprivileged();
        if rootless {
            set_dumpable(true);
        }
        chan.send(&Msg::MapIds)?;
        chan.expect(Msg::Continue, "continue (ids mapped)")?;
        if rootless {
            set_dumpable(false);
        }
        become_root_in_userns();
        die_with_runtime(chan)?;
    }
    namespaces::unshare_flags(cfg.plan.unshare_flags() - early)?;
    if cfg.plan.creates(LinuxNamespaceType::Time) {
        if let Some(offsets) = linux.and_then(|l| l.time_offsets().as_ref()) {
            namespaces::write_time_offsets(offsets)?;
        }
    }
    drop(ns_span);
    if cfg.plan.needs_fork() {
        crate::explain!("fork(2)", "forking again: the new pid namespace only applies to children, so the child becomes pid 1");
        // SAFETY: the runtime is single-threaded, so the child may run any code.
        match unsafe { fork() }.map_err(InitError::Fork)? {
            ForkResult::Parent { child } => {
                chan.send(&Msg::Pid(child.as_raw()))?;
                // SAFETY: see `run`.
                unsafe { libc::_exit(0) }
            }
            ForkResult::Child => {
                if cfg.plan.creates(LinuxNamespaceType::Time) {
                    // This child's CLOCK_MONOTONIC is shifted by the offset.
                    let off = linux
                        .and_then(|l| l.time_offsets().as_ref())
                        .and_then(|o| o.get("monotonic"))
                        .map_or(0, |o| {
                            o.secs().unwrap_or(0) * 1_000_000_000 + o.nanosecs().unwrap_or(0) as i64
                        });
                    crate::trace::set_clock_offset(off);
                }
                crate::trace::forked("container init (pid 1)");
            }
        }
    } else {
        // 0 means "the process you forked" (our own pid may be 1 already).
        chan.send(&Msg::Pid(0))?;
    }
    stage2(cfg, chan)
}

/// The new namespaces the init can make before it is in its cgroup: all
/// but cgroup (rooted at the cgroup joined), pid and time (made by the
/// runtime, or needing a fork), and none when a user namespace must own
/// them or namespaces given by path are joined first.
fn early_namespaces(cfg: &InitConfig<'_>) -> nix::sched::CloneFlags {
    use nix::sched::CloneFlags;
    if !cfg.ns_files.is_empty() || cfg.plan.has(LinuxNamespaceType::User) {
        return CloneFlags::empty();
    }
    cfg.plan.unshare_flags()
        & (CloneFlags::CLONE_NEWNS
            | CloneFlags::CLONE_NEWUTS
            | CloneFlags::CLONE_NEWIPC
            | CloneFlags::CLONE_NEWNET)
}

fn become_root_in_userns() {
    // Only possible when 0 is mapped; otherwise we stay the overflow id but
    // keep the namespace's full capabilities as its creator.
    let _ = nix::unistd::setresgid(0.into(), 0.into(), 0.into());
    let _ = nix::unistd::setresuid(0.into(), 0.into(), 0.into());
}

/// Whether the container lives in a user namespace: one of its own, or the
/// one the runtime already runs in (rootless podman's).
fn in_userns(plan: &Plan) -> bool {
    plan.has(LinuxNamespaceType::User) || crate::rootless::in_user_namespace()
}

fn stage2(cfg: &InitConfig<'_>, chan: &Channel) -> Result<()> {
    set_non_dumpable();
    // Hooks are given the pid "as seen by the host" (runtime spec, state).
    let host_pid = match chan.recv()? {
        Msg::HostPid(p) => p,
        Msg::Error(e) => return Err(SyncError::Reported(e).into()),
        got => {
            return Err(crate::sync::SyncError::Unexpected {
                expected: "host pid",
                got,
            }
            .into())
        }
    };
    // A grandchild's parent was the middle process, reaped by now: the
    // runtime (a subreaper) is its parent.
    die_with_runtime(chan)?;
    let _ = nix::unistd::setsid();
    let spec = cfg.spec;
    let linux = spec.linux().as_ref();
    let process = spec.process().as_ref().ok_or(InitError::NoProcess)?;

    if let Some(adj) = process.oom_score_adj() {
        process::set_oom_score_adj(adj)?;
    }

    if cfg.new_keyring {
        join_session_keyring(cfg.id)?;
    }
    let has_mntns = cfg.plan.has(LinuxNamespaceType::Mount);
    if has_mntns {
        // umask 0 so mount points and device nodes get exactly the modes asked.
        process::user::set_umask(0)?;
        let ctx = rootfs::Context {
            spec,
            rootfs: cfg.rootfs,
            cgroups: cfg.cgroups,
            in_userns: in_userns(cfg.plan),
            cgroupns: cfg.plan.has(LinuxNamespaceType::Cgroup),
            ops: &rootfs::ops::Kernel,
        };
        let _s = crate::span!("init: root filesystem");
        rootfs::prepare(&ctx)?;
        // The working directory is created if missing, as runc does.
        let root = File::open(cfg.rootfs).map_err(InitError::OpenRootfs)?;
        rootfs::resolve::mkdir_all_in_root(
            root.as_fd(),
            process.cwd(),
            nix::sys::stat::Mode::from_bits_truncate(0o755),
        )
        .map_err(|e| InitError::Cwd(process.cwd().clone(), e))?;
    }

    if !cfg.deferred_join {
        chan.send(&Msg::CreateRuntimeHooks)?;
        chan.expect(Msg::Continue, "continue (createRuntime hooks ran)")?;
    }
    let annotations = spec.annotations().clone().unwrap_or_default();
    let hook_state =
        |status| crate::hooks::state_json(cfg.id, status, Some(host_pid), cfg.bundle, &annotations);
    let hooks = spec.hooks().as_ref();
    crate::hooks::run(
        "createContainer",
        hooks.and_then(|h| h.create_container().as_ref()),
        &hook_state(crate::Status::Creating),
    )?;

    let pivot_span = crate::span!("init: pivot_root and paths");
    if !has_mntns {
        // Sharing the host's mount table: all that can be done is chroot.
        rootfs::pivot::chroot_only(cfg.rootfs)?;
    } else if cfg.no_pivot {
        rootfs::pivot::move_and_chroot(&rootfs::ops::Kernel, cfg.rootfs)?;
    } else {
        rootfs::pivot::pivot(&rootfs::ops::Kernel, cfg.rootfs)?;
    }

    if process.terminal().unwrap_or(false) {
        let sock = cfg.console_socket.ok_or(InitError::NoConsoleSocket)?;
        let size = process
            .console_size()
            .as_ref()
            .map(|b| (b.height() as u16, b.width() as u16));
        crate::terminal::setup(sock.as_raw_fd(), size, has_mntns)?;
    }

    set_hostname(spec, cfg.plan)?;
    if let Some(sysctl) = linux.and_then(|l| l.sysctl().as_ref()) {
        crate::sysctl::write(sysctl, cfg.plan)?;
    }
    if has_mntns {
        let l = linux.cloned().unwrap_or_default();
        rootfs::paths::make_readonly(
            &rootfs::ops::Kernel,
            l.readonly_paths().as_deref().unwrap_or(&[]),
        )?;
        rootfs::paths::mask(
            &rootfs::ops::Kernel,
            l.masked_paths().as_deref().unwrap_or(&[]),
        )?;
        if spec
            .root()
            .as_ref()
            .and_then(|r| r.readonly())
            .unwrap_or(false)
        {
            rootfs::paths::root_readonly(&rootfs::ops::Kernel)?;
        }
        rootfs::paths::root_propagation(&rootfs::ops::Kernel, l.rootfs_propagation().as_deref())?;
    }

    drop(pivot_span);
    let process_span = crate::span!("init: process (seccomp, rlimits, capabilities, user)");
    let filter = linux
        .and_then(|l| l.seccomp().as_ref())
        .map(|s| crate::seccomp::build(s, cfg.seccomp_wait_killable_recv))
        .transpose()?;
    let last =
        process::finalize::finalize_process(process, in_userns(cfg.plan), filter.as_ref(), chan)?;
    let env = process::finalize::process_env(process);
    let args = process.args().clone().unwrap_or_default();
    let program = process::exec::find(&args[0], &env)?;

    drop(process_span);
    die_on_signals();
    die_with_runtime(chan)?;
    crate::trace::end();
    chan.send(&Msg::Ready)?;
    chan.expect(Msg::Continue, "continue (container recorded)")?;
    disarm_parent_death();
    chan.send(&Msg::Continue)?;
    // `start` keeps reading the fifo until this descriptor closes, which
    // happens at execve (it is close-on-exec): so `start` returns only once
    // the user's program runs, and learns why if it never does.
    let wait = crate::span!("init: wait for start (exec.fifo)");
    let go = cfg.exec_fifo.wait_for_start()?;
    drop(wait);
    let report = |e: &(dyn std::error::Error + 'static)| {
        let _ = nix::unistd::write(&go, crate::error_chain(e).as_bytes());
    };
    if let Err(e) = crate::hooks::run(
        "startContainer",
        hooks.and_then(|h| h.start_container().as_ref()),
        &hook_state(crate::Status::Created),
    ) {
        report(&e);
        return Err(e.into());
    }
    let err = process::exec::exec(
        &program,
        &args,
        &env,
        cfg.preserve_fds,
        &[go.as_raw_fd()],
        &last,
    );
    report(&err);
    Err(err.into())
}

/// A session keyring of the container's own, so that keys (kerberos
/// tickets, fscrypt keys...) of whoever started the runtime are not visible
/// inside (keyrings(7), keyctl(2) `KEYCTL_JOIN_SESSION_KEYRING`). Kernels or
/// sandboxes without keyctl are tolerated, as runc tolerates them.
fn join_session_keyring(id: &str) -> Result<()> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    let name = std::ffi::CString::new(id).map_err(|_| InitError::NulInId)?;
    crate::explain!(
        "keyrings(7)",
        "joining a new session keyring named {id}: the caller's keys stay outside"
    );
    // SAFETY: keyctl reads a NUL-terminated name that lives for the call.
    let rc = unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name.as_ptr()) };
    if rc < 0 {
        let err = std::io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::ENOSYS) | Some(libc::EPERM) | Some(libc::EACCES) => {
                tracing::debug!("session keyring not created: {err}");
            }
            _ => return Err(InitError::Keyring(err).into()),
        }
    }
    Ok(())
}

extern "C" fn exit_on_signal(sig: libc::c_int) {
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(128 + sig) }
}

/// As pid 1 of its namespace the waiting init would ignore any signal it
/// has no handler for, so `kill ID TERM` on a created container would do
/// nothing. Until execve (which resets handlers) the usual terminating
/// signals end it, as they would end any process.
fn die_on_signals() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let action = SigAction::new(
        SigHandler::Handler(exit_on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for sig in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGALRM,
    ] {
        // SAFETY: the handler only calls _exit, which is async-signal-safe.
        let _ = unsafe { sigaction(sig, &action) };
    }
}

fn set_hostname(spec: &Spec, plan: &Plan) -> Result<()> {
    let uts = plan.has(LinuxNamespaceType::Uts);
    if let Some(h) = spec.hostname().as_deref().filter(|h| !h.is_empty()) {
        if !uts {
            return Err(InitError::NoUtsNamespace("hostname").into());
        }
        crate::explain!(
            "sethostname(2)",
            "setting the hostname to {h:?} in the container's UTS namespace"
        );
        nix::unistd::sethostname(h).map_err(|e| InitError::Hostname(h.to_string(), e))?;
    }
    if let Some(d) = spec.domainname().as_deref().filter(|d| !d.is_empty()) {
        if !uts {
            return Err(InitError::NoUtsNamespace("domainname").into());
        }
        // SAFETY: the pointer and length describe a live byte slice.
        if unsafe { libc::setdomainname(d.as_ptr().cast(), d.len()) } != 0 {
            return Err(
                InitError::Domainname(d.to_string(), std::io::Error::last_os_error()).into(),
            );
        }
    }
    Ok(())
}
