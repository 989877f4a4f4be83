//! Keeping `/proc` honest: what may be mounted at and under it.
//!
//! The runtime and the kernel trust `/proc` inside the container: security
//! settings are written there (`/proc/self/attr/*` for AppArmor and SELinux,
//! `/proc/sys/*` for sysctls, `/proc/self/oom_score_adj`), masked and
//! read-only paths are applied to it, and tools read process state from it.
//! Two runc advisories show how a rootfs or config can subvert that:
//!
//! - CVE-2019-16884: a bind mount of an ordinary directory over `/proc` (a
//!   "volume") made the runtime write the AppArmor profile into a plain file,
//!   so the container ran unconfined;
//! - CVE-2019-19921: `/proc` in the rootfs replaced by a symlink, so the
//!   fresh procfs was mounted elsewhere and `/proc` pointed at files the
//!   container controls.
//!
//! So, as runc does since: `proc` and `sysfs` are only mounted on an ordinary
//! directory (never through a symlink at the last component); only procfs may
//! be mounted at `/proc`; and nothing may be mounted below `/proc`, except the
//! few files lxcfs emulates (`/proc/meminfo`, `/proc/cpuinfo`...). The check
//! uses the destination as the kernel resolved it (the mount-point descriptor
//! read back through `/proc/self/fd`), so a symlink elsewhere on the path
//! cannot disguise `/proc/sys` as `/data`. Writes to `/proc` during setup
//! also go through verified procfs descriptors (see `init.rs`).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sys::statfs::PROC_SUPER_MAGIC;

use super::resolve::{open_in_root, proc_fd_path};
use super::{Result, RootfsError};

/// Files below `/proc` that may be mounted over (what lxcfs provides).
const LXCFS_FILES: &[&str] = &[
    "/proc/cpuinfo",
    "/proc/diskstats",
    "/proc/meminfo",
    "/proc/stat",
    "/proc/swaps",
    "/proc/uptime",
    "/proc/loadavg",
    "/proc/slabinfo",
    "/proc/net/dev",
    "/proc/sys/kernel/ns_last_pid",
];

fn refuse(dest: &Path, msg: impl Into<String>) -> RootfsError {
    RootfsError::BadMount {
        dest: dest.into(),
        msg: msg.into(),
    }
}

/// `proc` and `sysfs` go on an ordinary directory: refuse a destination whose
/// last component is a symlink or a non-directory in the rootfs.
pub fn check_pseudo_fs_target(root: BorrowedFd<'_>, dest: &Path, typ: &str) -> Result<()> {
    if !matches!(typ, "proc" | "sysfs") {
        return Ok(());
    }
    let Ok(fd) = open_in_root(root, dest, OFlag::O_PATH | OFlag::O_NOFOLLOW) else {
        return Ok(()); // missing: created as a directory by the caller
    };
    let st = nix::sys::stat::fstat(&fd).map_err(super::sys_err("stat", dest))?;
    match st.st_mode & libc::S_IFMT {
        libc::S_IFDIR => Ok(()),
        libc::S_IFLNK => Err(refuse(
            dest,
            format!("is a symlink in the rootfs: {typ} must be mounted on an ordinary directory"),
        )),
        _ => Err(refuse(
            dest,
            format!("is not a directory: {typ} must be mounted on an ordinary directory"),
        )),
    }
}

/// Where `target` (a mount point descriptor) is, as a path inside `root`.
fn path_in_root(root: BorrowedFd<'_>, target: &impl AsRawFd) -> Option<PathBuf> {
    let root = std::fs::read_link(proc_fd_path(&root.as_raw_fd())).ok()?;
    let at = std::fs::read_link(proc_fd_path(target)).ok()?;
    let rel = at.strip_prefix(&root).ok()?;
    Some(Path::new("/").join(rel))
}

/// Refuse a mount at or below `/proc` that is not procfs itself or one of the
/// lxcfs files. `target` is the resolved mount point, `source` the bind
/// source (None for a new filesystem of type `typ`).
pub fn check_proc_destination(
    root: BorrowedFd<'_>,
    dest: &Path,
    target: &impl AsRawFd,
    typ: &str,
    source: Option<&Path>,
) -> Result<()> {
    let Some(at) = path_in_root(root, target) else {
        return Ok(());
    };
    let Ok(below) = at.strip_prefix("/proc") else {
        return Ok(());
    };
    if below.as_os_str().is_empty() {
        let is_proc = match source {
            None => typ == "proc",
            Some(src) => {
                nix::sys::statfs::statfs(src).is_ok_and(|s| s.filesystem_type() == PROC_SUPER_MAGIC)
            }
        };
        return if is_proc {
            Ok(())
        } else {
            Err(refuse(dest, "only procfs may be mounted at /proc"))
        };
    }
    if LXCFS_FILES.iter().any(|f| Path::new(f) == at) {
        return Ok(());
    }
    Err(refuse(
        dest,
        format!(
            "resolves to {} inside /proc, where nothing may be mounted",
            at.display()
        ),
    ))
}

/// Open `/proc` and make sure it is a procfs (fstatfs(2) `PROC_SUPER_MAGIC`),
/// for writes that must reach the kernel and nothing else.
pub fn open_verified_proc() -> std::io::Result<std::fs::File> {
    let proc = std::fs::File::open("/proc")?;
    let fs = nix::sys::statfs::fstatfs(proc.as_fd())?;
    if fs.filesystem_type() != PROC_SUPER_MAGIC {
        return Err(std::io::Error::other("/proc is not procfs"));
    }
    Ok(proc)
}
