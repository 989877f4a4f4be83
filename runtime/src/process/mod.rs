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
