//! After the root is changed: masked paths, read-only paths, a read-only
//! root, and the root's final propagation.
//!
//! `maskedPaths` hide kernel interfaces the container must not read
//! (`/proc/kcore`, `/sys/firmware`...): a file is covered by a bind mount of
//! `/dev/null`, a directory by an empty read-only tmpfs. `readonlyPaths`
//! (`/proc/sys`, `/proc/sysrq-trigger`...) are bind-mounted onto themselves
//! and remounted read-only. Every path is opened inside the container's root
//! first and the mount made on that descriptor, and `/dev/null` is checked to
//! really be the null device, so a symlink planted in the rootfs cannot
//! redirect a mount (the 2025 runc advisories).

use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::MsFlags;

use super::mount::statvfs_flags;
use super::ops::MountOps;
use super::resolve::{open_in_root, proc_fd_path};
use super::{sys_err, Result, RootfsError};

fn open_path(root: &File, path: &str) -> Result<Option<std::os::fd::OwnedFd>> {
    match open_in_root(
        root.as_fd(),
        Path::new(path),
        OFlag::O_PATH | OFlag::O_NOFOLLOW,
    ) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::ENOENT) => Ok(None),
        Err(err) => Err(RootfsError::Sys {
            op: "open",
            path: path.into(),
            err,
        }),
    }
}

/// Open the container's /dev/null and check it is the real null device (1:3).
fn verified_dev_null(root: &File) -> Result<File> {
    let fd = open_in_root(
        root.as_fd(),
        Path::new("/dev/null"),
        OFlag::O_PATH | OFlag::O_NOFOLLOW,
    )
    .map_err(sys_err("open", "/dev/null"))?;
    let f = File::from(fd);
    let meta = f.metadata().map_err(|err| RootfsError::Io {
        op: "stat",
        path: "/dev/null".into(),
        err,
    })?;
    let rdev = meta.rdev();
    if !meta.file_type().is_char_device()
        || nix::sys::stat::major(rdev) != 1
        || nix::sys::stat::minor(rdev) != 3
    {
        return Err(RootfsError::BadMount {
            dest: "/dev/null".into(),
            msg: "is not the null device (1:3)".into(),
        });
    }
    Ok(f)
}

/// The container's `/`, after pivot_root.
fn open_root() -> Result<File> {
    File::open("/").map_err(|err| RootfsError::Io {
        op: "open",
        path: "/".into(),
        err,
    })
}

/// `maskedPaths`: cover each existing path with an empty read-only tmpfs (a
/// directory) or a bind mount of the verified `/dev/null` (a file).
pub fn mask(ops: &dyn MountOps, paths: &[String]) -> Result<()> {
    if paths.is_empty() {
        return Ok(());
    }
    let root = open_root()?;
    let null = verified_dev_null(&root)?;
    for p in paths {
        let Some(fd) = open_path(&root, p)? else {
            continue;
        };
        let is_dir = File::from(fd.try_clone().map_err(|e| RootfsError::Io {
            op: "dup",
            path: p.into(),
            err: e,
        })?)
        .metadata()
        .map(|m| m.is_dir())
        .unwrap_or(false);
        crate::explain!("mount(2)", "masking {p} so the container cannot read it");
        let target = proc_fd_path(&fd);
        if is_dir {
            ops.mount(
                Some("tmpfs"),
                target.as_str(),
                Some("tmpfs"),
                MsFlags::MS_RDONLY,
                None::<&str>,
            )
            .map_err(sys_err("mask", p.as_str()))?;
        } else {
            ops.mount(
                Some(proc_fd_path(&null).as_str()),
                target.as_str(),
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(sys_err("mask", p.as_str()))?;
        }
    }
    Ok(())
}

/// `readonlyPaths`: bind-mount each existing path onto itself and remount
/// it read-only.
pub fn make_readonly(ops: &dyn MountOps, paths: &[String]) -> Result<()> {
    if paths.is_empty() {
        return Ok(());
    }
    let root = open_root()?;
    for p in paths {
        let Some(fd) = open_path(&root, p)? else {
            continue;
        };
        crate::explain!(
            "mount(2)",
            "making {p} read-only with a bind mount onto itself"
        );
        let target = proc_fd_path(&fd);
        ops.mount(
            Some(target.as_str()),
            target.as_str(),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(sys_err("bind mount", p.as_str()))?;
        let mounted = open_in_root(
            root.as_fd(),
            Path::new(p),
            OFlag::O_PATH | OFlag::O_NOFOLLOW,
        )
        .map_err(sys_err("open", p.as_str()))?;
        let keep = statvfs_flags(&mounted);
        ops.mount(
            None::<&str>,
            proc_fd_path(&mounted).as_str(),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | keep,
            None::<&str>,
        )
        .map_err(sys_err("remount read-only", p.as_str()))?;
    }
    Ok(())
}

/// `root.readonly`: remount `/` read-only, keeping its other flags.
pub fn root_readonly(ops: &dyn MountOps) -> Result<()> {
    crate::explain!("mount(2)", "remounting / read-only (root.readonly)");
    let root = open_root()?;
    let keep = statvfs_flags(&root);
    ops.mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | keep,
        None::<&str>,
    )
    .map_err(sys_err("remount read-only", "/"))
}

/// Apply `rootfsPropagation` to the new root, as the spec asks once it is `/`.
pub fn root_propagation(ops: &dyn MountOps, prop: Option<&str>) -> Result<()> {
    let Some(p) = prop.filter(|p| !p.is_empty()) else {
        return Ok(());
    };
    let flag =
        super::options::propagation_flag(p).ok_or_else(|| RootfsError::BadPropagation(p.into()))?;
    ops.mount(None::<&str>, "/", None::<&str>, flag, None::<&str>)
        .map_err(sys_err("set propagation of", "/"))
}
