//! Process file descriptors: a handle on one process, not on a pid number.
//!
//! A pid can be reused as soon as its process has been reaped; a pidfd
//! (pidfd_open(2), Linux 5.3) always means the process it was opened for.
//! It becomes readable when that process exits, so poll(2) can wait for
//! any process, not only a child; and pidfd_send_signal(2) signals exactly
//! that process, never a newcomer that got its pid.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// Open a pidfd for `pid` (a descriptor that becomes readable when it exits).
pub fn pidfd_open(pid: i32) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes two integers and returns a new descriptor.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just gave us this descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Send `sig` to the process of `fd` (pidfd_send_signal(2)).
pub fn send_signal(fd: &OwnedFd, sig: i32) -> std::io::Result<()> {
    // SAFETY: pidfd_send_signal takes a descriptor, a signal number, a
    // null siginfo (the kernel fills in the sender) and flags.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
