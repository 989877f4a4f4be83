//! `skiff run`: create, start, and (in the foreground) wait.
//!
//! In the foreground skiff stays the parent of the container's init (it is
//! a child subreaper, prctl(2) `PR_SET_CHILD_SUBREAPER`), forwards the
//! signals it receives to it, reaps it and exits with its status: the exit
//! code, or 128+N when a signal N killed it, as a shell does. Signals are
//! taken through a signalfd(2), so forwarding is ordinary code rather than
//! a signal handler. Unless `--keep`, the container is deleted afterwards.

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::container_create::{create, CreateOptions};
use crate::Result;

/// Signals a foreground `run`/`exec` passes on to the container.
const FORWARDED: &[Signal] = &[
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGTERM,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
    Signal::SIGCONT,
    Signal::SIGTSTP,
    Signal::SIGPIPE,
    Signal::SIGALRM,
];

fn exit_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, sig, _) => Some(128 + sig as i32),
        _ => None,
    }
}

/// Block the signals a foreground `run`/`exec` forwards (and SIGCHLD), so
/// that they queue for the signalfd instead of killing the runtime. Called
/// before the container can run anything, so that a signal sent as soon as
/// the container shows signs of life is not lost; the container's processes
/// unblock everything again (see [`reset_signals`]).
pub fn block_forwarded() -> SigSet {
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    for s in FORWARDED {
        mask.add(*s);
    }
    let _ = mask.thread_block();
    mask
}

/// In a process about to become the container's: unblock every signal and
/// restore default dispositions of ignored ones (the Rust runtime ignores
/// SIGPIPE, and ignored signals survive execve(2); see signal(7)).
pub fn reset_signals() {
    let _ = SigSet::all().thread_unblock();
    for sig in Signal::iterator() {
        if matches!(sig, Signal::SIGKILL | Signal::SIGSTOP) {
            continue;
        }
        // SAFETY: restoring the default disposition installs no handler code.
        unsafe {
            let _ = nix::sys::signal::signal(sig, nix::sys::signal::SigHandler::SigDfl);
        }
    }
}

/// Wait for `pid` (our child, directly or as subreaper), forwarding signals,
/// reaping any other orphans on the way. Returns its shell-style exit code.
pub fn wait_forwarding(pid: i32, tty: Option<&crate::terminal::Proxy>) -> i32 {
    let mask = block_forwarded();
    let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC).ok();
    loop {
        // Reap whatever has exited; the container's process may already be gone.
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(st) => {
                    if st.pid() == Some(Pid::from_raw(pid)) {
                        if let Some(code) = exit_code(st) {
                            return code;
                        }
                    }
                }
            }
        }
        let Some(sfd) = sfd.as_ref() else {
            // No signalfd: fall back to a blocking wait for the one pid.
            return waitpid(Pid::from_raw(pid), None)
                .ok()
                .and_then(exit_code)
                .unwrap_or(255);
        };
        match sfd.read_signal() {
            Ok(Some(info)) => {
                let signo = info.ssi_signo as i32;
                if let (libc::SIGWINCH, Some(t)) = (signo, tty) {
                    t.resize();
                } else if signo != libc::SIGCHLD {
                    // SAFETY: kill(2) with integer arguments only.
                    unsafe { libc::kill(pid, signo) };
                }
            }
            Ok(None) => {}
            Err(_) => {
                return waitpid(Pid::from_raw(pid), None)
                    .ok()
                    .and_then(exit_code)
                    .unwrap_or(255)
            }
        }
    }
}

/// `run`: returns the exit code to exit with.
pub fn run(mut opts: CreateOptions, detach: bool, keep: bool) -> Result<i32> {
    if !detach {
        block_forwarded();
    }
    opts.foreground = !detach;
    let created = create(&opts)?;
    let mut c = created.container;
    let proxy = match created.console {
        Some(fc) => Some(fc.start_proxy()?),
        None => None,
    };
    if let Err(e) = crate::container_start::start(&mut c) {
        let _ = crate::container_delete::delete(&mut c, true);
        return Err(e);
    }
    if detach {
        return Ok(0);
    }
    let code = wait_forwarding(c.state.pid, proxy.as_ref());
    drop(proxy);
    if !keep {
        if let Err(e) = crate::container_delete::delete(&mut c, true) {
            // runc reports a failing poststop hook but keeps the exit code.
            tracing::error!("{e}");
        }
    }
    Ok(code)
}
