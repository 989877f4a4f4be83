//! What a container is on disk: its id, its state directory and `state.json`.
//!
//! The kernel has no notion of a container, so the runtime keeps one small
//! directory per container under `--root` (default `/run/skiff`, a tmpfs on
//! most systems, so state does not survive a reboot, like the processes it
//! describes). The directory is mode 0700 and holds:
//!
//! - `state.json`: the OCI state (what `skiff state` prints) plus what later
//!   commands need: the init's start time, the cgroup paths and the config;
//! - `exec.fifo`: a named pipe (fifo(7)) the init blocks on until `start`
//!   opens it; its presence is what distinguishes `created` from `running`.
//!
//! A container's status is never trusted from the file alone: it is derived
//! from the live system each time (is the init alive, is it the same process,
//! is its cgroup frozen, has `start` consumed the fifo).

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;

pub mod create;
pub mod delete;
pub mod events;
pub mod exec;
pub mod kill;
pub mod list;
pub mod pause;
pub mod processes;
pub mod ps;
pub mod run;
pub mod start;
pub mod update;
use serde::{Deserialize, Serialize};

use crate::cgroups::CgroupPaths;

/// The OCI runtime spec version skiff implements, as runc 1.1 reports it.
pub const OCI_VERSION: &str = "1.0.2-dev";
/// Name of the state file in a container's directory.
pub const STATE_FILE: &str = "state.json";
/// Name of the fifo the init waits on until `start`.
pub const EXEC_FIFO: &str = "exec.fifo";
/// Longest container id accepted (a file name must fit in NAME_MAX).
pub const MAX_ID_LEN: usize = 255;

/// Why a container's state cannot be found, made, read or written.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// The id has characters other than letters, digits and `_ + - .`, or is
    /// empty, `.` or `..`.
    #[error("invalid container id format: {0:?}")]
    InvalidId(String),
    /// The id is longer than [`MAX_ID_LEN`].
    #[error("container id is longer than {MAX_ID_LEN} characters")]
    IdTooLong,
    /// A container with this id already exists.
    #[error("container with id exists: {0}")]
    Exists(String),
    /// No container with this id (no `state.json`).
    #[error("container does not exist")]
    NotExist(String),
    /// `--root` or a container's state directory cannot be created.
    #[error("create state directory {path}: {err}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        err: io::Error,
    },
    /// `state.json` (or the `--root` listing) cannot be read.
    #[error("read container state {path}: {err}")]
    ReadState {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        err: io::Error,
    },
    /// `state.json` does not parse.
    #[error("parse container state {path}: {err}")]
    ParseState {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        err: serde_json::Error,
    },
    /// `state.json` cannot be written.
    #[error("write container state {path}: {err}")]
    WriteState {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        err: io::Error,
    },
    /// The state directory cannot be removed.
    #[error("remove state directory {path}: {err}")]
    RemoveDir {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        err: io::Error,
    },
    /// `--pid-file` cannot be written.
    #[error("write pid file {path}")]
    PidFile {
        /// The pid file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// The four statuses of the OCI runtime spec, plus runc's `paused`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// `create` is building the container and has not finished.
    Creating,
    /// The init waits on `exec.fifo` for `start`.
    Created,
    /// The user's program runs.
    Running,
    /// The cgroup is frozen (`pause`).
    Paused,
    /// The init has exited.
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// `state.json`. The first fields are exactly what `skiff state` prints (and
/// in runc's order); the rest are skiff's own bookkeeping.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct State {
    /// The OCI runtime spec version of the state ([`OCI_VERSION`]).
    pub oci_version: String,
    /// The container id.
    pub id: String,
    /// The init's pid, as the host sees it.
    pub pid: i32,
    /// The status when last saved; see [`Container::status`] for the live one.
    pub status: Status,
    /// The bundle directory (absolute).
    pub bundle: PathBuf,
    /// The root filesystem (absolute).
    pub rootfs: PathBuf,
    /// When the container was created (RFC 3339, nanoseconds).
    pub created: String,
    /// The user owning the state directory; filled in by `list`, empty
    /// otherwise.
    pub owner: String,
    /// The config's `annotations`.
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    pub annotations: HashMap<String, String>,
    /// Start time (clock ticks since boot) of the init, to detect pid reuse.
    #[serde(default)]
    pub init_start_time: u64,
    /// Device and inode of the init's executable while it waits for
    /// `start` (the runtime's own copy): once they differ, the init has
    /// exec'd the user's program, whatever the fifo says.
    #[serde(default)]
    pub init_exe: Option<(u64, u64)>,
    /// Where the container's cgroup lives, per hierarchy.
    #[serde(default)]
    pub cgroup_paths: CgroupPaths,
    /// `SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV` was in the config's seccomp
    /// flags (kept here because the spec type cannot hold it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub seccomp_wait_killable_recv: bool,
    /// The container's config, as `create` read it.
    pub config: Spec,
}

/// The part of [`State`] that `skiff state`, hooks and `list --format json` show.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OciState<'a> {
    /// The OCI runtime spec version ([`OCI_VERSION`]).
    pub oci_version: &'a str,
    /// The container id.
    pub id: &'a str,
    /// The init's pid; 0 once the container has stopped.
    pub pid: i32,
    /// The status.
    pub status: Status,
    /// The bundle directory.
    pub bundle: &'a Path,
    /// The root filesystem.
    pub rootfs: &'a Path,
    /// When the container was created (RFC 3339).
    pub created: &'a str,
    /// The owner's user name (set by `list`), or empty.
    pub owner: &'a str,
    /// The config's `annotations`.
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    pub annotations: &'a HashMap<String, String>,
}

/// Device and inode of a process's executable (/proc/PID/exe).
pub fn exe_identity(pid: i32) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(format!("/proc/{pid}/exe"))
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

/// Check a container id with runc's rule: letters, digits, `_ + - .`, not
/// `.` or `..`, so an id can never name a path outside `--root`.
pub fn validate_id(id: &str) -> Result<(), ContainerError> {
    if id.len() > MAX_ID_LEN {
        return Err(ContainerError::IdTooLong);
    }
    let ok_chars = id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'-' | b'.'));
    if id.is_empty() || !ok_chars || id == "." || id == ".." {
        return Err(ContainerError::InvalidId(id.to_string()));
    }
    Ok(())
}

/// A container as found under `--root`.
#[derive(Debug, Clone)]
pub struct Container {
    /// The container's state directory, `<root>/<id>`.
    pub dir: PathBuf,
    /// What `state.json` holds.
    pub state: State,
}

/// Create `--root` if needed, root-only.
pub fn ensure_root(root: &Path) -> Result<(), ContainerError> {
    match fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(root)
    {
        Ok(()) => Ok(()),
        Err(err) => Err(ContainerError::CreateDir {
            path: root.to_path_buf(),
            err,
        }),
    }
}

/// Reserve the state directory for a new container; fails if the id is taken.
pub fn create_dir(root: &Path, id: &str) -> Result<PathBuf, ContainerError> {
    validate_id(id)?;
    ensure_root(root)?;
    let dir = root.join(id);
    match fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {
            // The umask may have narrowed the mode; it must be exactly 0700.
            let _ = fs::set_permissions(&dir, fs::Permissions::from_mode(0o700));
            Ok(dir)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            Err(ContainerError::Exists(id.to_string()))
        }
        Err(err) => Err(ContainerError::CreateDir { path: dir, err }),
    }
}

impl Container {
    /// Load a container by id from `--root`.
    pub fn load(root: &Path, id: &str) -> Result<Container, ContainerError> {
        validate_id(id)?;
        let dir = root.join(id);
        let path = dir.join(STATE_FILE);
        let data = match fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ContainerError::NotExist(id.to_string()))
            }
            Err(err) => return Err(ContainerError::ReadState { path, err }),
        };
        let state = serde_json::from_slice(&data).map_err(|err| ContainerError::ParseState {
            path: path.clone(),
            err,
        })?;
        Ok(Container { dir, state })
    }

    /// Only a container's cgroup paths, read from its state without the rest
    /// (the config is most of the file, and a shim asks for stats often).
    pub fn cgroup_paths(root: &Path, id: &str) -> Result<CgroupPaths, ContainerError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Paths {
            #[serde(default)]
            cgroup_paths: CgroupPaths,
        }
        validate_id(id)?;
        let path = root.join(id).join(STATE_FILE);
        let data = match fs::read(&path) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ContainerError::NotExist(id.to_string()))
            }
            Err(err) => return Err(ContainerError::ReadState { path, err }),
        };
        serde_json::from_slice::<Paths>(&data)
            .map(|p| p.cgroup_paths)
            .map_err(|err| ContainerError::ParseState { path, err })
    }

    /// All containers under `--root`, sorted by id; unreadable entries are skipped.
    pub fn list(root: &Path) -> Result<Vec<Container>, ContainerError> {
        let entries = match fs::read_dir(root) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => {
                return Err(ContainerError::ReadState {
                    path: root.to_path_buf(),
                    err,
                })
            }
        };
        let mut out: Vec<Container> = entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter_map(|id| Container::load(root, &id).ok())
            .collect();
        out.sort_by(|a, b| a.state.id.cmp(&b.state.id));
        Ok(out)
    }

    /// Write `state.json` atomically (a temporary file, then rename(2)).
    pub fn save(&self) -> Result<(), ContainerError> {
        let path = self.dir.join(STATE_FILE);
        let tmp = self.dir.join(".state.json.tmp");
        let data = serde_json::to_vec(&self.state).map_err(|e| ContainerError::WriteState {
            path: path.clone(),
            err: e.into(),
        })?;
        fs::write(&tmp, data)
            .and_then(|_| fs::rename(&tmp, &path))
            .map_err(|err| ContainerError::WriteState { path, err })
    }

    /// The container id.
    pub fn id(&self) -> &str {
        &self.state.id
    }

    /// Where the container's `exec.fifo` is (or was, before `start`).
    pub fn fifo_path(&self) -> PathBuf {
        self.dir.join(EXEC_FIFO)
    }

    /// Is the recorded init still the same live process (not a zombie, not a
    /// new process that got the same pid)?
    pub fn init_alive(&self) -> bool {
        let pid = self.state.pid;
        if pid <= 0 {
            return false;
        }
        matches!(crate::utils::process_stat(pid), Some((state, t)) if t == self.state.init_start_time && state != 'Z')
    }

    /// The live status, derived from the system (see the module docs).
    pub fn status(&self) -> Status {
        if !self.init_alive() {
            return Status::Stopped;
        }
        if self.state.status == Status::Creating {
            // `create` has not finished (or was killed, and the init with
            // it: then it is stopped, above).
            return Status::Creating;
        }
        if crate::cgroups::is_frozen(&self.state.cgroup_paths) {
            return Status::Paused;
        }
        if self.fifo_path().exists() && !self.init_has_execed() {
            Status::Created
        } else {
            Status::Running
        }
    }

    /// Has the init replaced the runtime with the user's program? (A fifo
    /// left behind by a `start` that was killed half-way would otherwise
    /// make a running container look created.)
    pub fn init_has_execed(&self) -> bool {
        match (self.state.init_exe, exe_identity(self.state.pid)) {
            (Some(then), Some(now)) => then != now,
            _ => false,
        }
    }

    /// Refresh `state.status` from the system.
    pub fn refresh(&mut self) -> Status {
        let s = self.status();
        self.state.status = s;
        s
    }

    /// The OCI state as `skiff state` and hooks show it.
    pub fn oci_state(&self) -> OciState<'_> {
        let s = &self.state;
        OciState {
            oci_version: &s.oci_version,
            id: &s.id,
            pid: if s.status == Status::Stopped {
                0
            } else {
                s.pid
            },
            status: s.status,
            bundle: &s.bundle,
            rootfs: &s.rootfs,
            created: &s.created,
            owner: &s.owner,
            annotations: &s.annotations,
        }
    }

    /// Remove the state directory.
    pub fn remove_dir(&self) -> Result<(), ContainerError> {
        match fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(ContainerError::RemoveDir {
                path: self.dir.clone(),
                err,
            }),
        }
    }
}

/// Write `--pid-file` atomically, as runc does (a temp file, then rename).
pub fn write_pid_file(path: &Path, pid: i32) -> crate::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}"));
    std::fs::write(&tmp, pid.to_string())
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|source| ContainerError::PidFile {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_runc_rules() {
        for ok in ["a", "abc-1_2+3.4", "A.b", "x..y"] {
            assert!(validate_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "../x", "a b", "é", "a\0b"] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
        assert!(matches!(
            validate_id(&"a".repeat(256)),
            Err(ContainerError::IdTooLong)
        ));
        assert!(validate_id(&"a".repeat(255)).is_ok());
    }
}
