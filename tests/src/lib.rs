//! End-to-end test harness for skiff, an OCI runtime meant as a drop-in
//! replacement for runc 1.1.
//!
//! Every test drives a runtime *binary* through its command line, exactly as
//! containerd, Docker or a person would, and most tests run the same bundle
//! under both skiff and the reference runc (`/usr/sbin/runc`) and compare what
//! they observe.
//!
//! # Choosing the binary under test
//!
//! [`skiff_bin`] is `$SKIFF_BIN` when set, otherwise the `skiff` binary that
//! cargo built next to the test executable.  Running the suite with
//! `SKIFF_BIN=/usr/sbin/runc` validates the tests themselves: every test must
//! pass when runc is compared with runc.
//!
//! # Building blocks
//!
//! * [`Bundle`]: a temporary OCI bundle whose rootfs is a static busybox and
//!   whose `config.json` is what `runc spec` prints (with `terminal: false`).
//! * [`Runtime`]: one runtime binary plus a private `--root` directory; every
//!   command runs under a timeout ([`command_timeout`]) so a hung runtime fails
//!   the test instead of hanging CI.  Dropping a `Runtime` force-deletes every
//!   container still listed in its root, so a failing test does not leave
//!   containers running on the machine.
//! * [`run_both`]: run one bundle set-up under skiff and under runc and get
//!   both [`Output`]s with bundle paths and ids normalised.
//! * [`LeakCheck`]: snapshot of mounts, cgroups, file descriptors, child
//!   processes and runtime-root entries, compared after the test.
//! * [`ConsoleSocket`]: the receiving end of `--console-socket`.
//!
//! # Parallelism
//!
//! Tests run in parallel threads.  All state is per test (unique ids from
//! [`unique_id`], private roots, temporary bundles) except one lock: a
//! [`LeakCheck`] measures process-wide things (our fds, our children), so
//! while one is alive it holds a process-wide exclusive lock, and every
//! harness operation that opens fds or starts processes in *other* threads
//! (runtime commands, bundle creation and removal) waits for it.  Fds that
//! other threads open and close on their own are tolerated (only fds that
//! appear and stay are leaks), but tests that keep fds or children open
//! across commands (terminal tests) must not share a test binary with
//! leak-checked tests.
//!
//! # Conventions
//!
//! * Comparisons assert sane absolute values on runc's side too, so two
//!   empty outputs cannot pass.
//! * `RUNC-1.1.5-QUIRK` marks assertions where runc 1.1.5 (and so skiff, as
//!   a drop-in replacement) deviates from the OCI runtime spec.
//! * No fixed sleeps: [`poll`] and [`Runtime::wait_status`] have deadlines.
//!
//! # Environment
//!
//! * `SKIFF_BIN`: runtime under test (default: `skiff` next to the tests).
//! * `SKIFF_TEST_TIMEOUT`: seconds one runtime command may take (default 30).
//! * `SKIFF_LEAK_CYCLES`: create/start/delete cycles in `leak.rs` (default 200).

pub mod agent;
pub mod containerd;
pub mod fault;
pub mod images;
pub mod k8s;

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

pub use serde_json::json;

mod bundle;
mod command;
mod console;
mod leak;
mod lock;
mod runtime;
mod user;

pub use bundle::*;
pub use command::*;
pub use console::*;
pub use leak::*;
use lock::{exclusive, shared, ExclusiveGuard};
pub use runtime::*;
pub use user::*;

// ---------------------------------------------------------------------------
// Binaries, ids, timeouts
// ---------------------------------------------------------------------------

/// The runtime under test: `$SKIFF_BIN`, or `skiff` in the cargo target dir
/// (the test executable lives in `target/<profile>/deps/`, skiff in
/// `target/<profile>/`).
pub fn skiff_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SKIFF_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable is in target/<profile>/deps");
    let bin = profile_dir.join("skiff");
    assert!(
        bin.exists(),
        "{} does not exist: build it first (cargo build -p skiff-runtime) or set SKIFF_BIN",
        bin.display()
    );
    bin
}

/// The node agent binary, next to `skiff` (or `$SKIFF_AGENT_BIN`).
pub fn agent_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SKIFF_AGENT_BIN") {
        return PathBuf::from(p);
    }
    let bin = skiff_bin().with_file_name("skiff-agent");
    assert!(
        bin.exists(),
        "{} does not exist: build it first (cargo build -p skiff-agent) or set SKIFF_AGENT_BIN",
        bin.display()
    );
    bin
}

/// The reference runtime, Debian's runc 1.1.5.
pub fn runc_bin() -> PathBuf {
    PathBuf::from("/usr/sbin/runc")
}

/// Is this host pure cgroup v2 (the VM test bed), rather than hybrid (the
/// development machines)?
pub fn unified_host() -> bool {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some("/sys/fs/cgroup") && l.contains(" - cgroup2 "))
}

/// A container id unique on this machine: `skiff-t-<pid>-<n>`.
pub fn unique_id() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "skiff-t-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A directory for fixtures this test process shares between its tests
/// (`$TMPDIR/NAME-PID`), removed when the process exits. The test harness
/// ends with exit(3), which runs the atexit(3) handlers, so a test binary
/// leaves none of them in /tmp; one killed outright still would.
pub fn process_dir(name: &str) -> PathBuf {
    static DIRS: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());
    static REGISTER: std::sync::Once = std::sync::Once::new();
    extern "C" fn remove_all() {
        // try_lock: a thread stopped mid-registration must not hang the exit.
        if let Ok(dirs) = DIRS.try_lock() {
            for d in dirs.iter() {
                let _ = fs::remove_dir_all(d);
            }
        }
    }
    // SAFETY: atexit(3) is given a function that never unwinds and that
    // touches only statics.
    REGISTER.call_once(|| unsafe {
        libc::atexit(remove_all);
    });
    let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    if let Ok(mut dirs) = DIRS.lock() {
        dirs.push(dir.clone());
    }
    dir
}

/// How long one runtime command may run before it is killed
/// (`$SKIFF_TEST_TIMEOUT` seconds, default 30).
pub fn command_timeout() -> Duration {
    let secs = std::env::var("SKIFF_TEST_TIMEOUT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    Duration::from_secs(secs)
}

/// Detach every mount at or below `dir` (deepest first): what a test's
/// private containerd or podman left there.
pub fn unmount_below(dir: &Path) {
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<&str> = mi
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| std::path::Path::new(p).starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Wait (10 s) until process `pid` has exited: gone, or a zombie not yet
/// reaped (this host's pid 1 reaps orphans lazily).
pub fn wait_exited(pid: i32, what: &str) {
    poll(Duration::from_secs(10), what, || {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat"));
        (stat.is_err() || stat.is_ok_and(|s| s.contains(") Z "))).then_some(())
    });
}

/// Is process `pid` alive (there, and not a zombie)?
pub fn process_alive(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

/// The lines of `r` (a child's stdout, say) as they come, read on a thread
/// of their own: receive them with a timeout; the channel disconnects at
/// end of file.
pub fn line_channel(r: impl Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(r).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Poll `f` every 10 ms until it returns `Some`, or panic with `what` after
/// `timeout`.
pub fn poll<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        thread::sleep(Duration::from_millis(10));
    }
}
