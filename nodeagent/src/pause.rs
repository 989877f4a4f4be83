//! The pod sandbox's pause process, as the agent ships it.
//!
//! A pod's containers share a network, IPC and UTS namespace, held by one
//! process per pod that does nothing else: the *pause* (Kubernetes' `pause`
//! image does the same). It runs as PID 1 of the sandbox container, reaps
//! the zombies re-parented to it, and exits 0 on SIGTERM or SIGINT.
//!
//! The program itself is `nodeagent/pause/pause.rs`: freestanding, without
//! a C library or Rust's `std`, about 2 KiB on disk and 16 KiB of memory
//! while it runs, where a `std` program holds about 120 KiB (that file says
//! why). The build script compiles it and it is embedded here, so the agent
//! needs no second binary installed next to it: [`install`] writes it to
//! the agent's state directory when the agent starts, and each sandbox
//! bind-mounts it read-only at `/pause` of an otherwise empty root
//! filesystem (`engine/spec.rs`, `sandbox_spec`).

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The compiled pause program (an x86_64 static PIE, no relocations).
pub const PROGRAM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/skiff-pause"));

/// The pause program's place in the agent's state directory.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("pause")
}

/// Write the pause program to [`path`] (mode 0555) unless it is already
/// there, byte for byte. A different file is replaced by rename, so a
/// running sandbox keeps the one it mounted, and a crash never leaves a
/// half-written program behind.
pub fn install(state_dir: &Path) -> std::io::Result<PathBuf> {
    let dest = path(state_dir);
    if std::fs::read(&dest).is_ok_and(|b| b == PROGRAM) {
        return Ok(dest);
    }
    let tmp = state_dir.join(format!(".pause.{}", std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o555)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(PROGRAM)?;
            f.set_permissions(std::fs::Permissions::from_mode(0o555))
        })
        .and_then(|()| std::fs::rename(&tmp, &dest));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map(|()| dest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    use std::os::unix::process::ExitStatusExt;
    use std::process::Command;

    #[test]
    fn installs_once_and_replaces_a_different_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = install(dir.path()).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), PROGRAM);
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o555);
        std::fs::remove_file(&p).unwrap();
        std::fs::write(&p, b"stale").unwrap();
        install(dir.path()).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), PROGRAM);
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "only the program is left");
    }

    /// The program runs, lives through a SIGCHLD with nothing to reap, and
    /// ends with 0 on SIGTERM and on SIGINT.
    #[test]
    fn ends_with_zero_on_sigterm_and_sigint() {
        /// Kills the pause if the test fails before it ends.
        struct Kill(std::process::Child);
        impl Drop for Kill {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let p = install(dir.path()).unwrap();
        for sig in [Signal::SIGTERM, Signal::SIGINT] {
            let mut child = Kill(Command::new(&p).spawn().unwrap());
            let pid = child.0.id();
            // Until it waits for its signals, a SIGTERM would kill it (by
            // the signal, not with 0). While it waits, the kernel shows the
            // waited-for signals as unblocked, so look at the system call
            // it sleeps in instead: rt_sigtimedwait, number 128.
            let waiting = || {
                std::fs::read_to_string(format!("/proc/{pid}/syscall"))
                    .is_ok_and(|s| s.starts_with("128 "))
            };
            for _ in 0..500 {
                if waiting() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            assert!(waiting(), "the pause sleeps in rt_sigtimedwait");
            let target = Pid::from_raw(pid as i32);
            kill(target, Signal::SIGCHLD).unwrap();
            kill(target, sig).unwrap();
            let status = child.0.wait().unwrap();
            assert_eq!((status.code(), status.signal()), (Some(0), None), "{sig}");
        }
    }
}
