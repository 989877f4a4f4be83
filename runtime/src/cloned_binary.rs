//! Running from a sealed in-memory copy of ourselves (runc CVE-2019-5736).
//!
//! The container's init is forked from the runtime, so until it execs the
//! user's program its `/proc/self/exe` is the runtime binary on the host. A
//! malicious image can make the container exec `/proc/self/exe` (say, with
//! `#!/proc/self/exe` as the interpreter of its `/bin/sh`), then reopen that
//! file for writing from inside and overwrite the host's runtime binary.
//!
//! The defence: before `create`, `run` or `exec` does anything, the runtime
//! copies its own binary into a memfd (memfd_create(2)), seals it against
//! any change (`F_SEAL_WRITE`, `F_SEAL_GROW`, `F_SEAL_SHRINK`, `F_SEAL_SEAL`,
//! see fcntl(2)) and re-executes itself from it with execveat(2). From then
//! on `/proc/self/exe` is that sealed copy: it can be executed, not written.
//! This is the one re-exec the runtime does.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};

#[derive(Debug, thiserror::Error)]
pub enum ClonedBinaryError {
    #[error("open /proc/self/exe: {0}")]
    Open(std::io::Error),
    #[error("copy runtime binary into memfd: {0}")]
    Copy(std::io::Error),
    #[error("{op}: {err}")]
    Sys { op: &'static str, err: nix::Error },
}

fn required_seals() -> SealFlag {
    SealFlag::F_SEAL_SEAL | SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_WRITE
}

/// Is this process already running from a sealed copy?
pub fn is_cloned() -> bool {
    let Ok(exe) = File::open("/proc/self/exe") else {
        return false;
    };
    match fcntl(&exe, FcntlArg::F_GET_SEALS) {
        Ok(bits) => SealFlag::from_bits_truncate(bits).contains(required_seals()),
        Err(_) => false,
    }
}

/// Re-exec from a sealed memfd copy unless already doing so. Returns only if
/// the process already runs from one.
pub fn ensure_cloned() -> Result<(), ClonedBinaryError> {
    if is_cloned() {
        return Ok(());
    }
    crate::explain!("memfd_create(2)", "copying the runtime into a sealed memfd and re-executing from it, so the container can never overwrite the host binary via /proc/self/exe (CVE-2019-5736)");
    let mut exe = File::open("/proc/self/exe").map_err(ClonedBinaryError::Open)?;
    let fd: OwnedFd = memfd_create(
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

    let args: Vec<CString> = std::env::args_os()
        .map(|a| CString::new(std::os::unix::ffi::OsStringExt::into_vec(a)).unwrap_or_default())
        .collect();
    let env: Vec<CString> = std::env::vars_os()
        .map(|(k, v)| {
            let mut kv = std::os::unix::ffi::OsStringExt::into_vec(k);
            kv.push(b'=');
            kv.extend(std::os::unix::ffi::OsStringExt::into_vec(v));
            CString::new(kv).unwrap_or_default()
        })
        .collect();
    // SAFETY: the descriptor stays valid for the call; execveat only returns on error.
    let mem_fd = unsafe { OwnedFd::from_raw_fd(mem.as_raw_fd()) };
    std::mem::forget(mem);
    let err = nix::unistd::fexecve(&mem_fd, &args, &env).unwrap_err();
    Err(ClonedBinaryError::Sys {
        op: "execve sealed copy",
        err,
    })
}
