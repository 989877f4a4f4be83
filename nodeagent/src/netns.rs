//! A pod's network namespace, created and pinned before any process runs in it.
//!
//! A network namespace (network_namespaces(7)) disappears with its last
//! process, unless something keeps a reference: an open fd, or its
//! `/proc/<tid>/ns/net` file bind-mounted somewhere, which is what
//! `ip netns add` does under /run/netns. Pinning the namespace first lets
//! the CNI plugins wire it (they take a path, `CNI_NETNS`) before the
//! pod's pause process joins it, and lets teardown run CNI DEL even after
//! every process of the pod is gone.
//!
//! `unshare(CLONE_NEWNET)` changes only the calling thread, so the new
//! namespace is made on a short-lived thread and the agent's own network
//! namespace never changes.
//!
//! A new namespace has one interface, `lo`, and it is down: nothing in the
//! pod could reach 127.0.0.1. The same thread sets it up while it is inside
//! (netdevice(7): `SIOCSIFFLAGS` with `IFF_UP` on any socket of the
//! namespace; the kernel then gives it 127.0.0.1/8 and ::1 itself). CNI
//! has a plugin for this, `loopback`, which containerd runs beside the
//! pod's network; but it is a separate program (a Go binary) started for
//! every pod to flip one flag, and it competes for the CPU with the
//! network's own plugins and the pause container. containerd 2.0 can do
//! the same in-process (`use_internal_loopback`), as Skiff always does.

use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};

/// Why a network namespace cannot be made, pinned or removed.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// The pin file, or its directory, cannot be made.
    #[error("create network namespace file {path}: {err}")]
    File {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        err: std::io::Error,
    },
    /// unshare(2) of a new network namespace failed.
    #[error("unshare a network namespace: {0}")]
    Unshare(nix::Error),
    /// The new namespace's `lo` cannot be set up.
    #[error("set lo up in the new network namespace: {0}")]
    Loopback(std::io::Error),
    /// The bind mount that pins the namespace failed.
    #[error("pin network namespace at {path}: {err}")]
    Pin {
        /// Where it was to be pinned.
        path: PathBuf,
        /// The mount(2) error.
        err: nix::Error,
    },
    /// The pin cannot be unmounted.
    #[error("remove network namespace {path}: {err}")]
    Remove {
        /// The pin.
        path: PathBuf,
        /// The umount2(2) error.
        err: nix::Error,
    },
}

/// Make a new network namespace and bind it to `path` (a new empty file).
/// A pin left at `path` by an agent killed half-way is removed first.
pub fn create(path: &Path) -> Result<(), NetnsError> {
    if path.exists() {
        remove(path)?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|err| NetnsError::File {
            path: dir.to_path_buf(),
            err,
        })?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|err| NetnsError::File {
            path: path.to_path_buf(),
            err,
        })?;
    let target = path.to_path_buf();
    let pinned = std::thread::spawn(move || -> Result<(), NetnsError> {
        unshare(CloneFlags::CLONE_NEWNET).map_err(NetnsError::Unshare)?;
        loopback_up().map_err(NetnsError::Loopback)?;
        mount(
            Some("/proc/thread-self/ns/net"),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|err| NetnsError::Pin {
            path: target.clone(),
            err,
        })
    })
    .join()
    .unwrap_or(Err(NetnsError::Unshare(nix::Error::EINVAL)));
    if pinned.is_err() {
        let _ = std::fs::remove_file(path);
    }
    pinned
}

/// Set `lo` up in the calling thread's network namespace: read its flags
/// and write them back with `IFF_UP` (netdevice(7)).
fn loopback_up() -> std::io::Result<()> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    // SAFETY: socket(2) takes no pointers; the descriptor it returns is
    // owned from here on.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor to us.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain data (a name and a union of integers), valid
    // when zeroed.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the NUL-terminated name from `req` and
    // writes the flags into it; `req` outlives the call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFFLAGS filled the union's flags member, read here.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: SIOCSIFFLAGS reads the name and flags from `req` only.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Unpin and remove; a namespace that is already gone is fine.
pub fn remove(path: &Path) -> Result<(), NetnsError> {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
        Err(err) => {
            return Err(NetnsError::Remove {
                path: path.to_path_buf(),
                err,
            })
        }
    }
    let _ = std::fs::remove_file(path);
    Ok(())
}
