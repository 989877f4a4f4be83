//! `exec.fifo`: how `create` leaves a container ready but not running, and
//! `start` lets it go.
//!
//! A fifo (fifo(7), mkfifo(3)) is a named pipe: opening one end blocks
//! until the other end is opened too. `create` makes `exec.fifo` in the
//! container's state directory; the init, once everything is set up,
//! opens it for writing and so sleeps in the kernel until `skiff start`
//! opens it for reading, reads the byte the init writes, and removes it.
//! That is runc's handshake too: a created container costs no CPU, and
//! `start` is a single open(2) away from the program's execve(2).

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

/// Opening or using `exec.fifo`.
#[derive(Debug, thiserror::Error)]
pub enum ExecFifoError {
    /// Opening `exec.fifo` or writing to it failed.
    #[error("{op} exec fifo")]
    Fifo {
        /// The step that failed (`"open"`, `"write"`).
        op: &'static str,
        /// Why.
        #[source]
        source: nix::Error,
    },
    /// The host's `/proc` cannot be opened (before the fork) for reopening
    /// `exec.fifo` later.
    #[error("open /proc")]
    OpenProc(#[source] nix::Error),
}

type Result<T> = std::result::Result<T, ExecFifoError>;

/// The init's handle on `exec.fifo`: an `O_PATH` descriptor of the fifo and
/// one of the host's /proc, through which the fifo is reopened for writing
/// at the last moment (`/proc/self/fd/N` reopens exactly that file, and the
/// fifo's mode 0622 lets the container's user write it). The runtime opens
/// both before forking: the init, once in its user namespace, in its new
/// root and as the container's user, could reach neither the root-only state
/// directory nor the host's /proc by path.
pub struct ExecFifo {
    fifo: OwnedFd,
    proc: OwnedFd,
}

impl ExecFifo {
    /// Open the fifo in `state_dir` (`O_PATH`) and the host's `/proc`, before
    /// the fork.
    pub fn open(state_dir: &File) -> Result<ExecFifo> {
        use nix::fcntl::{open, openat, OFlag};
        use nix::sys::stat::Mode;
        let fifo = openat(
            state_dir.as_fd(),
            crate::container::EXEC_FIFO,
            OFlag::O_PATH | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|source| ExecFifoError::Fifo { op: "open", source })?;
        let proc = open(
            "/proc",
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(ExecFifoError::OpenProc)?;
        Ok(ExecFifo { fifo, proc })
    }

    /// Block until `start` opens the other end, then tell it we go. Returns
    /// the open write end, for reporting a failure before execve.
    pub fn wait_for_start(&self) -> Result<OwnedFd> {
        use nix::fcntl::{openat, OFlag};
        crate::explain!("fifo(7)", "waiting on exec.fifo: opening a fifo for writing blocks until `skiff start` opens it for reading");
        let path = format!("self/fd/{}", self.fifo.as_raw_fd());
        let fd = openat(
            self.proc.as_fd(),
            path.as_str(),
            OFlag::O_WRONLY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|source| ExecFifoError::Fifo { op: "open", source })?;
        nix::unistd::write(&fd, b"0").map_err(|source| ExecFifoError::Fifo {
            op: "write",
            source,
        })?;
        Ok(fd)
    }
}
