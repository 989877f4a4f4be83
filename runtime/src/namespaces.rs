//! Namespaces: what makes a container's view of the system its own.
//!
//! Each namespace type wraps one global resource so that processes inside
//! see a private copy: `pid` (process ids; the container's first process is
//! pid 1), `mount` (the mount table, so the container can have its own `/`),
//! `network`, `ipc` (System V IPC and POSIX message queues), `uts`
//! (hostname), `user` (uid/gid mappings), `cgroup` (the cgroup root the
//! container sees) and `time` (boot and monotonic clock offsets).
//!
//! A process makes new namespaces with unshare(2), or joins existing ones
//! with setns(2) on a file such as `/proc/PID/ns/net`. Two of them, `pid` and
//! `time`, only apply to the *children* of the process that unshares them,
//! which is why the container's init is forked after they are made.
//! See namespaces(7), user_namespaces(7), pid_namespaces(7), time_namespaces(7).

use std::fs::File;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::sched::{setns, unshare, CloneFlags};
use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType};

/// Why creating or joining a namespace failed.
#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    /// A namespace file to join cannot be opened.
    #[error("open {typ} namespace {path}: {err}")]
    Open {
        /// The namespace type, as in `/proc/PID/ns` (`net`, `mnt`...).
        typ: &'static str,
        /// The file, like `/proc/1234/ns/net`.
        path: PathBuf,
        /// The underlying error.
        err: std::io::Error,
    },
    /// setns(2) into a namespace file failed.
    #[error("join {typ} namespace {path}: {err}")]
    Join {
        /// The namespace type, as in `/proc/PID/ns`.
        typ: &'static str,
        /// The file.
        path: PathBuf,
        /// The error setns returned.
        err: nix::Error,
    },
    /// unshare(2) failed.
    #[error("create namespaces ({flags}): {err}")]
    Unshare {
        /// The flags asked for, in debug form.
        flags: String,
        /// The error unshare returned.
        err: nix::Error,
    },
    /// `linux.namespaces` lists a type twice (its `/proc/PID/ns` name).
    #[error("namespace {0} is listed twice")]
    Duplicate(&'static str),
    /// Writing the init's `uid_map` or `gid_map` failed.
    #[error("write {what} for pid {pid}: {err}")]
    IdMap {
        /// `"uid_map"` or `"gid_map"`.
        what: &'static str,
        /// The process whose map it is.
        pid: i32,
        /// The underlying error.
        err: std::io::Error,
    },
    /// The user namespace cannot be set up (the reason).
    #[error("user namespace: {0}")]
    UserNs(String),
    /// `linux.timeOffsets` names a clock other than `monotonic` or `boottime`,
    /// or `/proc/self/timens_offsets` cannot be written.
    #[error("time namespace offsets: {0}")]
    TimeOffsets(String),
}

/// The result type of namespace operations.
pub type Result<T> = std::result::Result<T, NamespaceError>;

/// The name of a namespace type in /proc/PID/ns and in config.json.
pub fn proc_name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Time => "time",
    }
}

/// The clone(2)/unshare(2) flag for a namespace type (`CLONE_NEWPID`...).
pub fn clone_flag(t: LinuxNamespaceType) -> CloneFlags {
    match t {
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        // CLONE_NEWTIME shares its bit with CSIGNAL in clone(2); nix has no name for it.
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
    }
}

/// What the container's namespaces will be: which to create, which to join.
#[derive(Debug, Default, Clone)]
pub struct Plan {
    /// Namespaces to create with unshare(2).
    pub new: Vec<LinuxNamespaceType>,
    /// Namespaces to join: type and path.
    pub join: Vec<(LinuxNamespaceType, PathBuf)>,
}

impl Plan {
    /// Split `linux.namespaces` into namespaces to create (no `path`) and to
    /// join; a type listed twice is an error.
    pub fn from_spec(list: &[LinuxNamespace]) -> Result<Plan> {
        let mut plan = Plan::default();
        let mut seen = Vec::new();
        for ns in list {
            let t = ns.typ();
            if seen.contains(&t) {
                return Err(NamespaceError::Duplicate(proc_name(t)));
            }
            seen.push(t);
            match ns.path() {
                Some(p) if !p.as_os_str().is_empty() => plan.join.push((t, p.clone())),
                _ => plan.new.push(t),
            }
        }
        Ok(plan)
    }

    /// Whether the container gets namespace `t`, new or joined.
    pub fn has(&self, t: LinuxNamespaceType) -> bool {
        self.new.contains(&t) || self.join.iter().any(|(j, _)| *j == t)
    }

    /// Whether namespace `t` is created (not joined).
    pub fn creates(&self, t: LinuxNamespaceType) -> bool {
        self.new.contains(&t)
    }

    /// Flags for unshare(2) of every new namespace except `user` (made first,
    /// on its own, so it owns the others).
    pub fn unshare_flags(&self) -> CloneFlags {
        self.new
            .iter()
            .filter(|t| **t != LinuxNamespaceType::User)
            .fold(CloneFlags::empty(), |acc, t| acc | clone_flag(*t))
    }

    /// Does the init need to be forked after the namespaces are made (because
    /// pid or time namespaces only apply to children)?
    pub fn needs_fork(&self) -> bool {
        self.has(LinuxNamespaceType::Pid) || self.has(LinuxNamespaceType::Time)
    }
}

/// Open the namespace files to join, before anything changes (a path like
/// /proc/PID/ns/net must be opened while we still see the host's /proc).
pub fn open_joins(plan: &Plan) -> Result<Vec<(LinuxNamespaceType, PathBuf, File)>> {
    plan.join
        .iter()
        .map(|(t, p)| {
            File::open(p)
                .map(|f| (*t, p.clone(), f))
                .map_err(|err| NamespaceError::Open {
                    typ: proc_name(*t),
                    path: p.clone(),
                    err,
                })
        })
        .collect()
}

/// setns(2) into each opened namespace; the user namespace first, so the
/// others are joined with the privileges it gives.
pub fn join(files: &[(LinuxNamespaceType, PathBuf, File)]) -> Result<()> {
    let mut ordered: Vec<&(LinuxNamespaceType, PathBuf, File)> = files.iter().collect();
    ordered.sort_by_key(|(t, _, _)| *t != LinuxNamespaceType::User);
    for (t, p, f) in ordered {
        crate::explain!(
            "setns(2)",
            "joining the existing {} namespace {}",
            proc_name(*t),
            p.display()
        );
        setns(f.as_fd(), clone_flag(*t)).map_err(|err| NamespaceError::Join {
            typ: proc_name(*t),
            path: p.clone(),
            err,
        })?;
    }
    Ok(())
}

/// unshare(2) the given namespaces.
pub fn unshare_flags(flags: CloneFlags) -> Result<()> {
    if flags.is_empty() {
        return Ok(());
    }
    crate::explain!(
        "unshare(2)",
        "creating new namespaces {:?}: from here on this process sees its own copy of each",
        flags
    );
    unshare(flags).map_err(|err| NamespaceError::Unshare {
        flags: format!("{flags:?}"),
        err,
    })
}

/// Write uid_map and gid_map of `pid` (the runtime does this for the init,
/// which cannot map itself to ids it does not have outside).
pub fn write_id_maps(
    pid: i32,
    uid_maps: &[oci_spec::runtime::LinuxIdMapping],
    gid_maps: &[oci_spec::runtime::LinuxIdMapping],
) -> Result<()> {
    let render = |maps: &[oci_spec::runtime::LinuxIdMapping]| {
        maps.iter()
            .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
            .collect::<String>()
    };
    crate::explain!("user_namespaces(7)", "writing /proc/{pid}/uid_map and gid_map: container uid 0 becomes an ordinary uid on the host");
    for (what, data) in [("uid_map", render(uid_maps)), ("gid_map", render(gid_maps))] {
        if data.is_empty() {
            continue;
        }
        let path = format!("/proc/{pid}/{what}");
        crate::utils::write_file(Path::new(&path), &data).map_err(|err| NamespaceError::IdMap {
            what,
            pid,
            err,
        })?;
    }
    Ok(())
}

/// Write time namespace offsets (must happen after unshare(CLONE_NEWTIME) and
/// before any process enters the namespace).
pub fn write_time_offsets(
    offsets: &std::collections::HashMap<String, oci_spec::runtime::LinuxTimeOffset>,
) -> Result<()> {
    let mut data = String::new();
    for (clock, off) in offsets {
        let name = match clock.as_str() {
            "monotonic" | "boottime" => clock.as_str(),
            other => {
                return Err(NamespaceError::TimeOffsets(format!(
                    "unknown clock {other:?}"
                )))
            }
        };
        data.push_str(&format!(
            "{name} {} {}\n",
            off.secs().unwrap_or(0),
            off.nanosecs().unwrap_or(0)
        ));
    }
    if data.is_empty() {
        return Ok(());
    }
    crate::utils::write_file(Path::new("/proc/self/timens_offsets"), &data)
        .map_err(|e| NamespaceError::TimeOffsets(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_splits_new_and_joined() {
        let list: Vec<LinuxNamespace> = serde_json::from_str(
            r#"[{"type":"pid"},{"type":"network","path":"/run/netns/x"},{"type":"mount"}]"#,
        )
        .unwrap();
        let plan = Plan::from_spec(&list).unwrap();
        assert_eq!(
            plan.new,
            vec![LinuxNamespaceType::Pid, LinuxNamespaceType::Mount]
        );
        assert_eq!(plan.join.len(), 1);
        assert!(plan.needs_fork());
        assert_eq!(
            plan.unshare_flags(),
            CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWNS
        );
    }

    #[test]
    fn duplicates_are_rejected() {
        let list: Vec<LinuxNamespace> =
            serde_json::from_str(r#"[{"type":"pid"},{"type":"pid"}]"#).unwrap();
        assert!(Plan::from_spec(&list).is_err());
    }
}
