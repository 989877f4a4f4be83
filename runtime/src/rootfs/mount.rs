//! Mounting one entry of config.json's `mounts` (see mount(2) and the
//! runtime spec's config.md "Mounts").
//!
//! Filesystems (`proc`, `sysfs`, `tmpfs`, `devpts`, `mqueue`...) are created
//! fresh; `bind`/`rbind` entries make an existing host directory or file
//! appear inside. A bind mount ignores most flags on the first call, so
//! read-only and friends need a second "remount" call, and propagation
//! (`rprivate`, `shared`...) a third. The `cgroup` type is special: it builds
//! the whole `/sys/fs/cgroup` tree the container sees.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::MsFlags;
use nix::sys::stat::Mode;
use oci_spec::runtime::Mount;

use super::ops::MountOps;
use super::options::{self, MountOptions};
use super::proc_guard;
use super::resolve::{create_file_in_root, mkdir_all_in_root, open_in_root, proc_fd_path};
use super::{sys_err, Context, Result, RootfsError};

const DIR_MODE: u32 = 0o755;

/// Mount one entry of `mounts` at its destination inside `root`: a bind
/// mount, a `cgroup` tree, or a fresh filesystem, then its propagation.
pub fn mount_one(root: BorrowedFd<'_>, ctx: &Context<'_>, m: &Mount) -> Result<()> {
    match mount_entry(root, ctx, m) {
        Err(RootfsError::Sys { op, path, err })
            if ctx.in_userns && matches!(err, Errno::EPERM | Errno::EINVAL) =>
        {
            Err(RootfsError::InUserns {
                typ: m.typ().clone().unwrap_or_else(|| "none".into()),
                op,
                path,
                err,
            })
        }
        other => other,
    }
}

fn mount_entry(root: BorrowedFd<'_>, ctx: &Context<'_>, m: &Mount) -> Result<()> {
    let ops = ctx.ops;
    let dest = m.destination();
    let typ = m.typ().as_deref().unwrap_or("none");
    let opts = options::parse(m.options().as_deref().unwrap_or(&[]));
    if typ == "cgroup" {
        return mount_cgroup(root, ctx, dest, &opts);
    }
    if opts.is_bind() {
        return mount_bind(root, ctx, m, &opts);
    }
    proc_guard::check_pseudo_fs_target(root, dest, typ)?;
    let target = mkdir_all_in_root(root, dest, Mode::from_bits_truncate(DIR_MODE))
        .map_err(sys_err("create mount point", dest))?;
    proc_guard::check_proc_destination(root, dest, &target, typ, None)?;
    let source = m
        .source()
        .as_ref()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| typ.to_string());
    let data = opts.data_string();
    crate::explain!(
        "mount(2)",
        "mounting {typ} at {} (source {source}, options {:?})",
        dest.display(),
        m.options().as_deref().unwrap_or(&[])
    );
    let result = ops.mount(
        Some(source.as_str()),
        proc_fd_path(&target).as_str(),
        Some(typ),
        opts.flags,
        if data.is_empty() {
            None
        } else {
            Some(data.as_str())
        },
    );
    match (result, typ) {
        (Ok(()), _) => {}
        // sysfs and mqueue cannot be mounted fresh from a user namespace that
        // does not own the network / ipc namespace: bind the host's instead.
        (Err(Errno::EPERM), "sysfs") if ctx.in_userns => {
            bind_host(ops, Path::new("/sys"), &target, &opts, dest)?;
        }
        (Err(Errno::EPERM), "mqueue") if ctx.in_userns => {
            bind_host(ops, Path::new("/dev/mqueue"), &target, &opts, dest)?;
        }
        (Err(err), _) => {
            return Err(RootfsError::Sys {
                op: "mount",
                path: dest.to_path_buf(),
                err,
            });
        }
    }
    apply_propagation(ops, root, dest, &opts)
}

fn bind_host(
    ops: &dyn MountOps,
    src: &Path,
    target: &OwnedFd,
    opts: &MountOptions,
    dest: &Path,
) -> Result<()> {
    ops.mount(
        Some(src),
        proc_fd_path(target).as_str(),
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(sys_err("bind mount", dest))?;
    remount_bind(ops, target, opts.flags, dest)
}

fn mount_bind(
    root: BorrowedFd<'_>,
    ctx: &Context<'_>,
    m: &Mount,
    opts: &MountOptions,
) -> Result<()> {
    let ops = ctx.ops;
    let dest = m.destination();
    let Some(source) = m.source() else {
        return Err(RootfsError::BadMount {
            dest: dest.into(),
            msg: "bind mount without a source".into(),
        });
    };
    let meta = std::fs::metadata(source).map_err(|err| RootfsError::Io {
        op: "stat bind mount source",
        path: source.clone(),
        err,
    })?;
    let target = if meta.is_dir() {
        mkdir_all_in_root(root, dest, Mode::from_bits_truncate(DIR_MODE))
    } else {
        create_file_in_root(root, dest)
    }
    .map_err(sys_err("create mount point", dest))?;
    proc_guard::check_proc_destination(root, dest, &target, "bind", Some(source))?;
    crate::explain!(
        "mount(2)",
        "bind-mounting host path {} at {} so the container sees the same files",
        source.display(),
        dest.display()
    );
    let rec = opts.flags & MsFlags::MS_REC;
    ops.mount(
        Some(source.as_path()),
        proc_fd_path(&target).as_str(),
        None::<&str>,
        MsFlags::MS_BIND | rec,
        None::<&str>,
    )
    .map_err(sys_err("bind mount", dest))?;
    let extra = opts.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT);
    if !extra.is_empty() {
        // Look the destination up again: the old fd is the directory under the new mount.
        let mounted =
            open_in_root(root, dest, OFlag::O_PATH).map_err(sys_err("open mount point", dest))?;
        remount_bind(ops, &mounted, opts.flags, dest)?;
    }
    apply_propagation(ops, root, dest, opts)
}

/// Second mount call for a bind mount: set flags like `ro`, `nosuid`.
/// Flags the kernel has locked on the source (from a less privileged mount
/// namespace) are kept, or the remount would fail with EPERM.
fn remount_bind(ops: &dyn MountOps, target: &OwnedFd, flags: MsFlags, dest: &Path) -> Result<()> {
    let locked = statvfs_flags(target);
    let want = (flags & !(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT)) | locked;
    ops.mount(
        None::<&str>,
        proc_fd_path(target).as_str(),
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | want,
        None::<&str>,
    )
    .map_err(sys_err("remount", dest))
}

/// The mount flags that apply to `fd`'s mount, from fstatvfs(3).
pub(crate) fn statvfs_flags(fd: &impl AsFd) -> MsFlags {
    use nix::sys::statvfs::{fstatvfs, FsFlags};
    let Ok(st) = fstatvfs(fd) else {
        return MsFlags::empty();
    };
    let f = st.flags();
    let mut out = MsFlags::empty();
    for (from, to) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        // ST_RELATIME (statvfs(3)); nix names it for glibc targets only.
        (FsFlags::from_bits_retain(0x1000), MsFlags::MS_RELATIME),
    ] {
        if f.contains(from) {
            out |= to;
        }
    }
    out
}

fn apply_propagation(
    ops: &dyn MountOps,
    root: BorrowedFd<'_>,
    dest: &Path,
    opts: &MountOptions,
) -> Result<()> {
    if opts.propagation.is_empty() {
        return Ok(());
    }
    let fd = open_in_root(root, dest, OFlag::O_PATH).map_err(sys_err("open mount point", dest))?;
    for p in &opts.propagation {
        ops.mount(
            None::<&str>,
            proc_fd_path(&fd).as_str(),
            None::<&str>,
            *p,
            None::<&str>,
        )
        .map_err(sys_err("set propagation of", dest))?;
    }
    Ok(())
}

/// Build the container's view of the cgroup filesystem at `dest`.
///
/// On a v1 or hybrid host that is a tmpfs with one directory per hierarchy:
/// with a cgroup namespace each is a fresh cgroup mount (which shows the
/// container's cgroup as its root); without one, each is a bind mount of the
/// container's own cgroup directory. On a v2 host it is a single cgroup2
/// mount. `ro` is applied last, when everything is in place.
fn mount_cgroup(
    root: BorrowedFd<'_>,
    ctx: &Context<'_>,
    dest: &Path,
    opts: &MountOptions,
) -> Result<()> {
    let ops = ctx.ops;
    let mode = Mode::from_bits_truncate(DIR_MODE);
    let target =
        mkdir_all_in_root(root, dest, mode).map_err(sys_err("create mount point", dest))?;
    let base = opts.flags
        & (MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_RELATIME);
    if ctx.cgroups.is_v2() {
        crate::explain!("cgroups(7)", "mounting cgroup2 at {}", dest.display());
        let r = ops.mount(
            Some("cgroup2"),
            proc_fd_path(&target).as_str(),
            Some("cgroup2"),
            opts.flags,
            None::<&str>,
        );
        match r {
            Ok(()) => return Ok(()),
            Err(Errno::EPERM) | Err(Errno::EBUSY) => {
                let Some(dir) = ctx.cgroups.unified() else {
                    // Rootless without a cgroup of its own: nothing of the
                    // host's tree to show, so it is covered (runc's mask).
                    crate::explain!("mount(2)", "covering {} with an empty read-only tmpfs: the container has no cgroup of its own to show, and cgroup2 cannot be mounted without a cgroup namespace", dest.display());
                    return ops
                        .mount(
                            Some("tmpfs"),
                            proc_fd_path(&target).as_str(),
                            Some("tmpfs"),
                            MsFlags::MS_RDONLY,
                            None::<&str>,
                        )
                        .map_err(sys_err("mask", dest));
                };
                return bind_host(ops, dir, &target, opts, dest);
            }
            Err(err) => {
                return Err(RootfsError::Sys {
                    op: "mount cgroup2",
                    path: dest.into(),
                    err,
                })
            }
        }
    }
    crate::explain!(
        "cgroups(7)",
        "building /sys/fs/cgroup: a tmpfs with one directory per v1 hierarchy"
    );
    ops.mount(
        Some("tmpfs"),
        proc_fd_path(&target).as_str(),
        Some("tmpfs"),
        base,
        Some("mode=755"),
    )
    .map_err(sys_err("mount tmpfs for cgroups at", dest))?;
    let tmpfs = open_in_root(root, dest, OFlag::O_PATH | OFlag::O_DIRECTORY)
        .map_err(sys_err("open", dest))?;
    for (key, host_dir) in &ctx.cgroups.paths {
        if key.is_empty() {
            // The hybrid host's cgroup2 tree is left out, as runc does: on
            // such hosts containers see the v1 layout only.
            continue;
        }
        let hierarchy = crate::cgroups::hierarchy_mount_point(host_dir, key);
        let Some(name) = hierarchy.as_deref().and_then(Path::file_name) else {
            continue;
        };
        let sub = dest.join(name);
        let sub_fd =
            mkdir_all_in_root(root, &sub, mode).map_err(sys_err("create mount point", &sub))?;
        let flags = base | (opts.flags & MsFlags::MS_RDONLY);
        if ctx.cgroupns {
            let (fstype, data) = if key.is_empty() {
                ("cgroup2", String::new())
            } else {
                // A named hierarchy with no controllers needs "none", or the
                // kernel would try to attach every controller to it.
                let data = if key.split(',').all(|c| c.starts_with("name=")) {
                    format!("none,{key}")
                } else {
                    key.clone()
                };
                ("cgroup", data)
            };
            ops.mount(
                Some("cgroup"),
                proc_fd_path(&sub_fd).as_str(),
                Some(fstype),
                flags,
                if data.is_empty() {
                    None
                } else {
                    Some(data.as_str())
                },
            )
            .map_err(sys_err("mount cgroup", &sub))?;
        } else {
            ops.mount(
                Some(host_dir.as_path()),
                proc_fd_path(&sub_fd).as_str(),
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(sys_err("bind mount cgroup", &sub))?;
            let mounted = open_in_root(root, &sub, OFlag::O_PATH).map_err(sys_err("open", &sub))?;
            remount_bind(ops, &mounted, flags, &sub)?;
        }
        // Co-mounted controllers (cpu,cpuacct) also get a link per name.
        if key.contains(',') {
            for c in key.split(',') {
                let _ = nix::unistd::symlinkat(name, tmpfs.as_fd(), c);
            }
        }
    }
    // `ro` applies to each hierarchy's mount; the tmpfs holding them stays
    // writable, exactly as runc leaves it (its mount points are all taken).
    Ok(())
}
