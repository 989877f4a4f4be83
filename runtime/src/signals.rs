//! Signals (signal(7)): their names and numbers as `kill` takes them, and
//! how a runtime in the foreground passes them on to its container.
//!
//! runc accepts `9`, `KILL` and `SIGKILL` alike; so does skiff.
//!
//! In the foreground (`run`, `exec` without `--detach`) the runtime stays
//! the parent of the container's process (it is a child subreaper,
//! prctl(2) `PR_SET_CHILD_SUBREAPER`), forwards the signals it receives to
//! it, reaps it and exits with its status: the exit code, or 128+N when a
//! signal N killed it, as a shell does. Signals are taken through a
//! signalfd(2), so forwarding is ordinary code rather than a signal
//! handler. A process about to become the container's resets every signal
//! first ([`reset_signals`]).

use std::str::FromStr;

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// A signal `kill` cannot send.
#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    /// Neither a signal number nor a name this system knows.
    #[error("unknown signal {0:?}")]
    Unknown(String),
}

/// Parse a signal given by number, by name, or by name without `SIG`.
pub fn parse(s: &str) -> Result<Signal, SignalError> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| SignalError::Unknown(s.to_string()));
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    Signal::from_str(&name).map_err(|_| SignalError::Unknown(s.to_string()))
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(parse("9").unwrap(), Signal::SIGKILL);
        assert_eq!(parse("KILL").unwrap(), Signal::SIGKILL);
        assert_eq!(parse("sigterm").unwrap(), Signal::SIGTERM);
        assert_eq!(parse("SIGUSR1").unwrap(), Signal::SIGUSR1);
        assert!(parse("NOPE").is_err());
        assert!(parse("0").is_err());
        assert!(parse("99").is_err());
    }
}
