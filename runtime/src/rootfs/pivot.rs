//! Changing the root: pivot_root(2), or chroot(2) with `--no-pivot`.
//!
//! pivot_root moves the current root mount to a directory and makes the
//! container's rootfs the new `/`. The old root is then detached with
//! umount2(2) `MNT_DETACH`, so no path in the container leads back to the
//! host. Using `.` for both arguments (new root and where the old one goes)
//! avoids needing a directory for the old root inside the container; the
//! old root is stacked on top and unmounted straight away.
//!
//! chroot alone would leave the host's mounts reachable (a process with
//! CAP_SYS_CHROOT can escape a chroot), which is why `--no-pivot` exists only
//! for the rare filesystems (ramfs initrds) that pivot_root refuses.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::Path;

use nix::mount::{MntFlags, MsFlags};
use nix::unistd::{chdir, chroot, fchdir};

use super::ops::MountOps;
use super::{sys_err, Result, RootfsError};

/// pivot_root(2) into `rootfs`, then detach the old root so the host's
/// filesystem is unreachable.
pub fn pivot(ops: &dyn MountOps, rootfs: &Path) -> Result<()> {
    crate::explain!(
        "pivot_root(2)",
        "making {} the new / and detaching the host's root so nothing outside stays reachable",
        rootfs.display()
    );
    let io = |op| {
        move |err| RootfsError::Io {
            op,
            path: rootfs.to_path_buf(),
            err,
        }
    };
    let old_root = File::open("/").map_err(io("open old root"))?;
    let new_root = File::open(rootfs).map_err(io("open new root"))?;
    fchdir(new_root.as_fd()).map_err(sys_err("chdir", rootfs))?;
    ops.pivot_root(Path::new("."), Path::new("."))
        .map_err(sys_err("pivot_root", rootfs))?;
    // We are now "below" the old root, which sits on top of ".": go to it,
    // stop unmount events from reaching the host, and detach it.
    fchdir(old_root.as_fd()).map_err(sys_err("chdir", "old root"))?;
    ops.mount(
        None::<&str>,
        ".",
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(sys_err("make old root rslave", "/"))?;
    ops.umount(Path::new("."), MntFlags::MNT_DETACH)
        .map_err(sys_err("unmount old root", "/"))?;
    chdir("/").map_err(sys_err("chdir", "/"))
}

/// No mount namespace: the container shares the host's mounts, and only a
/// chroot(2) keeps its processes' paths inside the rootfs.
pub fn chroot_only(rootfs: &Path) -> Result<()> {
    crate::explain!(
        "chroot(2)",
        "no mount namespace: chrooting into {}",
        rootfs.display()
    );
    chdir(rootfs).map_err(sys_err("chdir", rootfs))?;
    chroot(".").map_err(sys_err("chroot", rootfs))?;
    chdir("/").map_err(sys_err("chdir", "/"))
}

/// `--no-pivot`: move the rootfs mount over `/` and chroot into it.
pub fn move_and_chroot(ops: &dyn MountOps, rootfs: &Path) -> Result<()> {
    crate::explain!(
        "chroot(2)",
        "--no-pivot: moving {} over / and chrooting into it",
        rootfs.display()
    );
    chdir(rootfs).map_err(sys_err("chdir", rootfs))?;
    ops.mount(
        Some(rootfs),
        "/",
        None::<&str>,
        MsFlags::MS_MOVE,
        None::<&str>,
    )
    .map_err(sys_err("move mount", rootfs))?;
    chroot(".").map_err(sys_err("chroot", rootfs))?;
    chdir("/").map_err(sys_err("chdir", "/"))
}
