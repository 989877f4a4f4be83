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
