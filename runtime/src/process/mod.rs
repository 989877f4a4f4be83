//! The container process's identity and privileges, applied by the init
//! just before it execs the user's program.
//!
//! - [`user`]: supplementary groups, gid and uid (setgroups(2),
//!   setresgid(2), setresuid(2)), the umask, and `HOME`;
//! - [`capabilities`]: the five capability sets of capabilities(7);
//! - [`rlimits`]: resource limits (setrlimit(2));
//! - [`exec`]: finding the program in the container's `PATH` and execve(2),
//!   with every runtime file descriptor closed on the way.

pub mod capabilities;
pub mod exec;
pub mod rlimits;
pub mod user;

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("{op}: {err}")]
    Sys { op: String, err: nix::Error },
    #[error("capability {0} is not known to this kernel or skiff")]
    UnknownCapability(String),
    #[error("set capabilities: {0}")]
    Caps(String),
    #[error("error setting rlimit type {typ}: {err}")]
    Rlimit { typ: String, err: nix::Error },
    #[error("exec: {name:?}: executable file not found in $PATH")]
    NotInPath { name: String },
    #[error("exec: {name:?}: stat {path}: {err}")]
    NotFound {
        name: String,
        path: PathBuf,
        err: std::io::Error,
    },
    #[error("exec: {name:?}: permission denied")]
    NotExecutable { name: String },
    #[error("exec {name:?}: {err}")]
    Exec { name: String, err: nix::Error },
    #[error("chdir to cwd ({cwd:?}) set in config.json failed: {err}")]
    Cwd { cwd: PathBuf, err: nix::Error },
    #[error("current working directory is outside of container mount namespace root -- possible container breakout detected")]
    CwdOutside,
    #[error("set oom_score_adj: {0}")]
    OomScoreAdj(std::io::Error),
    #[error(transparent)]
    Seccomp(#[from] crate::seccomp::SeccompError),
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
