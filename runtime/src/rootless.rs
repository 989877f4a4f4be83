//! Rootless containers: what changes when the runtime is not root.
//!
//! A user namespace (user_namespaces(7)) gives its processes their own uids
//! and gids, each one *mapped* to an id outside: the map says "uid 0 in
//! here is uid 1000 out there". Inside, the namespace's creator holds every
//! capability, but only over what the namespace owns: its own mount, pid,
//! uts, ipc and network namespaces. Files on disk still belong to outside
//! ids, and the kernel checks the outside id when the container touches
//! them. So an ordinary user can be "root" in a container without being root
//! anywhere else, and that is how skiff runs without privileges.
//!
//! What the kernel allows an unprivileged user (user_namespaces(7), "Defining
//! user and group ID mappings"):
//!
//! - **One id of its own.** A process without `CAP_SETUID` in the parent
//!   namespace may write a `uid_map` of exactly one line that maps its own
//!   effective uid (and a `gid_map` mapping its own gid). Before that
//!   `gid_map` it must write `deny` to `/proc/PID/setgroups`: otherwise the
//!   container could drop a supplementary group with setgroups(2), and a
//!   file whose mode denies that group would open to it (CVE-2014-8989).
//! - **More ids through a helper.** `newuidmap` and `newgidmap` (newuidmap(1),
//!   Debian package `uidmap`) are setuid root. They write maps that use the
//!   *subordinate* ranges the administrator gave the user in `/etc/subuid`
//!   and `/etc/subgid` (subuid(5)): `alice:100000:65536` lets alice map
//!   65536 ids starting at 100000, plus her own.
//! - **No cgroup of its own**, unless one was delegated: on cgroup v2 a
//!   directory whose `cgroup.procs`, `cgroup.subtree_control` and
//!   `cgroup.threads` the user owns (systemd's `Delegate=yes`, or a `chown`
//!   by root) is the user's to split and limit (cgroups(7), "Cgroup
//!   delegation"). Without one, a container that asks for no limits runs
//!   without a cgroup, as runc does.
//! - **No devices, no sysfs.** mknod(2) of a device needs `CAP_MKNOD` in the
//!   initial namespace, so devices are bind-mounted from the host's `/dev`;
//!   sysfs mounts only with a network namespace of one's own, so `/sys` is a
//!   read-only bind mount of the host's.
//!
//! The state directory moves too: root keeps it in `/run/skiff`, a user in
//! `$XDG_RUNTIME_DIR/skiff` (the per-user tmpfs `pam_systemd` makes at
//! `/run/user/UID`), as runc uses `$XDG_RUNTIME_DIR/runc`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::unistd::{Gid, Uid};
use oci_spec::runtime::LinuxIdMapping;

/// Why rootless set-up failed.
#[derive(Debug, thiserror::Error)]
pub enum RootlessError {
    /// No `$XDG_RUNTIME_DIR` to keep the state in.
    #[error("XDG_RUNTIME_DIR is not set: without root, skiff keeps container state in $XDG_RUNTIME_DIR/skiff; set it to a directory uid {uid} owns (usually /run/user/{uid}) or pass --root")]
    NoRuntimeDir {
        /// The caller's uid.
        uid: u32,
    },
    /// `$XDG_RUNTIME_DIR` cannot be examined.
    #[error("XDG_RUNTIME_DIR {path}: {err}")]
    RuntimeDir {
        /// Its value.
        path: PathBuf,
        /// What stat(2) said.
        err: std::io::Error,
    },
    /// `$XDG_RUNTIME_DIR` belongs to someone else.
    #[error("XDG_RUNTIME_DIR {path} is owned by uid {owner}, not by uid {uid} who runs skiff: container state must not live in another user's directory; set it to your own (usually /run/user/{uid}) or pass --root")]
    RuntimeDirOwner {
        /// Its value.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// The caller's uid.
        uid: u32,
    },
    /// A mapping names host ids the caller may not map.
    #[error("{field}: host {kind}s {start}-{end} are not yours to map: {who} may map only {kind} {own} and the subordinate ranges of {file} ({ranges})")]
    OutsideRange {
        /// The spec field, like `linux.uidMappings[1]`.
        field: String,
        /// `uid` or `gid`.
        kind: &'static str,
        /// The first host id of the mapping.
        start: u32,
        /// Its last host id.
        end: u32,
        /// The caller, by name and id.
        who: String,
        /// The caller's own id.
        own: u32,
        /// `/etc/subuid` or `/etc/subgid`.
        file: &'static str,
        /// The caller's ranges there, or "none".
        ranges: String,
    },
    /// The helper for maps of more than one id cannot be run.
    #[error("linux.{kind}Mappings maps more than {kind} {own} alone, which without root needs {helper} (Debian package uidmap): {err}")]
    HelperMissing {
        /// `uid` or `gid`.
        kind: &'static str,
        /// The caller's own id.
        own: u32,
        /// `newuidmap` or `newgidmap`.
        helper: &'static str,
        /// Why it could not be run.
        err: std::io::Error,
    },
    /// The helper refused.
    #[error("{helper} {pid} {args}: {message}")]
    Helper {
        /// `newuidmap` or `newgidmap`.
        helper: &'static str,
        /// The init's pid.
        pid: i32,
        /// The ranges given.
        args: String,
        /// Its exit status and stderr.
        message: String,
    },
    /// Writing a map or `setgroups` directly failed.
    #[error("write {path}: {err}")]
    Write {
        /// `/proc/PID/uid_map`, `gid_map` or `setgroups`.
        path: String,
        /// The underlying error.
        err: std::io::Error,
    },
    /// The container asks for cgroup limits, but the caller has no cgroup
    /// it may write.
    #[error("{what} needs a cgroup, and uid {uid} may not write {path}: {err}; without root, limits need a delegated cgroup v2 subtree (systemd Delegate=yes, or a directory chowned to the user) named by linux.cgroupsPath")]
    CgroupNeeded {
        /// The settings that need it, like `linux.resources.memory`.
        what: String,
        /// The caller's uid.
        uid: u32,
        /// The directory it could not create or write.
        path: PathBuf,
        /// Why.
        err: std::io::Error,
    },
}

type Result<T> = std::result::Result<T, RootlessError>;

/// Whether skiff runs as an ordinary user: its effective uid is not 0. Such
/// a runtime may write only the id maps described above.
pub fn is_unprivileged() -> bool {
    !Uid::effective().is_root()
}

/// Whether this process lives in a user namespace other than the host's
/// initial one: its `/proc/self/uid_map` is not the identity map
/// `0 0 4294967295`. Rootless podman runs its OCI runtime like that, as
/// uid 0 of the user namespace podman made for the user: root there, but
/// with no more power over the host than the user has.
pub fn in_user_namespace() -> bool {
    let m = own_uid_map();
    !m.is_empty() && m.split_whitespace().collect::<Vec<_>>() != ["0", "0", "4294967295"]
}

/// This process's `/proc/self/uid_map`, read once ("" if unreadable).
pub fn own_uid_map() -> &'static str {
    static MAP: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    MAP.get_or_init(|| std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default())
}

/// Whether skiff runs without the host's root: as an ordinary user, or as
/// root of a user namespace (runc's test too). Either way cgroups it cannot
/// write are done without, devices are bind-mounted, and the state lives in
/// `$XDG_RUNTIME_DIR`.
pub fn is_rootless() -> bool {
    is_unprivileged() || in_user_namespace()
}

/// The state directory when `--root` is not given: `/run/skiff` for root,
/// `$XDG_RUNTIME_DIR/skiff` for a user, who must own it. Root of a user
/// namespace uses `$XDG_RUNTIME_DIR/skiff` when it owns that directory (as
/// rootless podman expects: it sets the variable for its runtime), as runc
/// does.
pub fn default_root() -> Result<PathBuf> {
    let run = PathBuf::from("/run/skiff");
    if !is_rootless() {
        return Ok(run);
    }
    let uid = Uid::effective().as_raw();
    let xdg = std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from);
    if !is_unprivileged() {
        let owned = xdg
            .as_ref()
            .and_then(|d| std::fs::metadata(d).ok())
            .is_some_and(|m| m.uid() == uid);
        return Ok(match xdg {
            Some(d) if owned => d.join("skiff"),
            _ => run,
        });
    }
    let Some(dir) = xdg else {
        return Err(RootlessError::NoRuntimeDir { uid });
    };
    let meta = std::fs::metadata(&dir).map_err(|err| RootlessError::RuntimeDir {
        path: dir.clone(),
        err,
    })?;
    if meta.uid() != uid {
        return Err(RootlessError::RuntimeDirOwner {
            path: dir,
            owner: meta.uid(),
            uid,
        });
    }
    Ok(dir.join("skiff"))
}

/// One `name:start:count` line of subuid(5)/subgid(5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubRange {
    /// The first id.
    pub start: u32,
    /// How many.
    pub count: u32,
}

/// The ranges of `text` (the contents of `/etc/subuid` or `/etc/subgid`)
/// that belong to the user `name` or numeric id `id`.
pub fn parse_subids(text: &str, name: Option<&str>, id: u32) -> Vec<SubRange> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let mut f = l.trim().split(':');
            let (who, start, count) = (f.next()?, f.next()?, f.next()?);
            let mine = Some(who) == name || who.parse::<u32>().ok() == Some(id);
            if !mine {
                return None;
            }
            Some(SubRange {
                start: start.parse().ok()?,
                count: count.parse().ok()?,
            })
        })
        .filter(|r| r.count > 0)
        .collect()
}

/// Whether `[start, start+size)` lies inside the union of `allowed`.
fn covered(start: u64, size: u64, allowed: &[SubRange]) -> bool {
    let mut spans: Vec<(u64, u64)> = allowed
        .iter()
        .map(|r| (r.start as u64, r.start as u64 + r.count as u64))
        .collect();
    spans.sort();
    let (mut at, end) = (start, start + size);
    for (s, e) in spans {
        if s > at {
            break;
        }
        at = at.max(e);
        if at >= end {
            return true;
        }
    }
    at >= end
}

/// Uids or gids: the two halves of the id-map work differ only in names.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Uid,
    Gid,
}

impl Kind {
    fn word(self) -> &'static str {
        match self {
            Kind::Uid => "uid",
            Kind::Gid => "gid",
        }
    }
    fn own(self) -> u32 {
        match self {
            Kind::Uid => Uid::effective().as_raw(),
            Kind::Gid => Gid::effective().as_raw(),
        }
    }
    fn subid_file(self) -> &'static str {
        match self {
            Kind::Uid => "/etc/subuid",
            Kind::Gid => "/etc/subgid",
        }
    }
    fn helper(self) -> &'static str {
        match self {
            Kind::Uid => "newuidmap",
            Kind::Gid => "newgidmap",
        }
    }
    fn map_file(self) -> &'static str {
        match self {
            Kind::Uid => "uid_map",
            Kind::Gid => "gid_map",
        }
    }
}

/// The caller's login name (for subuid(5), which lists names or ids).
fn user_name() -> Option<String> {
    nix::unistd::User::from_uid(Uid::effective())
        .ok()
        .flatten()
        .map(|u| u.name)
}

/// Check every mapping against what the caller may map: its own id and its
/// subordinate ranges. The helper would refuse too, but without naming the
/// field of the spec at fault.
fn check_ranges(kind: Kind, maps: &[LinuxIdMapping]) -> Result<()> {
    let own = kind.own();
    let name = user_name();
    let text = std::fs::read_to_string(kind.subid_file()).unwrap_or_default();
    let subs = parse_subids(&text, name.as_deref(), Uid::effective().as_raw());
    let mut allowed = subs.clone();
    allowed.push(SubRange {
        start: own,
        count: 1,
    });
    for (i, m) in maps.iter().enumerate() {
        if !covered(m.host_id() as u64, m.size() as u64, &allowed) {
            let ranges = if subs.is_empty() {
                "none".to_string()
            } else {
                subs.iter()
                    .map(|r| format!("{}-{}", r.start, r.start as u64 + r.count as u64 - 1))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Err(RootlessError::OutsideRange {
                field: format!("linux.{}Mappings[{i}]", kind.word()),
                kind: kind.word(),
                start: m.host_id(),
                end: (m.host_id() as u64 + (m.size() as u64).max(1) - 1) as u32,
                who: match &name {
                    Some(n) => format!("{n} (uid {})", Uid::effective()),
                    None => format!("uid {}", Uid::effective()),
                },
                own,
                file: kind.subid_file(),
                ranges,
            });
        }
    }
    Ok(())
}

/// Whether the kernel lets the caller write `maps` itself: one line that
/// maps its own id and nothing else.
fn writable_directly(kind: Kind, maps: &[LinuxIdMapping]) -> bool {
    matches!(maps, [m] if m.host_id() == kind.own() && m.size() == 1)
}

fn write(path: String, data: &str) -> Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .and_then(|mut f| f.write_all(data.as_bytes()))
        .map_err(|err| RootlessError::Write { path, err })
}

fn run_helper(kind: Kind, pid: i32, maps: &[LinuxIdMapping]) -> Result<()> {
    let mut args = String::new();
    for m in maps {
        let _ = write!(args, " {} {} {}", m.container_id(), m.host_id(), m.size());
    }
    let args = args.trim_start().to_string();
    crate::explain!(
        "newuidmap(1)",
        "running {} {pid} {args}: a setuid-root helper that writes {} after checking the ranges against {}",
        kind.helper(),
        kind.map_file(),
        kind.subid_file()
    );
    let out = Command::new(kind.helper())
        .arg(pid.to_string())
        .args(args.split(' '))
        .stdin(Stdio::null())
        .output()
        .map_err(|err| RootlessError::HelperMissing {
            kind: kind.word(),
            own: kind.own(),
            helper: kind.helper(),
            err,
        })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(RootlessError::Helper {
            helper: kind.helper(),
            pid,
            args,
            message: format!("{}: {stderr}", out.status),
        });
    }
    Ok(())
}

/// Write the init's `uid_map` and `gid_map` without root: directly when
/// each maps only the caller's own id (after `setgroups` is denied), else
/// through `newuidmap`/`newgidmap`.
pub fn write_id_maps(
    pid: i32,
    uid_maps: &[LinuxIdMapping],
    gid_maps: &[LinuxIdMapping],
) -> Result<()> {
    for (kind, maps) in [(Kind::Uid, uid_maps), (Kind::Gid, gid_maps)] {
        if maps.is_empty() || writable_directly(kind, maps) {
            continue;
        }
        check_ranges(kind, maps)?;
    }
    for (kind, maps) in [(Kind::Uid, uid_maps), (Kind::Gid, gid_maps)] {
        if maps.is_empty() {
            continue;
        }
        if !writable_directly(kind, maps) {
            run_helper(kind, pid, maps)?;
            continue;
        }
        if let Kind::Gid = kind {
            crate::explain!("user_namespaces(7)", "writing deny to /proc/{pid}/setgroups: an unprivileged gid_map may only be written once setgroups(2) is disabled, so the container cannot shed a group that a file's mode denies it");
            write(format!("/proc/{pid}/setgroups"), "deny")?;
        }
        let m = &maps[0];
        crate::explain!(
            "user_namespaces(7)",
            "writing /proc/{pid}/{}: container {} {} is {} {} outside, the one id an unprivileged process may map without a helper",
            kind.map_file(),
            kind.word(),
            m.container_id(),
            kind.word(),
            m.host_id()
        );
        write(
            format!("/proc/{pid}/{}", kind.map_file()),
            &format!("{} {} 1\n", m.container_id(), m.host_id()),
        )?;
    }
    Ok(())
}

/// Whether `path` (a cgroup directory to be made) can be made and written
/// by the caller: the nearest existing ancestor is writable. Returns that
/// ancestor and the error when not.
pub fn cgroup_writable(path: &Path) -> std::result::Result<(), (PathBuf, std::io::Error)> {
    let mut p = path;
    loop {
        if p.exists() {
            return match nix::unistd::access(p, nix::unistd::AccessFlags::W_OK) {
                Ok(()) => Ok(()),
                Err(e) => Err((p.to_path_buf(), std::io::Error::from(e))),
            };
        }
        match p.parent() {
            Some(parent) => p = parent,
            None => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subids_by_name_or_id() {
        let text =
            "# comment\nalice:100000:65536\nbob:165536:65536\n1001:300000:10\nalice:400000:0\n";
        assert_eq!(
            parse_subids(text, Some("alice"), 1000),
            vec![SubRange {
                start: 100000,
                count: 65536
            }]
        );
        assert_eq!(
            parse_subids(text, Some("carol"), 1001),
            vec![SubRange {
                start: 300000,
                count: 10
            }]
        );
        assert!(parse_subids(text, None, 7).is_empty());
    }

    #[test]
    fn coverage_joins_adjacent_ranges() {
        let r = |start, count| SubRange { start, count };
        let allowed = [r(1000, 1), r(100000, 65536), r(165536, 10)];
        assert!(covered(1000, 1, &allowed));
        assert!(covered(100000, 65546, &allowed));
        assert!(!covered(100000, 65547, &allowed));
        assert!(!covered(999, 2, &allowed));
        assert!(!covered(5000, 1, &allowed));
    }
}
