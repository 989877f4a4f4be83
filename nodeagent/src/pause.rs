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
//! the agent's data directory when the agent starts, and each sandbox
//! bind-mounts it read-only at `/pause` of an otherwise empty root
//! filesystem (`engine/spec.rs`, `sandbox_spec`).
//!
//! Why the data directory (`/var/lib/skiff`, on disk) and not the state
//! directory (`/run/skiff/agent`): Debian and Ubuntu mount `/run` with
//! `noexec`, and a bind mount keeps its source's flags, so a program there
//! could not be executed in any sandbox. [`install`] checks the file
//! system with statvfs(3) and says so, rather than let every pod fail.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::statvfs::{statvfs, FsFlags};

/// The compiled pause program (an x86_64 static PIE, no relocations).
pub const PROGRAM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/skiff-pause"));

/// Its mode: anyone may execute it (the pause runs as user 65535).
const MODE: u32 = 0o555;

/// Why the pause program could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// Writing or renaming the file failed.
    #[error("write the pause program to {path}: {source}")]
    Write {
        /// Where it was to go.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The directory's file system does not execute programs.
    #[error("{dir} is on a file system mounted noexec: the pause program cannot run from it (choose a --data-dir elsewhere)")]
    NoExec {
        /// The data directory.
        dir: PathBuf,
    },
}

/// The pause program's place in the agent's data directory.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join("pause")
}

/// Write the pause program to [`path`] (mode 0555) unless it is already
/// there, byte for byte and with that mode. A different file is replaced by
/// rename, so a running sandbox keeps the one it mounted, and a crash never
/// leaves a half-written program in its place.
pub fn install(data_dir: &Path) -> Result<PathBuf, InstallError> {
    let dest = path(data_dir);
    if statvfs(data_dir).is_ok_and(|v| v.flags().contains(FsFlags::ST_NOEXEC)) {
        return Err(InstallError::NoExec {
            dir: data_dir.to_path_buf(),
        });
    }
    let current = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.permissions().mode() & 0o7777 == MODE)
            && std::fs::read(p).is_ok_and(|b| b == PROGRAM)
    };
    if current(&dest) {
        return Ok(dest);
    }
    // A name no other writer uses (create_new fails rather than share one).
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let tmp = data_dir.join(format!(".pause.{}.{nanos}", std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(MODE)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(PROGRAM)?;
            // The umask may have taken bits off the mode asked for.
            f.set_permissions(std::fs::Permissions::from_mode(MODE))
        })
        .and_then(|()| std::fs::rename(&tmp, &dest));
    if let Err(source) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(InstallError::Write { path: dest, source });
    }
    Ok(dest)
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
        // The right bytes with a mode that cannot be executed are replaced.
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        install(dir.path()).unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o555);
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
            // It has taken every signal sent so far (none pending) and
            // sleeps in rt_sigtimedwait, system call 128. (While it waits,
            // the kernel shows the waited-for signals as unblocked, so
            // SigBlk says nothing.)
            let waiting = || {
                let status = std::fs::read_to_string(format!("/proc/{pid}/status"));
                let none_pending = status.is_ok_and(|s| {
                    s.lines()
                        .filter(|l| l.starts_with("SigPnd:") || l.starts_with("ShdPnd:"))
                        .all(|l| l.trim_end().ends_with("0000000000000000"))
                });
                none_pending
                    && std::fs::read_to_string(format!("/proc/{pid}/syscall"))
                        .is_ok_and(|s| s.starts_with("128 "))
            };
            let wait_until_waiting = || {
                for _ in 0..500 {
                    if waiting() {
                        return true;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
                false
            };
            // Until it waits, a SIGTERM would kill it (by the signal, not
            // with 0).
            assert!(wait_until_waiting(), "the pause sleeps in rt_sigtimedwait");
            let target = Pid::from_raw(pid as i32);
            // A SIGCHLD with no child to reap: it goes on waiting. (Sent
            // alone: with both pending, the lower-numbered signal comes
            // first.)
            kill(target, Signal::SIGCHLD).unwrap();
            assert!(wait_until_waiting(), "the pause lives through a SIGCHLD");
            kill(target, sig).unwrap();
            let status = child.0.wait().unwrap();
            assert_eq!((status.code(), status.signal()), (Some(0), None), "{sig}");
        }
    }
}
