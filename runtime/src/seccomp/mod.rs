//! seccomp: a filter on the system calls the container may make.
//!
//! A seccomp filter is a small BPF program the kernel runs on every system
//! call of the process (and its descendants: filters are inherited and can
//! never be removed). It looks at the call's number and arguments and picks
//! an action: allow, fail with an errno, kill, trap, log, or hand the call to
//! a supervisor over a notification descriptor. See seccomp(2) and
//! seccomp_unotify(2).
//!
//! The filter is compiled from `linux.seccomp` with libseccomp (the
//! `libseccomp` crate, linked statically). Syscall names this kernel and
//! library do not know are skipped, as runc skips them. Where it is loaded
//! matters: loading needs either `no_new_privs` or CAP_SYS_ADMIN, and every
//! system call after it must pass it. With `noNewPrivileges` the filter is
//! loaded as late as possible, just before execve(2); without, it must be
//! loaded while the init still has CAP_SYS_ADMIN, before it becomes the
//! container's user (the order runc uses).

pub mod default_profile;

/// The release `skiff` is linked with musl (see `scripts/build-release.sh`),
/// and libseccomp comes from Debian's `libseccomp-dev`, compiled for glibc
/// with `_FORTIFY_SOURCE`. One of its objects, the writer of the
/// human-readable filter text (`seccomp_export_pfc`, gen_pfc.c), calls
/// glibc's checked `fprintf`, `__fprintf_chk`, which musl does not have.
/// skiff never exports that text, so the symbol only has to resolve: this
/// one writes nothing and reports failure, as fprintf(3) does on error. (A
/// variadic C function may be defined with fixed parameters on x86-64: the
/// caller's extra arguments are simply not read.)
#[cfg(target_env = "musl")]
#[no_mangle]
pub extern "C" fn __fprintf_chk(
    _stream: *mut std::ffi::c_void,
    _flag: std::ffi::c_int,
    _format: *const std::ffi::c_char,
) -> std::ffi::c_int {
    -1
}

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator,
};

/// Why the seccomp filter could not be built, loaded or handed on.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// A libseccomp call failed.
    #[error("seccomp: {what}: {err}")]
    Lib {
        /// What was being done.
        what: String,
        /// libseccomp's error.
        err: libseccomp::error::SeccompError,
    },
    /// Something this runtime or kernel cannot do: an unknown architecture, or
    /// a listener at `listenerPath` that cannot be reached.
    #[error("seccomp: {0}")]
    Unsupported(String),
    /// The compiled BPF program cannot be read back from libseccomp.
    #[error("seccomp: {0}")]
    Export(String),
    /// seccomp(2) refused the filter.
    #[error("seccomp: load filter: {0}")]
    Load(String),
    /// The profile uses `SCMP_ACT_NOTIFY` but gives no `listenerPath`.
    #[error("seccomp: SCMP_ACT_NOTIFY needs linux.seccomp.listenerPath")]
    NoListener,
}

fn lib(what: impl Into<String>) -> impl FnOnce(libseccomp::error::SeccompError) -> SeccompError {
    let what = what.into();
    move |err| SeccompError::Lib { what, err }
}

const EPERM: u32 = 1;

fn action(
    a: LinuxSeccompAction,
    errno: Option<u32>,
    default_errno: Option<u32>,
) -> Result<ScmpAction, SeccompError> {
    let errno = errno.or(default_errno).unwrap_or(EPERM);
    Ok(match a {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        LinuxSeccompAction::ScmpActErrno => ScmpAction::Errno(errno as i32),
        LinuxSeccompAction::ScmpActTrace => ScmpAction::Trace(errno as u16),
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        LinuxSeccompAction::ScmpActNotify => ScmpAction::Notify,
    })
}

fn arch(a: Arch) -> Result<ScmpArch, SeccompError> {
    let name = serde_json::to_value(a)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    // "SCMP_ARCH_X86_64" -> ScmpArch's names.
    name.parse::<ScmpArch>()
        .map_err(|_| SeccompError::Unsupported(format!("unknown architecture {name}")))
}

fn op(o: LinuxSeccompOperator, value: u64) -> ScmpCompareOp {
    match o {
        LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
        LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
        LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
        LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
        // `value` is the mask, `valueTwo` the datum: (arg & value) == valueTwo.
        LinuxSeccompOperator::ScmpCmpMaskedEq => ScmpCompareOp::MaskedEqual(value),
    }
}

/// The flag name the runtime spec uses for `SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV`
/// (not in the `oci-spec` crate's enum: [`crate::spec::load`] takes it out
/// of the config and passes it along on its own).
pub const WAIT_KILLABLE_RECV: &str = "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV";

/// A compiled filter, held as the BPF program the kernel will run, and how
/// it must be loaded.
///
/// The program is exported from libseccomp when the filter is built, so
/// that loading it is one seccomp(2) system call and nothing else: no
/// allocation, no libseccomp bookkeeping. Every system call the init makes
/// after that call must pass the user's filter, and a filter written for
/// the container's program may well forbid what a runtime needs (see
/// [`crate::init`] for the order around it).
pub struct Filter {
    program: Vec<libc::sock_filter>,
    notify: bool,
    /// `SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV` (Linux 5.19): once the
    /// supervisor has received a notification, only a fatal signal
    /// interrupts the waiting system call, so a program's own signal
    /// handlers cannot make the supervisor's answer go astray.
    wait_killable_recv: bool,
    log: bool,
    spec_allow: bool,
}

impl Filter {
    /// Does it hand system calls to a supervisor (`SCMP_ACT_NOTIFY`)?
    pub fn notifies(&self) -> bool {
        self.notify
    }

    /// Load the filter into this process (and so into everything it
    /// execs) with a single seccomp(2) `SECCOMP_SET_MODE_FILTER`; for a
    /// notifying filter, return its notification descriptor.
    ///
    /// The kernel allows it with `no_new_privs` set, or with CAP_SYS_ADMIN
    /// in the process's user namespace.
    pub fn load(&self) -> Result<Option<std::os::fd::OwnedFd>, SeccompError> {
        use std::os::fd::FromRawFd;
        crate::explain!(
            "seccomp(2)",
            "loading the seccomp filter: from now on the kernel checks every system call against it"
        );
        let prog = libc::sock_fprog {
            len: self.program.len() as u16,
            filter: self.program.as_ptr() as *mut libc::sock_filter,
        };
        let mut flags = 0;
        if self.notify {
            flags |= libc::SECCOMP_FILTER_FLAG_NEW_LISTENER;
            if self.wait_killable_recv {
                flags |= libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV;
            }
        }
        if self.log {
            flags |= libc::SECCOMP_FILTER_FLAG_LOG;
        }
        if self.spec_allow {
            flags |= libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW;
        }
        // SAFETY: `prog` points at `self.program`, alive for the call; the
        // kernel copies the program and returns 0, a new descriptor (with
        // NEW_LISTENER) or -1.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                flags,
                &prog as *const libc::sock_fprog,
            )
        };
        if rc < 0 {
            let err = nix::Error::last();
            return Err(SeccompError::Load(match err {
                nix::Error::EINVAL if self.notify && self.wait_killable_recv => format!(
                    "with {WAIT_KILLABLE_RECV}: {err} (the kernel needs to be 5.19 or newer)"
                ),
                nix::Error::EACCES => {
                    format!("{err} (needs no_new_privs or CAP_SYS_ADMIN)")
                }
                err => err.to_string(),
            }));
        }
        if !self.notify {
            return Ok(None);
        }
        // SAFETY: the kernel just returned this descriptor to us.
        Ok(Some(unsafe {
            std::os::fd::OwnedFd::from_raw_fd(rc as i32)
        }))
    }
}

/// The BPF program libseccomp compiled, read back through an anonymous
/// in-memory file (memfd_create(2)): bookworm's libseccomp 2.5 can export
/// only to a descriptor.
fn export(ctx: &ScmpFilterContext) -> Result<Vec<libc::sock_filter>, SeccompError> {
    use std::io::{Read, Seek};
    let fd =
        nix::sys::memfd::memfd_create(c"skiff-seccomp-bpf", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)
            .map_err(|e| SeccompError::Export(format!("memfd_create: {e}")))?;
    let mut buf = std::fs::File::from(fd);
    ctx.export_bpf(&buf)
        .map_err(lib("export the filter program"))?;
    let mut bytes = Vec::new();
    buf.rewind()
        .and_then(|_| buf.read_to_end(&mut bytes))
        .map_err(|e| SeccompError::Export(format!("read the filter program: {e}")))?;
    let program: Vec<libc::sock_filter> = bytes
        .chunks_exact(std::mem::size_of::<libc::sock_filter>())
        .map(|c| libc::sock_filter {
            code: u16::from_ne_bytes([c[0], c[1]]),
            jt: c[2],
            jf: c[3],
            k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
        })
        .collect();
    if program.is_empty() || program.len() > u16::MAX as usize {
        return Err(SeccompError::Export(format!(
            "the filter program has {} instructions",
            program.len()
        )));
    }
    Ok(program)
}

/// Compile `linux.seccomp` into a filter, ready to load;
/// `wait_killable_recv` is the flag `oci-spec` cannot carry.
pub fn build(s: &LinuxSeccomp, wait_killable_recv: bool) -> Result<Filter, SeccompError> {
    let program = export(&compile(s)?)?;
    let flags = s.flags().as_deref().unwrap_or(&[]);
    Ok(Filter {
        program,
        notify: uses_notify(s),
        wait_killable_recv,
        log: flags.contains(&LinuxSeccompFilterFlag::SeccompFilterFlagLog),
        spec_allow: flags.contains(&LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow),
    })
}

fn compile(s: &LinuxSeccomp) -> Result<ScmpFilterContext, SeccompError> {
    let default = action(s.default_action(), None, s.default_errno_ret())?;
    let mut ctx = ScmpFilterContext::new(default).map_err(lib("create filter"))?;
    for a in s.architectures().as_deref().unwrap_or(&[]) {
        let a = arch(*a)?;
        // The native architecture is already in the filter.
        if let Err(err) = ctx.add_arch(a) {
            if a != ScmpArch::native() {
                return Err(SeccompError::Lib {
                    what: format!("add architecture {a:?}"),
                    err,
                });
            }
        }
    }
    // We set no_new_privs ourselves (or not), as the config says.
    ctx.set_ctl_nnp(false).map_err(lib("clear NNP attribute"))?;
    for f in s.flags().as_deref().unwrap_or(&[]) {
        match f {
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => ctx
                .set_ctl_log(true)
                .map(drop)
                .map_err(lib("set SECCOMP_FILTER_FLAG_LOG"))?,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                ctx.set_ctl_ssb(true)
                    .map(drop)
                    .map_err(lib("set SECCOMP_FILTER_FLAG_SPEC_ALLOW"))?
            }
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => {} // single-threaded: nothing to sync
        }
    }
    for rule in s.syscalls().as_deref().unwrap_or(&[]) {
        let act = action(rule.action(), rule.errno_ret(), s.default_errno_ret())?;
        if act == default {
            continue; // libseccomp refuses rules that repeat the default
        }
        let conds: Vec<ScmpArgCompare> = rule
            .args()
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .map(|a| {
                let datum = if a.op() == LinuxSeccompOperator::ScmpCmpMaskedEq {
                    a.value_two().unwrap_or(0)
                } else {
                    a.value()
                };
                ScmpArgCompare::new(a.index() as u32, op(a.op(), a.value()), datum)
            })
            .collect();
        for name in rule.names() {
            let Ok(sc) = ScmpSyscall::from_name(name) else {
                tracing::debug!("seccomp: skipping unknown syscall {name}");
                continue;
            };
            let r = if conds.is_empty() {
                ctx.add_rule(act, sc)
            } else {
                ctx.add_rule_conditional(act, sc, &conds)
            };
            r.map_err(lib(format!("add rule for {name}")))?;
        }
    }
    Ok(ctx)
}

/// Does the filter hand system calls to a supervisor (`SCMP_ACT_NOTIFY`)?
/// Such a filter is loaded before the container is reported ready, so the
/// listener has its descriptor before anything runs.
fn uses_notify(s: &LinuxSeccomp) -> bool {
    s.default_action() == LinuxSeccompAction::ScmpActNotify
        || s.syscalls()
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .any(|r| r.action() == LinuxSeccompAction::ScmpActNotify)
}

/// Send the notification descriptor to the listener at `listenerPath`, with
/// the container's state, as the runtime spec's "containerProcessState":
/// one message, the JSON as payload and the descriptor as `SCM_RIGHTS`.
pub fn send_to_listener(
    path: &std::path::Path,
    fd: std::os::fd::BorrowedFd<'_>,
    pid: i32,
    metadata: Option<&str>,
    state: &str,
) -> Result<(), SeccompError> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    use std::io::IoSlice;
    use std::os::fd::AsRawFd;
    crate::explain!(
        "seccomp_unotify(2)",
        "sending the seccomp notification descriptor to the listener at {}",
        path.display()
    );
    let state: serde_json::Value = serde_json::from_str(state).unwrap_or_default();
    let msg = serde_json::json!({
        "ociVersion": crate::container::OCI_VERSION,
        "fds": ["seccompFd"],
        "pid": pid,
        "metadata": metadata.unwrap_or(""),
        "state": state,
    })
    .to_string();
    let sock = std::os::unix::net::UnixStream::connect(path).map_err(|e| {
        SeccompError::Unsupported(format!("connect to listenerPath {}: {e}", path.display()))
    })?;
    let fds = [fd.as_raw_fd()];
    sendmsg::<()>(
        sock.as_raw_fd(),
        &[IoSlice::new(msg.as_bytes())],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .map_err(|e| {
        SeccompError::Unsupported(format!("send to listenerPath {}: {e}", path.display()))
    })?;
    Ok(())
}

/// Pass a seccomp notification descriptor from a container process to the
/// config's `listenerPath` (see [`send_to_listener`]).
pub fn forward_to_listener(
    spec: &oci_spec::runtime::Spec,
    fd: &std::os::fd::OwnedFd,
    pid: i32,
    state: &str,
) -> crate::Result<()> {
    let s = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref());
    let Some(path) = s.and_then(|s| s.listener_path().as_ref()) else {
        return Err(SeccompError::NoListener.into());
    };
    let metadata = s.and_then(|s| s.listener_metadata().as_deref());
    Ok(send_to_listener(
        path,
        std::os::fd::AsFd::as_fd(fd),
        pid,
        metadata,
        state,
    )?)
}
