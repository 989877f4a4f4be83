//! `skiff start`: let a created container's init exec the user's program.
//!
//! The init is blocked opening `exec.fifo` for writing; opening the read end
//! releases it, it writes one byte and goes on to execve(2). The fifo is then
//! removed, which is how every later command knows the container has been
//! started. The `poststart` hooks run last. If the init dies instead of
//! writing, `start` notices through a pidfd (pidfd_open(2)) rather than
//! blocking forever.

use std::os::fd::AsFd;

use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::container::{Container, Status};
use crate::pidfd::pidfd_open;
use crate::Result;

/// What can stop `start`.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The container has stopped.
    #[error("cannot start a container that has stopped")]
    Stopped,
    /// The container is paused.
    #[error("cannot start a container in the paused state")]
    Paused,
    /// The container is running already (or still being created).
    #[error("cannot start an already running container")]
    AlreadyRunning,
    /// The init died before the user's program could run.
    #[error("container process is already dead")]
    InitDead,
    /// `exec.fifo` cannot be opened.
    #[error("open exec fifo")]
    OpenFifo(#[source] nix::Error),
    /// poll(2) on the fifo and the init's pidfd failed.
    #[error("wait for init")]
    Wait(#[source] nix::Error),
    /// The init failed between the fifo and execve, and wrote why.
    #[error("unable to start container process: {0}")]
    Init(String),
}

/// `skiff start`: release a created container's init to exec the user's
/// program, then run the `poststart` hooks (a failing one deletes the
/// container).
pub fn start(c: &mut Container) -> Result<()> {
    match c.refresh() {
        Status::Created => {}
        Status::Stopped => return Err(StartError::Stopped.into()),
        Status::Paused => return Err(StartError::Paused.into()),
        _ => return Err(StartError::AlreadyRunning.into()),
    }
    // The pidfd first, while the init is certainly alive and waiting: once
    // the fifo is opened, a short program may run and exit at once, and a
    // subreaper (containerd's shim) reaps it before a later pidfd_open
    // could find it.
    let pidfd = pidfd_open(c.state.pid).map_err(|_| StartError::InitDead)?;
    let fifo_path = c.fifo_path();
    crate::explain!("fifo(7)", "opening exec.fifo for reading: this releases the waiting init, which now execs the user's program");
    let fifo = nix::fcntl::open(
        &fifo_path,
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(StartError::OpenFifo)?;
    // The init writes "0" once it is released, then keeps the fifo open
    // until its execve closes it; if it fails before that, it writes why.
    let mut got: Vec<u8> = Vec::new();
    loop {
        let mut fds = [
            PollFd::new(fifo.as_fd(), PollFlags::POLLIN),
            PollFd::new(pidfd.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(StartError::Wait(e).into()),
            Ok(_) => {}
        }
        let fifo_ev = fds[0].revents().unwrap_or(PollFlags::empty());
        let init_gone = fds[1].revents().is_some_and(|r| !r.is_empty());
        // Before the first byte, a read would see end-of-file just because
        // no writer has opened the fifo yet: only read when poll says so.
        if fifo_ev.intersects(PollFlags::POLLIN | PollFlags::POLLHUP) {
            let mut buf = [0u8; 4096];
            match nix::unistd::read(&fifo, &mut buf) {
                Ok(0) if !got.is_empty() => break,
                Ok(n) if n > 0 => {
                    got.extend_from_slice(&buf[..n]);
                    continue;
                }
                _ => {}
            }
        }
        if init_gone && got.is_empty() {
            return Err(StartError::InitDead.into());
        }
        if init_gone {
            // Exited after writing: whatever it wrote is all there is.
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = nix::unistd::read(&fifo, &mut buf) {
                got.extend_from_slice(&buf[..n]);
            }
            break;
        }
    }
    if got.len() > 1 {
        let _ = std::fs::remove_file(&fifo_path);
        let msg = String::from_utf8_lossy(&got[1..]).into_owned();
        return Err(StartError::Init(msg).into());
    }
    let _ = std::fs::remove_file(&fifo_path);
    if let Some(oom) = killed_before_exec(c, &pidfd) {
        return Err(oom.into());
    }
    c.state.status = Status::Running;
    let hooks = c.state.config.hooks().clone();
    let st = crate::hooks::state_json(
        c.id(),
        Status::Running,
        Some(c.state.pid),
        &c.state.bundle,
        &c.state.annotations,
    );
    if let Err(e) = crate::hooks::run(
        "poststart",
        hooks.as_ref().and_then(|h| h.poststart().as_ref()),
        &st,
    ) {
        // A failed poststart hook takes the container down, like runc.
        let _ = crate::container::delete::delete(c, true);
        return Err(e.into());
    }
    Ok(())
}

/// The fifo's end of file came either from the init's execve(2) (the fifo
/// is close-on-exec) or from its death. A death there with an OOM kill in
/// the container's cgroup means the memory limit is too small to start the
/// program at all: exec needs a new address space, page tables and stack,
/// all charged to the cgroup. The init's memory is released (exit_mm) before
/// its files are closed, so a dead init has no `/proc/PID/exe` by the time
/// the fifo reports its end; an exec'd one shows the program there.
fn killed_before_exec(
    c: &Container,
    pidfd: &std::os::fd::OwnedFd,
) -> Option<crate::container::create::CreateError> {
    let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
    let exited = poll(&mut fds, PollTimeout::ZERO).is_ok_and(|n| n > 0);
    if !exited && std::fs::read_link(format!("/proc/{}/exe", c.state.pid)).is_ok() {
        return None;
    }
    let linux = c.state.config.linux().as_ref()?;
    crate::container::create::memory_too_low(linux, &c.state.cgroup_paths)
}
