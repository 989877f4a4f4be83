//! Small helpers shared by several modules: reading and writing files with
//! errors that name the path, time stamps in the formats runc uses, and
//! closing or marking file descriptors.

use std::fs;
use std::io;
use std::path::Path;
use std::time::SystemTime;

/// Write `data` to an existing file (cgroup and procfs files), failing with
/// the raw `io::Error` so callers can attach the path.
pub fn write_file(path: &Path, data: &str) -> io::Result<()> {
    use std::io::Write;
    let mut f = fs::OpenOptions::new().write(true).open(path)?;
    f.write_all(data.as_bytes())
}

/// RFC 3339 with nanoseconds and trailing zeros removed, as Go's
/// `time.RFC3339Nano` prints it (used for `created` in state JSON).
pub fn rfc3339_nano(t: SystemTime) -> String {
    let full = humantime::format_rfc3339_nanos(t).to_string(); // ...T..:..:..123456789Z
    match full.split_once('.') {
        Some((head, frac)) => {
            let digits = frac.trim_end_matches('Z').trim_end_matches('0');
            if digits.is_empty() {
                format!("{head}Z")
            } else {
                format!("{head}.{digits}Z")
            }
        }
        None => full,
    }
}

/// RFC 3339 in seconds, as logrus writes `time` in runc's JSON log lines.
pub fn rfc3339_seconds(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Close every descriptor from `from` upwards except those in `keep`, with
/// close_range(2). This is how no runtime descriptor reaches the container
/// (runc CVE-2024-21626): marking them close-on-exec is not enough, because
/// execve(2) resolves the program's path while they are still open, and a
/// path like `/proc/self/fd/7/../..` would lead through a host directory.
pub fn close_from(from: i32, keep: &[i32]) -> io::Result<()> {
    let mut keep: Vec<u32> = keep
        .iter()
        .filter(|&&fd| fd >= from)
        .map(|&fd| fd as u32)
        .collect();
    keep.sort_unstable();
    let mut start = from.max(0) as u32;
    for k in keep.into_iter().chain(std::iter::once(u32::MAX)) {
        if k > start {
            let end = if k == u32::MAX { u32::MAX } else { k - 1 };
            // SAFETY: close_range only closes descriptors; no memory is touched,
            // and the caller owns no Rust objects wrapping them any more.
            let rc = unsafe { libc::syscall(libc::SYS_close_range, start, end, 0) };
            if rc < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        if k == u32::MAX {
            break;
        }
        start = k + 1;
    }
    Ok(())
}

/// The state letter (R, S, D, Z, T...) and the start time in clock ticks
/// since boot of a process: fields 3 and 22 of /proc/PID/stat, read once.
/// Pid and start time name a process uniquely, so a recycled pid is never
/// mistaken for the container's init.
pub fn process_stat(pid: i32) -> Option<(char, u64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let state = rest.chars().next()?;
    let start = rest.split_whitespace().nth(19)?.parse().ok()?;
    Some((state, start))
}

/// The running kernel's (major, minor), from uname(2); (0, 0) if unreadable.
pub fn kernel_version() -> (u32, u32) {
    let Ok(u) = nix::sys::utsname::uname() else {
        return (0, 0);
    };
    let release = u.release().to_string_lossy().into_owned();
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn rfc3339_nano_trims_zeros() {
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 120_000_000);
        assert_eq!(rfc3339_nano(t), "2023-11-14T22:13:20.12Z");
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 0);
        assert_eq!(rfc3339_nano(t), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn start_time_of_self() {
        let pid = std::process::id() as i32;
        let (state, start) = process_stat(pid).unwrap();
        assert!(matches!(state, 'R' | 'S'));
        assert!(start > 0);
    }
}

/// An I/O error worded as runc (Go) words it: "no such file or directory"
/// rather than "No such file or directory (os error 2)", so that messages
/// compare with runc's.
#[derive(Debug)]
pub struct IoCause(pub io::Error);

impl std::fmt::Display for IoCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.kind() {
            io::ErrorKind::NotFound => f.write_str("no such file or directory"),
            _ => self.0.fmt(f),
        }
    }
}

impl std::error::Error for IoCause {}
