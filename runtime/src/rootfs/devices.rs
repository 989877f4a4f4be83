//! `/dev` inside the container.
//!
//! When the container's `/dev` is a fresh tmpfs (the usual case), the
//! runtime fills it with the few device nodes every program expects (null,
//! zero, full, random, urandom, tty), the symlinks a shell expects
//! (`/dev/fd`, `/dev/stdin`...), `/dev/ptmx` pointing into the container's
//! own devpts, and the nodes listed in `linux.devices`. Device nodes are made
//! with mknod(2); inside a user namespace that is not allowed, so the host's
//! node is bind-mounted instead. Whether the container may *open* a node is
//! decided separately, by the devices cgroup (see [`crate::cgroups`]).

use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::MsFlags;
use nix::sys::stat::{fchmodat, makedev, mknodat, FchmodatFlags, Mode, SFlag};
use nix::unistd::{fchownat, symlinkat, Gid, Uid};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Mount};

use super::ops::MountOps;
use super::resolve::{create_own_file_in_root, mkdir_all_in_root, proc_fd_path};
use super::{sys_err, Result, RootfsError};

struct Dev {
    path: &'static str,
    major: u64,
    minor: u64,
}

const DEFAULT_DEVICES: &[Dev] = &[
    Dev {
        path: "/dev/null",
        major: 1,
        minor: 3,
    },
    Dev {
        path: "/dev/zero",
        major: 1,
        minor: 5,
    },
    Dev {
        path: "/dev/full",
        major: 1,
        minor: 7,
    },
    Dev {
        path: "/dev/random",
        major: 1,
        minor: 8,
    },
    Dev {
        path: "/dev/urandom",
        major: 1,
        minor: 9,
    },
    Dev {
        path: "/dev/tty",
        major: 5,
        minor: 0,
    },
];

/// The runtime builds `/dev` unless the spec bind-mounts one from elsewhere.
pub fn runtime_builds_dev(mounts: &[Mount]) -> bool {
    !mounts.iter().any(|m| {
        m.destination() == Path::new("/dev")
            && (m.typ().as_deref() == Some("bind")
                || m.options()
                    .as_deref()
                    .unwrap_or(&[])
                    .iter()
                    .any(|o| o == "bind" || o == "rbind"))
    })
}

/// Create `/dev/null`, `zero`, `full`, `random`, `urandom` and `tty` under
/// `root` (bind-mounted from the host in a user namespace).
pub fn create_default(ops: &dyn MountOps, root: BorrowedFd<'_>, in_userns: bool) -> Result<()> {
    if in_userns {
        crate::explain!(
            "mount(2)",
            "bind-mounting the host's /dev/null, zero, full, random, urandom and tty into the container's /dev: mknod(2) of a device needs CAP_MKNOD in the host's user namespace, which a user namespace cannot give"
        );
    } else {
        crate::explain!(
            "mknod(2)",
            "creating /dev/null, zero, full, random, urandom and tty in the container's /dev"
        );
    }
    for d in DEFAULT_DEVICES {
        make_node(
            ops,
            root,
            Path::new(d.path),
            SFlag::S_IFCHR,
            d.major,
            d.minor,
            0o666,
            0,
            0,
            in_userns,
        )?;
    }
    Ok(())
}

/// Create the spec's `linux.devices` under `root` (bind-mounted from the
/// host in a user namespace); each must be under `/dev`.
pub fn create_listed(
    ops: &dyn MountOps,
    root: BorrowedFd<'_>,
    devices: &[LinuxDevice],
    in_userns: bool,
) -> Result<()> {
    for d in devices {
        let path = d.path();
        if !path.starts_with("/dev") {
            return Err(RootfsError::BadDevice {
                path: path.clone(),
                msg: "device paths must be under /dev".into(),
            });
        }
        let kind = match d.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
            LinuxDeviceType::B => SFlag::S_IFBLK,
            LinuxDeviceType::P => SFlag::S_IFIFO,
            LinuxDeviceType::A => {
                return Err(RootfsError::BadDevice {
                    path: path.clone(),
                    msg: "type \"a\" is only valid in device cgroup rules".into(),
                })
            }
        };
        let mode = d.file_mode().unwrap_or(0o666);
        make_node(
            ops,
            root,
            path,
            kind,
            d.major() as u64,
            d.minor() as u64,
            mode,
            d.uid().unwrap_or(0),
            d.gid().unwrap_or(0),
            in_userns,
        )?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn make_node(
    ops: &dyn MountOps,
    root: BorrowedFd<'_>,
    path: &Path,
    kind: SFlag,
    major: u64,
    minor: u64,
    mode: u32,
    uid: u32,
    gid: u32,
    in_userns: bool,
) -> Result<()> {
    if in_userns {
        // mknod is not allowed in a user namespace: bind the host's node.
        let target = create_own_file_in_root(root, path).map_err(|err| match err {
            Errno::ELOOP => RootfsError::BadDevice {
                path: path.into(),
                msg: "is a symlink in the rootfs: refusing to mount the device through it".into(),
            },
            err => RootfsError::Sys {
                op: "create",
                path: path.into(),
                err,
            },
        })?;
        return ops
            .mount(
                Some(path),
                proc_fd_path(&target).as_str(),
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(sys_err("bind mount device", path));
    }
    let parent_path = path.parent().unwrap_or(Path::new("/dev"));
    let name = path.file_name().ok_or_else(|| RootfsError::BadDevice {
        path: path.into(),
        msg: "no file name".into(),
    })?;
    let parent = mkdir_all_in_root(root, parent_path, Mode::from_bits_truncate(0o755))
        .map_err(sys_err("create", parent_path))?;
    match mknodat(
        parent.as_fd(),
        name,
        kind,
        Mode::from_bits_truncate(mode),
        makedev(major, minor),
    ) {
        Ok(()) => {}
        // Already there (a rootfs with its own /dev): keep it only if it is
        // that very device, never a symlink or file planted in its place.
        Err(Errno::EEXIST) => {
            return check_existing(parent.as_fd(), name, path, kind, major, minor)
        }
        Err(err) => {
            return Err(RootfsError::Sys {
                op: "mknod",
                path: path.into(),
                err,
            })
        }
    }
    // mknod's mode is filtered by the umask; set it exactly, then the owner.
    fchmodat(
        parent.as_fd(),
        name,
        Mode::from_bits_truncate(mode),
        FchmodatFlags::NoFollowSymlink,
    )
    .or_else(|e| {
        if e == Errno::EOPNOTSUPP {
            fchmodat(
                parent.as_fd(),
                name,
                Mode::from_bits_truncate(mode),
                FchmodatFlags::FollowSymlink,
            )
        } else {
            Err(e)
        }
    })
    .map_err(sys_err("chmod", path))?;
    fchownat(
        parent.as_fd(),
        name,
        Some(Uid::from_raw(uid)),
        Some(Gid::from_raw(gid)),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(sys_err("chown", path))
}

fn check_existing(
    parent: BorrowedFd<'_>,
    name: &std::ffi::OsStr,
    path: &Path,
    kind: SFlag,
    major: u64,
    minor: u64,
) -> Result<()> {
    let st = nix::sys::stat::fstatat(parent, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
        .map_err(sys_err("stat", path))?;
    let same = st.st_mode & libc::S_IFMT == kind.bits()
        && nix::sys::stat::major(st.st_rdev) == major
        && nix::sys::stat::minor(st.st_rdev) == minor;
    if same {
        return Ok(());
    }
    Err(RootfsError::BadDevice {
        path: path.into(),
        msg: format!("exists in the rootfs but is not the device {major}:{minor}"),
    })
}

/// `/dev/fd`, `/dev/std{in,out,err}`, `/dev/core` and `/dev/ptmx`.
pub fn create_symlinks(root: BorrowedFd<'_>) -> Result<()> {
    let dev = mkdir_all_in_root(root, Path::new("/dev"), Mode::from_bits_truncate(0o755))
        .map_err(sys_err("create", "/dev"))?;
    let mut links: Vec<(&str, &str)> = vec![
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
    ];
    if Path::new("/proc/kcore").exists() {
        links.push(("/proc/kcore", "core"));
    }
    for (target, name) in links {
        match symlinkat(target, dev.as_fd(), name) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(err) => {
                return Err(RootfsError::Sys {
                    op: "symlink",
                    path: PathBuf::from("/dev").join(name),
                    err,
                })
            }
        }
    }
    // /dev/ptmx must lead to the container's own devpts instance.
    match nix::unistd::unlinkat(dev.as_fd(), "ptmx", nix::unistd::UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => {}
        Err(err) => {
            return Err(RootfsError::Sys {
                op: "remove",
                path: "/dev/ptmx".into(),
                err,
            })
        }
    }
    symlinkat("pts/ptmx", dev.as_fd(), "ptmx").map_err(sys_err("symlink", "/dev/ptmx"))
}
