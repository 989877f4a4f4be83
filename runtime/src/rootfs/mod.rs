//! The container's root filesystem: from a directory in the bundle to `/`.
//!
//! Inside its own mount namespace (see [`crate::namespaces`]) the init:
//!
//! 1. stops mount events from flowing back to the host by making `/`
//!    recursively slave (or what `linux.rootfsPropagation` says), see
//!    mount_namespaces(7);
//! 2. bind-mounts the rootfs onto itself, because pivot_root(2) needs a
//!    mount point;
//! 3. mounts everything in `mounts` in order, each destination resolved
//!    inside the rootfs ([`resolve`]), and builds `/dev` ([`devices`]);
//! 4. swaps roots with pivot_root(2) and detaches the old root, so the host's
//!    filesystem is no longer reachable ([`pivot`]);
//! 5. hides or freezes sensitive paths (`maskedPaths`, `readonlyPaths`) and
//!    makes `/` read-only if asked ([`paths`]).

pub mod devices;
pub mod mount;
pub mod ops;
pub mod options;
pub mod paths;
pub mod pivot;
pub mod proc_guard;
pub mod resolve;

use std::fs::File;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use oci_spec::runtime::Spec;

use crate::cgroups::CgroupPaths;

/// Why preparing the container's root filesystem failed.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// A system call (mount(2), mknod(2), an open inside the rootfs...) failed.
    #[error("{op} {path}: {err}")]
    Sys {
        /// What was being done.
        op: &'static str,
        /// The path concerned (inside the container, mostly).
        path: PathBuf,
        /// The error it returned.
        err: nix::Error,
    },
    /// A mount the kernel refuses in a user namespace.
    #[error("{op} {path} (type {typ}): {err}: in a user namespace the kernel refuses mounts that would expose or unlock what the host mounted: a fresh sysfs without a network namespace of its own, cgroup v1 or block filesystems, a non-recursive bind of a directory with mounts under it (use rbind), or clearing nosuid, nodev, noexec or ro where the host set them")]
    InUserns {
        /// The mount's type in the config.
        typ: String,
        /// What was being done.
        op: &'static str,
        /// The mount's destination.
        path: PathBuf,
        /// The error it returned.
        err: nix::Error,
    },
    /// A file operation failed.
    #[error("{op} {path}: {err}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path concerned.
        path: PathBuf,
        /// The underlying error.
        err: std::io::Error,
    },
    /// `linux.rootfsPropagation` is not a propagation name (`rslave`,
    /// `private`...).
    #[error("invalid rootfsPropagation {0:?}")]
    BadPropagation(String),
    /// A mount is refused: a bind mount without a source, `proc` or `sysfs`
    /// on a symlink or non-directory, something else at or inside `/proc`, a
    /// `/dev/null` that is not the null device...
    #[error("mount destination {dest}: {msg}")]
    BadMount {
        /// The mount's destination.
        dest: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// A device is refused: outside `/dev`, of type `a`, reached through a
    /// symlink, or an existing file that is not that device.
    #[error("invalid device {path}: {msg}")]
    BadDevice {
        /// The device's path.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
}

/// The result type of rootfs operations.
pub type Result<T> = std::result::Result<T, RootfsError>;

pub(crate) fn sys_err(
    op: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(nix::Error) -> RootfsError {
    let path = path.into();
    move |err| RootfsError::Sys { op, path, err }
}

/// What the rootfs setup needs to know besides the spec.
pub struct Context<'a> {
    /// The container's config.
    pub spec: &'a Spec,
    /// The rootfs directory (absolute, on the host).
    pub rootfs: &'a Path,
    /// The container's cgroup, for `cgroup` mounts.
    pub cgroups: &'a CgroupPaths,
    /// The container runs in a user namespace: devices are bind-mounted, not made.
    pub in_userns: bool,
    /// The container has its own cgroup namespace.
    pub cgroupns: bool,
    /// Where mount(2) and friends go: the kernel ([`ops::Kernel`]), or a
    /// recorder in tests.
    pub ops: &'a dyn ops::MountOps,
}

/// Steps 1 to 3 (everything before pivot_root). Runs in the container's mount
/// namespace while the host's paths are still visible.
pub fn prepare(ctx: &Context<'_>) -> Result<()> {
    let ops = ctx.ops;
    let linux = ctx.spec.linux().as_ref();
    let propagation = match linux.and_then(|l| l.rootfs_propagation().as_deref()) {
        None | Some("") => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        Some(p) => {
            options::propagation_flag(p).ok_or_else(|| RootfsError::BadPropagation(p.into()))?
        }
    };
    crate::explain!(
        "mount_namespaces(7)",
        "making / {:?} so mounts made for the container never propagate back to the host",
        propagation
    );
    ops.mount(None::<&str>, "/", None::<&str>, propagation, None::<&str>)
        .map_err(sys_err("set propagation of", "/"))?;
    // After a recursive slave or private change (the default is rslave) no
    // mount in this namespace is shared, so the rootfs's parent needs no
    // change and mountinfo need not be read. (After runbindable it must
    // still become private, or the rootfs could not be bind-mounted.)
    let none_shared = propagation.contains(MsFlags::MS_REC)
        && propagation.intersects(MsFlags::MS_SLAVE | MsFlags::MS_PRIVATE);
    if !none_shared {
        make_parent_private(ops, ctx.rootfs)?;
    }
    crate::explain!("mount(2)", "bind-mounting the rootfs {} onto itself: pivot_root(2) needs the new root to be a mount point", ctx.rootfs.display());
    ops.mount(
        Some(ctx.rootfs),
        ctx.rootfs,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(sys_err("bind mount rootfs", ctx.rootfs))?;

    let root = File::open(ctx.rootfs).map_err(|err| RootfsError::Io {
        op: "open rootfs",
        path: ctx.rootfs.into(),
        err,
    })?;
    let mounts = ctx.spec.mounts().as_deref().unwrap_or(&[]);
    for m in mounts {
        mount::mount_one(root.as_fd(), ctx, m)?;
    }
    if devices::runtime_builds_dev(mounts) {
        devices::create_default(ops, root.as_fd(), ctx.in_userns)?;
        devices::create_symlinks(root.as_fd())?;
    }
    let extra = linux.and_then(|l| l.devices().as_deref()).unwrap_or(&[]);
    devices::create_listed(ops, root.as_fd(), extra, ctx.in_userns)?;
    Ok(())
}

/// pivot_root(2) refuses a new root whose parent mount is shared; make the
/// mount that contains the rootfs private (this is within our own mount
/// namespace, the host is untouched).
fn make_parent_private(ops: &dyn ops::MountOps, rootfs: &Path) -> Result<()> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").map_err(|err| RootfsError::Io {
        op: "read",
        path: "/proc/self/mountinfo".into(),
        err,
    })?;
    let mut best: Option<PathBuf> = None;
    for line in text.lines() {
        let Some(mp) = line.split(' ').nth(4) else {
            continue;
        };
        let mp = PathBuf::from(mp.replace("\\040", " "));
        if rootfs.starts_with(&mp)
            && best
                .as_ref()
                .is_none_or(|b| mp.as_os_str().len() > b.as_os_str().len())
        {
            best = Some(mp);
        }
    }
    if let Some(mp) = best {
        ops.mount(
            None::<&str>,
            &mp,
            None::<&str>,
            MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .map_err(sys_err("make private", mp))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The mount calls runc's default spec makes, in order, recorded
    /// rather than made: no root needed, the mount table untouched.
    #[test]
    fn the_default_spec_mounts_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs");
        std::fs::create_dir_all(&rootfs).unwrap();
        let spec = Spec::default();
        let rec = ops::Recorder::default();
        let cgroups = CgroupPaths::default();
        let ctx = Context {
            spec: &spec,
            rootfs: &rootfs,
            cgroups: &cgroups,
            // In a user namespace devices are bind-mounted: recorded too.
            in_userns: true,
            cgroupns: false,
            ops: &rec,
        };
        prepare(&ctx).unwrap();
        let calls = rec.calls.borrow();
        let at = |what: &str| {
            calls
                .iter()
                .position(|c| c.contains(what))
                .unwrap_or_else(|| panic!("no call with {what:?} in {calls:#?}"))
        };
        let r = rootfs.display().to_string();
        assert!(calls[0].starts_with("mount - - / "), "{calls:#?}");
        assert!(calls[0].contains("MS_SLAVE") && calls[0].contains("MS_REC"));
        assert!(
            calls[1].contains(&format!("- {r} {r} ")),
            "rootfs bound onto itself: {calls:#?}"
        );
        // Each filesystem at its place inside the rootfs, in the spec's order.
        let proc = at(&format!("mount proc proc {r}/proc "));
        let dev = at(&format!("mount tmpfs tmpfs {r}/dev "));
        let pts = at(&format!("mount devpts devpts {r}/dev/pts "));
        let sys = at(&format!("mount sysfs sysfs {r}/sys "));
        assert!(proc < dev && dev < pts && pts < sys, "{calls:#?}");
        // The device nodes come after /dev is mounted.
        let null = at(&format!("/dev/null {r}/dev/null "));
        assert!(null > dev, "{calls:#?}");
        assert!(calls[null].contains("MS_BIND"));
        // No mount targets anything outside the rootfs but the first.
        for c in &calls[1..] {
            let target = c.split(' ').nth(3).unwrap();
            assert!(target.starts_with(&r), "outside the rootfs: {c}");
        }
    }
}
