//! Re-executing from a copy of ourselves that cannot be written (runc
//! CVE-2019-5736).
//!
//! The container's init is forked from the runtime, so until it execs the
//! user's program its `/proc/self/exe` is the runtime binary on the host. A
//! malicious image can make the container exec `/proc/self/exe` (say, with
//! `#!/proc/self/exe` as the interpreter of its `/bin/sh`), then reopen that
//! file for writing from inside and overwrite the host's runtime binary.
//!
//! The defence: before `create`, `run` or `exec` does anything, the runtime
//! re-executes itself (execveat(2)) from a file that cannot be written, so
//! that from then on `/proc/self/exe` is read-only whatever the container
//! does. This is the one re-exec the runtime does. Two ways, cheapest first:
//!
//! 1. a *detached read-only bind mount* of the binary: open_tree(2) with
//!    `OPEN_TREE_CLONE` makes a private mount of just that file, attached to
//!    no mount namespace (so no mount events anywhere), and mount_setattr(2)
//!    makes it `MOUNT_ATTR_RDONLY`. Reopening `/proc/PID/exe` for writing
//!    then fails with `EROFS`. Three system calls, nothing copied.
//! 2. on kernels without the new mount API (before 5.12): copy the binary
//!    into a memfd (memfd_create(2)) and seal it against any change
//!    (`F_SEAL_WRITE`, `F_SEAL_GROW`, `F_SEAL_SHRINK`, `F_SEAL_SEAL`, see
//!    fcntl(2)).
//!
//! A binary that already runs from a read-only mount or a sealed memfd needs
//! neither.
//!
//! Without root (see `rootless`) neither open_tree(2) nor a mount is allowed,
//! so runc copies itself into a memfd every time: 4 MB copied, and a binary
//! whose pages are no longer shared with the page cache, on every `run`.
//! But the attack needs *write permission* on the binary, and a rootless
//! container has no more than its user: the ids it maps are the user's own
//! and the user's subordinate ones, and capabilities inside a user namespace
//! never reach an inode whose owner is not mapped there (user_namespaces(7),
//! "Interaction of user namespaces and other types of namespaces", and
//! `capable_wrt_inode_uidgid` in the kernel). So when the binary is owned by
//! the host's root (or by an id not mapped in our user namespace at all),
//! has no group or other write bit and no ACL, no process this runtime can
//! start may ever write it, and the re-exec is skipped. A binary the user
//! could write (a copy in their home) is still copied and sealed.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;

use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};
use nix::sys::statvfs::{fstatvfs, FsFlags};

/// Why the runtime could not re-execute from a protected copy of itself.
#[derive(Debug, thiserror::Error)]
pub enum ClonedBinaryError {
    /// `/proc/self/exe` cannot be opened for copying.
    #[error("open /proc/self/exe: {0}")]
    Open(std::io::Error),
    /// Copying the binary into the memfd failed.
    #[error("copy runtime binary into memfd: {0}")]
    Copy(std::io::Error),
    /// A system call failed: memfd_create(2), sealing the memfd, or the
    /// re-execution itself.
    #[error("{op}: {err}")]
    Sys {
        /// The step that failed.
        op: &'static str,
        /// The error it returned.
        err: nix::Error,
    },
}

fn required_seals() -> SealFlag {
    SealFlag::F_SEAL_SEAL | SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_WRITE
}

/// Is this process running from one of the two protected copies: a sealed
/// memfd, or a read-only mount attached to no mount namespace (our own
/// detached bind mount)? A binary merely on a read-only host mount does not
/// count: the host may remount it read-write while a container runs.
pub fn is_protected() -> bool {
    let Ok(exe) = File::open("/proc/self/exe") else {
        return false;
    };
    if fcntl(&exe, FcntlArg::F_GET_SEALS)
        .is_ok_and(|bits| SealFlag::from_bits_truncate(bits).contains(required_seals()))
    {
        return true;
    }
    let read_only = fstatvfs(&exe).is_ok_and(|s| s.flags().contains(FsFlags::ST_RDONLY));
    read_only && mount_id(&exe).is_some_and(|id| !mount_is_attached(id))
}

/// The id of the mount `f` lives on (statx(2) `STATX_MNT_ID`).
fn mount_id(f: &File) -> Option<u64> {
    // SAFETY: statx is plain data, valid when zeroed.
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: statx writes into `st`, which we own, for a descriptor we own.
    let rc = unsafe {
        libc::statx(
            f.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_MNT_ID,
            &mut st,
        )
    };
    (rc == 0 && st.stx_mask & libc::STATX_MNT_ID != 0).then_some(st.stx_mnt_id)
}

/// Is mount `id` part of this process's mount namespace?
fn mount_is_attached(id: u64) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|t| {
            t.lines()
                .any(|l| l.split(' ').next().and_then(|v| v.parse::<u64>().ok()) == Some(id))
        })
        .unwrap_or(true)
}

/// Can no rootless container ever write our binary? Its owner must be out
/// of reach of every id we (and so our containers) can map, it must have no
/// group or other write bit, and no POSIX ACL may grant anything more.
fn beyond_rootless_reach() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata("/proc/self/exe") else {
        return false;
    };
    let uid_map = crate::rootless::own_uid_map();
    // Only a user namespace shows unmapped owners as the overflow uid.
    let overflow = if crate::rootless::in_user_namespace() {
        std::fs::read_to_string("/proc/sys/kernel/overflowuid")
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(65534)
    } else {
        65534
    };
    meta.mode() & 0o022 == 0
        && owner_out_of_reach(
            meta.uid(),
            uid_map,
            overflow,
            nix::unistd::Uid::effective().as_raw(),
        )
        && !has_acl(c"/proc/self/exe")
}

/// Is a file owner `uid` (as this user namespace shows it) out of reach of
/// every id this process, and so any container it starts, can hold?
/// - In the host's initial user namespace (the identity map), as an
///   ordinary user (`euid` not 0): when the owner is root. The user's
///   containers map only the user's own and subordinate ids.
/// - In a user namespace of its own (rootless podman's): only when the
///   namespace maps no id to the host's root at all, and the owner is not
///   mapped here (the kernel shows it as the overflow uid). Root of a
///   namespace that maps the host's root (`unshare -r` run by root) is the
///   host's root, and reaches everything root owns.
pub fn owner_out_of_reach(uid: u32, uid_map: &str, overflow_uid: u32, euid: u32) -> bool {
    let ranges: Vec<(u64, u64, u64)> = uid_map
        .lines()
        .filter_map(|l| {
            let f: Vec<u64> = l
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect();
            (f.len() == 3).then(|| (f[0], f[1], f[2]))
        })
        .collect();
    if ranges == [(0, 0, u64::from(u32::MAX))] {
        return euid != 0 && uid == 0;
    }
    let maps_host_root = ranges.iter().any(|(_, host, len)| *host == 0 && *len > 0);
    let mapped = ranges
        .iter()
        .any(|(start, _, len)| u64::from(uid) >= *start && u64::from(uid) < start + len);
    !maps_host_root && !mapped && uid == overflow_uid
}

/// Does the file carry an access ACL (which could grant write to an id the
/// mode bits do not show)?
fn has_acl(path: &std::ffi::CStr) -> bool {
    // SAFETY: a size query (null buffer, length 0) of a NUL-terminated path
    // and attribute name that outlive the call.
    let rc = unsafe {
        libc::getxattr(
            path.as_ptr(),
            c"system.posix_acl_access".as_ptr(),
            std::ptr::null_mut(),
            0,
        )
    };
    rc >= 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ENODATA)
}

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOUNT_ATTR_RDONLY: u64 = 0x1;

/// The binary on a detached read-only bind mount, if the kernel can do it.
fn read_only_bind() -> Option<OwnedFd> {
    // SAFETY: open_tree reads a NUL-terminated path that lives for the call.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            c"/proc/self/exe".as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    if fd < 0 {
        return None;
    }
    // SAFETY: the kernel just returned this descriptor to us.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: mount_setattr reads `attr` (its size is passed) during the call only.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    (rc == 0).then_some(fd)
}

/// A sealed memfd copy of the binary.
fn sealed_copy() -> Result<OwnedFd, ClonedBinaryError> {
    let mut exe = File::open("/proc/self/exe").map_err(ClonedBinaryError::Open)?;
    let fd = memfd_create(
        c"skiff:[cloned]",
        MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
    )
    .map_err(|err| ClonedBinaryError::Sys {
        op: "memfd_create",
        err,
    })?;
    let mut mem = File::from(fd);
    std::io::copy(&mut exe, &mut mem).map_err(ClonedBinaryError::Copy)?;
    fcntl(&mem, FcntlArg::F_ADD_SEALS(required_seals())).map_err(|err| ClonedBinaryError::Sys {
        op: "seal memfd",
        err,
    })?;
    Ok(OwnedFd::from(mem))
}

/// Re-exec from a protected copy unless already running from one. Returns
/// only if the process already is protected, or with an error.
pub fn ensure_cloned() -> Result<(), ClonedBinaryError> {
    if is_protected() {
        return Ok(());
    }
    if crate::rootless::is_rootless() && beyond_rootless_reach() {
        crate::explain!("user_namespaces(7)", "not re-executing from a protected copy: the runtime's binary belongs to the host's root and nobody else may write it, so a container this unprivileged user starts cannot overwrite it (CVE-2019-5736)");
        return Ok(());
    }
    let exe = match read_only_bind() {
        Some(fd) => {
            crate::explain!("open_tree(2)", "re-executing the runtime from a detached read-only bind mount of itself, so the container can never overwrite the host binary through /proc/self/exe (CVE-2019-5736)");
            fd
        }
        None => {
            crate::explain!("memfd_create(2)", "re-executing the runtime from a sealed in-memory copy of itself, so the container can never overwrite the host binary through /proc/self/exe (CVE-2019-5736)");
            sealed_copy()?
        }
    };
    let args: Vec<CString> = std::env::args_os()
        .filter_map(|a| CString::new(a.into_vec()).ok())
        .collect();
    let env: Vec<CString> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut kv = k.into_vec();
            kv.push(b'=');
            kv.extend(v.into_vec());
            CString::new(kv).ok()
        })
        .collect();
    let err = nix::unistd::fexecve(&exe, &args, &env).unwrap_err();
    Err(ClonedBinaryError::Sys {
        op: "execve protected copy of the runtime",
        err,
    })
}

#[cfg(test)]
mod tests {
    use super::owner_out_of_reach;

    const HOST: &str = "         0          0 4294967295\n";
    const PODMAN: &str = "         0       1000          1\n         1     100000      65536\n";

    #[test]
    fn for_a_user_on_the_host_only_root_owned_files_are_out_of_reach() {
        assert!(owner_out_of_reach(0, HOST, 65534, 1000));
        assert!(!owner_out_of_reach(1000, HOST, 65534, 1000));
        assert!(!owner_out_of_reach(65534, HOST, 65534, 1000));
        // root itself reaches everything
        assert!(!owner_out_of_reach(0, HOST, 65534, 0));
    }

    #[test]
    fn in_a_user_namespace_only_unmapped_owners_are_out_of_reach() {
        // root of podman's namespace is the user: their own files are in reach
        assert!(!owner_out_of_reach(0, PODMAN, 65534, 0));
        assert!(!owner_out_of_reach(5, PODMAN, 65534, 0));
        // the host's root is not mapped and shows as the overflow uid
        assert!(owner_out_of_reach(65534, "0 1000 1\n", 65534, 0));
        // unless the overflow uid is itself a mapped id
        assert!(!owner_out_of_reach(65534, PODMAN, 65534, 0));
    }

    #[test]
    fn a_namespace_that_maps_the_hosts_root_reaches_everything() {
        // `unshare -r` run by root: root inside is root outside
        assert!(!owner_out_of_reach(0, "0 0 1\n", 65534, 0));
        assert!(!owner_out_of_reach(65534, "0 0 1\n", 65534, 0));
        assert!(!owner_out_of_reach(65534, "0 1000 1\n1 0 1\n", 65534, 0));
    }
}
