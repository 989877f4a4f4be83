//! Born in its cgroup: clone3(2) with `CLONE_INTO_CGROUP` (cgroup v2,
//! Linux 5.7).
//!
//! The classic way to put a process in a cgroup is to fork it and then
//! write its pid to the cgroup's `cgroup.procs`. The write *moves* a
//! process that already exists, so the kernel must stop every fork and
//! exit on the machine while it does (the global `cgroup_threadgroup_rwsem`,
//! taken for writing), and switching that per-cpu semaphore to a writer
//! waits for an RCU grace period: 10 to 20 ms on a quiet machine, the
//! largest single cost of `create` (docs chapter 14).
//!
//! clone3(2) can instead create the child *in* the target cgroup: its
//! `struct clone_args` has a `cgroup` field, a descriptor of the cgroup's
//! directory, honoured with the `CLONE_INTO_CGROUP` flag. The child is born
//! there, charged to the cgroup from its first page, and nothing is ever
//! moved, so no grace period is waited for. Only cgroup v2 has it: a
//! process lives in one cgroup per v1 hierarchy, and the field names one.
//! crun uses the same call.
//!
//! Apart from where the child starts, clone3 without `CLONE_VM` is fork(2):
//! the child gets a copy of the address space and returns 0. glibc's fork
//! wrapper is not involved, so the caller must be single-threaded, as for
//! any fork that runs more than async-signal-safe code.

use std::os::fd::AsRawFd;
use std::path::Path;

/// `CLONE_INTO_CGROUP` (linux/sched.h).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `struct clone_args` up to `cgroup` (`CLONE_ARGS_SIZE_VER2`, 88 bytes).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Which side of the fork this is.
#[derive(Debug, PartialEq, Eq)]
pub enum Forked {
    /// The new process.
    Child,
    /// The caller, with the child's pid.
    Parent(i32),
}

/// Fork into the cgroup v2 directory `dir`. `None` when that did not
/// happen, and nothing was forked: a kernel without clone3 or without
/// `CLONE_INTO_CGROUP` (before 5.7), or any refusal (a cgroup that may not
/// hold processes, a pids limit). The caller then forks and moves the child
/// as before, and the move reports what is wrong in the usual words.
///
/// # Safety
/// As fork(2): the caller must be single-threaded, since the child runs
/// ordinary code (allocations, locks) before it execs.
pub unsafe fn fork_into(dir: &Path) -> Option<Forked> {
    let cgroup = std::fs::File::open(dir).ok()?;
    let args = CloneArgs {
        flags: CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup.as_raw_fd() as u64,
        ..Default::default()
    };
    // SAFETY: clone3 reads `args` (its size is passed) during the call only;
    // without CLONE_VM the child has its own copy of the address space and
    // stack, as after fork(2); the caller is single-threaded (see above).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    match rc {
        0 => Some(Forked::Child),
        pid if pid > 0 => {
            crate::explain!("clone3(2)", "created the init directly in its cgroup {} (CLONE_INTO_CGROUP): nothing is moved, so no RCU grace period is waited for", dir.display());
            Some(Forked::Parent(pid as i32))
        }
        _ => {
            tracing::debug!(
                "clone3 into {}: {}; forking and moving instead",
                dir.display(),
                nix::errno::Errno::last()
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clone_args_is_the_kernels_version_2() {
        assert_eq!(std::mem::size_of::<CloneArgs>(), 88);
    }
}
