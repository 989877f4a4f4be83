//! The container process's identity and privileges, applied by the init
//! just before it execs the user's program.
//!
//! - [`user`]: supplementary groups, gid and uid (setgroups(2),
//!   setresgid(2), setresuid(2)), the umask, and `HOME`;
//! - [`capabilities`]: the five capability sets of capabilities(7);
//! - [`rlimits`]: resource limits (setrlimit(2));
//! - [`finalize`]: all of the above in their order, the last steps before
//!   execve(2), shared by `create` and `exec`;
//! - [`exec`]: finding the program in the container's `PATH` and execve(2),
//!   with every runtime file descriptor closed on the way.

pub mod capabilities;
pub mod exec;
pub mod finalize;
pub mod rlimits;
pub mod user;

use std::path::PathBuf;

/// Why setting up or starting the container's process failed.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// A system call failed.
    #[error("{op}: {err}")]
    Sys {
        /// What was being done (`"set no_new_privs"`...).
        op: String,
        /// The error it returned.
        err: nix::Error,
    },
    /// `process.user.additionalGids` in a user namespace that denies
    /// setgroups(2).
    #[error("process.user.additionalGids {0:?}: cannot set supplementary groups, because the user namespace denies setgroups(2) (a runtime without root writes a single-gid gid_map, which the kernel allows only once setgroups is denied); map more gids with /etc/subgid and newgidmap, or leave additionalGids empty")]
    GroupsDenied(Vec<u32>),
    /// A capability name in the config that neither skiff nor this kernel
    /// knows.
    #[error("capability {0} is not known to this kernel or skiff")]
    UnknownCapability(String),
    /// Changing a capability set failed (the text says which and why).
    #[error("set capabilities: {0}")]
    Caps(String),
    /// setrlimit(2) failed.
    #[error("error setting rlimit type {typ}: {err}")]
    Rlimit {
        /// The limit, like `RlimitNofile`.
        typ: String,
        /// The error setrlimit returned.
        err: nix::Error,
    },
    /// No executable file of this name in any `PATH` directory.
    #[error("exec: {name:?}: executable file not found in $PATH")]
    NotInPath {
        /// `process.args[0]`.
        name: String,
    },
    /// `process.args[0]` is a path, and stat(2) of it failed.
    #[error("exec: {name:?}: stat {path}: {err}")]
    NotFound {
        /// `process.args[0]`.
        name: String,
        /// The path looked up.
        path: PathBuf,
        /// Why.
        err: std::io::Error,
    },
    /// `process.args[0]` is a directory or has no execute bit.
    #[error("exec: {name:?}: permission denied")]
    NotExecutable {
        /// `process.args[0]`.
        name: String,
    },
    /// execve(2) itself failed.
    #[error("exec {name:?}: {err}")]
    Exec {
        /// `process.args[0]`.
        name: String,
        /// The error execve returned.
        err: nix::Error,
    },
    /// chdir(2) to `process.cwd`, or getcwd(2) after it, failed.
    #[error("chdir to cwd ({cwd:?}) set in config.json failed: {err}")]
    Cwd {
        /// `process.cwd`.
        cwd: PathBuf,
        /// The error.
        err: nix::Error,
    },
    /// The working directory is not below the container's root (reached
    /// through a leaked host descriptor, say: runc CVE-2024-21626).
    #[error("current working directory is outside of container mount namespace root -- possible container breakout detected")]
    CwdOutside,
    /// `/proc/self/oom_score_adj` cannot be written.
    #[error("set oom_score_adj: {0}")]
    OomScoreAdj(std::io::Error),
    /// `process.oomScoreAdj` would lower the score without the privilege.
    #[error("process.oomScoreAdj {adj}: lowering oom_score_adj below its current value ({current}) needs CAP_SYS_RESOURCE in the host's user namespace, which a runtime without root does not have: {err}")]
    OomScoreAdjDenied {
        /// The value asked for.
        adj: i32,
        /// The current value, inherited from the caller.
        current: String,
        /// What the kernel said.
        err: std::io::Error,
    },
    /// A `process.rlimits` hard limit above the current one, without the
    /// privilege to raise it.
    #[error("error setting rlimit type {typ}: process.rlimits asks for a hard limit of {hard}, above the current {current}, and raising a hard limit needs CAP_SYS_RESOURCE in the host's user namespace, which a runtime without root does not have: {err}")]
    RlimitDenied {
        /// The limit, like `RlimitNofile`.
        typ: String,
        /// The hard limit asked for.
        hard: u64,
        /// The current hard limit.
        current: u64,
        /// The error setrlimit returned.
        err: nix::Error,
    },
    /// Building or loading the seccomp filter failed.
    #[error(transparent)]
    Seccomp(#[from] crate::seccomp::SeccompError),
    /// A `process.env` entry without `=`.
    #[error("invalid environment variable: {0:?}")]
    InvalidEnv(String),
}

/// Every `process.env` entry must be `NAME=value`, as execve(2)'s
/// environment is meant to be (runc refuses the rest too).
pub fn validate_env(env: &[String]) -> Result<(), ProcessError> {
    match env.iter().find(|e| !e.contains('=')) {
        Some(bad) => Err(ProcessError::InvalidEnv(bad.clone())),
        None => Ok(()),
    }
}

pub(crate) fn sys(op: impl Into<String>) -> impl FnOnce(nix::Error) -> ProcessError {
    let op = op.into();
    move |err| ProcessError::Sys { op, err }
}

/// Write `process.oomScoreAdj` to `/proc/self/oom_score_adj` (proc(5)).
/// Raising it is always allowed; lowering it below the current value needs
/// `CAP_SYS_RESOURCE`, and that refusal names the setting.
pub fn set_oom_score_adj(adj: i32) -> Result<(), ProcessError> {
    let path = std::path::Path::new("/proc/self/oom_score_adj");
    crate::utils::write_file(path, &adj.to_string()).map_err(|err| {
        if matches!(err.raw_os_error(), Some(libc::EACCES) | Some(libc::EPERM)) {
            ProcessError::OomScoreAdjDenied {
                adj,
                current: std::fs::read_to_string(path)
                    .map(|s| s.trim().to_string())
                    .unwrap_or_else(|_| "unknown".into()),
                err,
            }
        } else {
            ProcessError::OomScoreAdj(err)
        }
    })
}
