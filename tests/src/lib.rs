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
pub mod images;

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
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

/// A container id unique on this machine: `skiff-t-<pid>-<n>`.
pub fn unique_id() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "skiff-t-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
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

// ---------------------------------------------------------------------------
// The process-wide lock used by LeakCheck (see the crate docs)
// ---------------------------------------------------------------------------

static EXCLUSIVE: RwLock<()> = RwLock::new(());

thread_local! {
    static SHARED_DEPTH: Cell<usize> = const { Cell::new(0) };
    static HOLDS_EXCLUSIVE: Cell<bool> = const { Cell::new(false) };
}

/// Held while a harness operation may create fds or child processes.
/// Re-entrant per thread; a no-op in the thread that holds a [`LeakCheck`].
struct SharedGuard {
    _read: Option<RwLockReadGuard<'static, ()>>,
}

fn shared() -> SharedGuard {
    let nested = SHARED_DEPTH.with(|d| {
        let n = d.get();
        d.set(n + 1);
        n > 0
    });
    if nested || HOLDS_EXCLUSIVE.with(Cell::get) {
        return SharedGuard { _read: None };
    }
    SharedGuard {
        _read: Some(EXCLUSIVE.read().unwrap_or_else(|e| e.into_inner())),
    }
}

impl Drop for SharedGuard {
    fn drop(&mut self) {
        SHARED_DEPTH.with(|d| d.set(d.get() - 1));
    }
}

struct ExclusiveGuard(Option<RwLockWriteGuard<'static, ()>>);

fn exclusive() -> ExclusiveGuard {
    assert_eq!(
        SHARED_DEPTH.with(Cell::get),
        0,
        "LeakCheck::new inside a harness operation"
    );
    assert!(
        !HOLDS_EXCLUSIVE.with(Cell::get),
        "two LeakChecks alive in one thread"
    );
    let g = EXCLUSIVE.write().unwrap_or_else(|e| e.into_inner());
    HOLDS_EXCLUSIVE.with(|h| h.set(true));
    ExclusiveGuard(Some(g))
}

impl Drop for ExclusiveGuard {
    fn drop(&mut self) {
        HOLDS_EXCLUSIVE.with(|h| h.set(false));
        self.0.take();
    }
}

// ---------------------------------------------------------------------------
// Running commands
// ---------------------------------------------------------------------------

/// What one command did.  `stdout`/`stderr` are captured through unlinked
/// temporary files, not pipes, so a container that inherits them (create,
/// `run --detach`, `exec --detach`) cannot make us wait for EOF.
#[derive(Clone)]
pub struct Output {
    /// The command line, for messages.
    pub cmdline: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// Exit code; `128 + signal` when the command was killed by a signal.
    pub fn code(&self) -> i32 {
        self.status
            .code()
            .unwrap_or_else(|| 128 + self.status.signal().unwrap_or(0))
    }

    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// Panic (showing everything) unless the command exited 0.
    #[track_caller]
    pub fn ok(self) -> Self {
        assert!(self.success(), "command failed:\n{self}");
        self
    }

    /// Panic (showing everything) if the command exited 0.
    #[track_caller]
    pub fn fail(self) -> Self {
        assert!(!self.success(), "command unexpectedly succeeded:\n{self}");
        self
    }

    /// Parse stdout as JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{self}"))
    }

    /// Replace every occurrence of each `(from, to)` pair in stdout and
    /// stderr (used to hide bundle paths and ids before comparing).
    pub fn normalised(mut self, pairs: &[(&str, &str)]) -> Self {
        for (from, to) in pairs {
            if from.is_empty() {
                continue;
            }
            self.stdout = self.stdout.replace(from, to);
            self.stderr = self.stderr.replace(from, to);
        }
        self
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "$ {}\n  exit: {}\n  stdout: {:?}\n  stderr: {:?}",
            self.cmdline,
            self.code(),
            self.stdout,
            self.stderr
        )
    }
}

impl fmt::Debug for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

fn cmdline_of(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Wait for `child`, killing its whole process group after `timeout`.
pub fn wait_or_kill(child: Child, timeout: Duration, cmdline: &str) -> ExitStatus {
    let pid = child.id() as i32;
    let (tx, rx) = mpsc::channel();
    let waiter = thread::spawn(move || {
        let mut child = child;
        let _ = tx.send(child.wait());
    });
    let status = match rx.recv_timeout(timeout) {
        Ok(r) => r,
        Err(_) => {
            // SAFETY: kill(2) takes integers only. The child is not reaped
            // yet, so its pid (= its process group, see `process_group(0)`)
            // cannot have been reused.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            let _ = rx.recv();
            let _ = waiter.join();
            panic!("command hung for more than {timeout:?} and was killed: {cmdline}");
        }
    };
    let _ = waiter.join();
    status.unwrap_or_else(|e| panic!("wait for {cmdline}: {e}"))
}

fn read_back(mut f: fs::File) -> String {
    let mut buf = Vec::new();
    f.seek(SeekFrom::Start(0)).expect("seek");
    f.read_to_end(&mut buf).expect("read captured output");
    String::from_utf8_lossy(&buf).into_owned()
}

/// Run `cmd` with stdin from /dev/null, stdout and stderr captured, under the
/// [`command_timeout`] guard.  The command gets its own process group so a
/// timeout kills everything it started.
pub fn output(mut cmd: Command) -> Output {
    let _g = shared();
    let cmdline = cmdline_of(&cmd);
    let out = tempfile::tempfile().expect("tempfile");
    let err = tempfile::tempfile().expect("tempfile");
    cmd.stdin(Stdio::null())
        .stdout(out.try_clone().expect("dup"))
        .stderr(err.try_clone().expect("dup"))
        .process_group(0);
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {cmdline}: {e}"));
    drop(cmd); // close our copies of the child's stdio
    let status = wait_or_kill(child, command_timeout(), &cmdline);
    Output {
        cmdline,
        status,
        stdout: read_back(out),
        stderr: read_back(err),
    }
}

/// Shorthand: run `prog args...` (any host program) under the timeout guard.
pub fn sh_output(prog: &str, args: &[&str]) -> Output {
    let mut c = Command::new(prog);
    c.args(args);
    output(c)
}

// ---------------------------------------------------------------------------
// Bundles
// ---------------------------------------------------------------------------

/// Busybox applets symlinked into every bundle's `/bin`.
pub const APPLETS: &[&str] = &[
    "sh", "true", "false", "echo", "cat", "ls", "sleep", "id", "env", "pwd", "ps", "grep", "kill",
    "mount", "hostname", "readlink", "stat", "test", "wc", "head", "touch", "mkdir", "ln", "rm",
    "httpd", "nc", "top", "sed", "awk", "chmod", "tty", "stty", "sort", "tr", "cut", "uname",
    "printf", "tail", "seq",
];

/// Process args for a long-running init that exits 0 on SIGTERM.  (PID 1 of a
/// PID namespace ignores signals it has no handler for, so plain `sleep` would
/// survive `kill TERM`.)  Use [`Runtime::wait_catching_term`] before sending
/// TERM, the trap is installed a few ms after `start`.
pub const TERM_EXITS: &[&str] = &["sh", "-c", "trap 'exit 0' TERM; sleep 1000 & wait"];

/// Process args for a long-running init that only dies from SIGKILL.
pub const SLEEPER: &[&str] = &["sleep", "1000"];

/// A temporary OCI bundle: `rootfs/` with a static busybox and `config.json`
/// as printed by `runc spec`, with `process.terminal` set to false.
pub struct Bundle {
    dir: TempDir,
}

impl Bundle {
    /// A fresh busybox bundle (see the type docs).
    pub fn busybox() -> Bundle {
        let _g = shared();
        let dir = tempfile::Builder::new()
            .prefix("skiff-bundle-")
            .tempdir()
            .expect("tempdir");
        let rootfs = dir.path().join("rootfs");
        for d in ["bin", "proc", "dev", "sys", "tmp", "etc", "root"] {
            fs::create_dir_all(rootfs.join(d)).expect("mkdir rootfs");
        }
        fs::copy("/bin/busybox", rootfs.join("bin/busybox")).expect("copy /bin/busybox");
        for a in APPLETS {
            symlink("busybox", rootfs.join("bin").join(a)).expect("symlink applet");
        }
        fs::write(
            rootfs.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
        )
        .expect("passwd");
        fs::write(rootfs.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").expect("group");
        fs::set_permissions(rootfs.join("tmp"), fs::Permissions::from_mode(0o1777)).expect("chmod");

        // config.json from the reference's `spec`, so the test bundle does not
        // depend on the runtime under test.
        let mut c = Command::new(runc_bin());
        c.arg("spec").current_dir(dir.path());
        output(c).ok();
        let b = Bundle { dir };
        b.edit(|v| v["process"]["terminal"] = Value::Bool(false));
        b
    }

    /// A fresh busybox bundle with the same `config.json` as `self`.
    pub fn duplicate(&self) -> Bundle {
        let b = Bundle::busybox();
        b.set_config(&self.config());
        b
    }

    /// The bundle directory (absolute).
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The bundle directory as a `&str` (for command lines).
    pub fn path_str(&self) -> &str {
        self.path().to_str().expect("utf-8 path")
    }

    pub fn rootfs(&self) -> PathBuf {
        self.path().join("rootfs")
    }

    pub fn config_path(&self) -> PathBuf {
        self.path().join("config.json")
    }

    pub fn config(&self) -> Value {
        let s = fs::read_to_string(self.config_path()).expect("read config.json");
        serde_json::from_str(&s).expect("config.json is JSON")
    }

    pub fn set_config(&self, v: &Value) {
        fs::write(
            self.config_path(),
            serde_json::to_string_pretty(v).expect("serialise"),
        )
        .expect("write config.json");
    }

    /// Edit `config.json` in place as a `serde_json::Value`.
    pub fn edit(&self, f: impl FnOnce(&mut Value)) -> &Self {
        let mut v = self.config();
        f(&mut v);
        self.set_config(&v);
        self
    }

    /// Set `process.args`.
    pub fn set_args(&self, args: &[&str]) -> &Self {
        self.edit(|v| v["process"]["args"] = json!(args))
    }

    /// Append a mount to `mounts`.
    pub fn add_mount(&self, mount: Value) -> &Self {
        self.edit(|v| v["mounts"].as_array_mut().expect("mounts").push(mount))
    }

    /// Bind-mount host directory `host` at `dest` inside the container.
    pub fn add_bind(&self, host: &Path, dest: &str) -> &Self {
        self.add_mount(json!({
            "destination": dest, "type": "bind", "source": host,
            "options": ["rbind", "rw"]
        }))
    }

    /// Remove the namespace of type `ty` from `linux.namespaces`.
    pub fn remove_namespace(&self, ty: &str) -> &Self {
        self.edit(|v| {
            v["linux"]["namespaces"]
                .as_array_mut()
                .expect("namespaces")
                .retain(|n| n["type"] != ty)
        })
    }

    /// Add (or replace) namespace `ty`, optionally joining `path`.
    pub fn set_namespace(&self, ty: &str, path: Option<&Path>) -> &Self {
        self.edit(|v| {
            let ns = v["linux"]["namespaces"].as_array_mut().expect("namespaces");
            ns.retain(|n| n["type"] != ty);
            let mut n = json!({ "type": ty });
            if let Some(p) = path {
                n["path"] = json!(p);
            }
            ns.push(n);
        })
    }

    /// Write a file relative to the bundle directory (e.g. `process.json`)
    /// and return its absolute path.
    pub fn write_file(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.path().join(name);
        fs::write(&p, contents).expect("write bundle file");
        p
    }
}

impl Drop for Bundle {
    /// Remove the bundle while holding the shared lock (removal opens fds).
    fn drop(&mut self) {
        let _g = shared();
        let _ = fs::remove_dir_all(self.dir.path());
    }
}

// ---------------------------------------------------------------------------
// Runtimes
// ---------------------------------------------------------------------------

/// A runtime binary with its own private `--root` directory.
pub struct Runtime {
    pub bin: PathBuf,
    pub root: TempDir,
    /// "skiff" or "runc", for messages.
    pub label: &'static str,
}

impl Runtime {
    /// The runtime under test ([`skiff_bin`]).
    pub fn skiff() -> Runtime {
        Runtime::new(skiff_bin(), "skiff")
    }

    /// The reference runtime ([`runc_bin`]).
    pub fn runc() -> Runtime {
        Runtime::new(runc_bin(), "runc")
    }

    /// Both, in the order `[skiff, runc]`.
    pub fn both() -> [Runtime; 2] {
        [Runtime::skiff(), Runtime::runc()]
    }

    pub fn new(bin: PathBuf, label: &'static str) -> Runtime {
        let root = tempfile::Builder::new()
            .prefix("skiff-root-")
            .tempdir()
            .expect("tempdir");
        Runtime { bin, root, label }
    }

    pub fn root_path(&self) -> &Path {
        self.root.path()
    }

    /// `BIN --root ROOT args...`, not yet run.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--root").arg(self.root.path()).args(args);
        c
    }

    /// Run `BIN --root ROOT args...` under the timeout guard.
    pub fn call(&self, args: &[&str]) -> Output {
        output(self.cmd(args))
    }

    /// `run --bundle B ID` in the foreground.
    pub fn run(&self, bundle: &Bundle, id: &str) -> Output {
        self.call(&["run", "--bundle", bundle.path_str(), id])
    }

    /// `run --detach --bundle B ID`.
    pub fn run_detached(&self, bundle: &Bundle, id: &str) -> Output {
        self.call(&["run", "--detach", "--bundle", bundle.path_str(), id])
    }

    /// `create --bundle B ID`.
    pub fn create(&self, bundle: &Bundle, id: &str) -> Output {
        self.call(&["create", "--bundle", bundle.path_str(), id])
    }

    pub fn start(&self, id: &str) -> Output {
        self.call(&["start", id])
    }

    /// `state ID`, which must succeed; returns the JSON.
    #[track_caller]
    pub fn state(&self, id: &str) -> Value {
        self.call(&["state", id]).ok().json()
    }

    /// `state ID` as a raw [`Output`] (for failure cases).
    pub fn try_state(&self, id: &str) -> Output {
        self.call(&["state", id])
    }

    /// The `status` field of `state ID`, or `None` when `state` fails.
    pub fn status(&self, id: &str) -> Option<String> {
        let o = self.try_state(id);
        if !o.success() {
            return None;
        }
        o.json()["status"].as_str().map(str::to_owned)
    }

    /// The `pid` field of `state ID`.
    #[track_caller]
    pub fn pid(&self, id: &str) -> i32 {
        let st = self.state(id);
        st["pid"]
            .as_i64()
            .unwrap_or_else(|| panic!("no pid in {st}")) as i32
    }

    /// Poll `state` until the status is `want` (10 s deadline).
    #[track_caller]
    pub fn wait_status(&self, id: &str, want: &str) {
        let mut last = None;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            last = self.status(id);
            if last.as_deref() == Some(want) {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
        panic!(
            "{}: container {id} did not become {want:?} (last status {last:?})",
            self.label
        );
    }

    /// Wait until the init process of `id` runs [`TERM_EXITS`] (`argv[0]` is
    /// `sh`, so the runtime's own init code has exec'd) and has its SIGTERM
    /// handler installed (host's `/proc/PID/status` `SigCgt`).
    #[track_caller]
    pub fn wait_catching_term(&self, id: &str) {
        let pid = self.pid(id);
        poll(Duration::from_secs(10), "SIGTERM handler in init", || {
            let argv = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            if !argv.starts_with(format!("{}\0", TERM_EXITS[0]).as_bytes()) {
                return None;
            }
            let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            let cgt = s.lines().find_map(|l| l.strip_prefix("SigCgt:"))?;
            let mask = u64::from_str_radix(cgt.trim(), 16).ok()?;
            (mask & (1 << (libc::SIGTERM - 1)) != 0).then_some(())
        })
    }

    pub fn kill(&self, id: &str, signal: &str) -> Output {
        self.call(&["kill", id, signal])
    }

    pub fn delete(&self, id: &str) -> Output {
        self.call(&["delete", id])
    }

    pub fn delete_force(&self, id: &str) -> Output {
        self.call(&["delete", "--force", id])
    }

    pub fn pause(&self, id: &str) -> Output {
        self.call(&["pause", id])
    }

    pub fn resume(&self, id: &str) -> Output {
        self.call(&["resume", id])
    }

    /// `exec ID args...` (foreground).
    pub fn exec(&self, id: &str, args: &[&str]) -> Output {
        let mut a = vec!["exec", id];
        a.extend_from_slice(args);
        self.call(&a)
    }

    /// create + start with `args` as the process; returns the init pid.
    #[track_caller]
    pub fn start_with(&self, bundle: &Bundle, id: &str, args: &[&str]) -> i32 {
        bundle.set_args(args);
        self.create(bundle, id).ok();
        self.start(id).ok();
        let pid = self.pid(id);
        // `start` may return before the init has exec'd the user's program
        // (runc does): wait until /proc shows it, so tests see its argv.
        if let Some(first) = args.first() {
            let want = format!("{first}\0");
            poll(Duration::from_secs(10), "the container's program", || {
                let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                (cmdline.is_empty() || cmdline.starts_with(want.as_bytes())).then_some(())
            });
        }
        pid
    }

    /// Names in the runtime root directory.
    pub fn root_entries(&self) -> BTreeSet<String> {
        dir_names(self.root.path())
    }
}

impl Drop for Runtime {
    /// Force-delete whatever is left in our private root, so a failed test
    /// does not leave containers behind.  Only ids in *our* root are touched.
    fn drop(&mut self) {
        let _g = shared();
        for id in self.root_entries() {
            let _ = self.delete_force(&id);
        }
        let _ = fs::remove_dir_all(self.root.path());
    }
}

fn dir_names(p: &Path) -> BTreeSet<String> {
    fs::read_dir(p)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------
// Comparing skiff with runc
// ---------------------------------------------------------------------------

/// What [`run_both`] saw, already normalised: the bundle directory reads
/// `$BUNDLE`, the container id `$ID`.
pub struct Both {
    pub skiff: Output,
    pub runc: Output,
}

impl Both {
    /// Assert both runtimes exited with the same code and printed the same
    /// stdout; returns the (shared) stdout.
    #[track_caller]
    pub fn same_stdout(&self) -> &str {
        assert_eq!(
            self.skiff.stdout, self.runc.stdout,
            "stdout differs\nskiff: {}\nrunc:  {}",
            self.skiff, self.runc
        );
        self.same_code();
        &self.runc.stdout
    }

    /// Assert both exited with the same code; returns it.
    #[track_caller]
    pub fn same_code(&self) -> i32 {
        assert_eq!(
            self.skiff.code(),
            self.runc.code(),
            "exit codes differ\nskiff: {}\nrunc:  {}",
            self.skiff,
            self.runc
        );
        self.runc.code()
    }

    /// Apply `f` to both stdouts and assert the results are equal; returns
    /// runc's.
    #[track_caller]
    pub fn same_by<T: PartialEq + fmt::Debug>(&self, f: impl Fn(&str) -> T) -> T {
        let (s, r) = (f(&self.skiff.stdout), f(&self.runc.stdout));
        assert_eq!(
            s, r,
            "normalised stdout differs (left skiff, right runc)\nskiff: {}\nrunc:  {}",
            self.skiff, self.runc
        );
        r
    }
}

/// Build two identical busybox bundles with `setup`, run one in the
/// foreground under skiff and one under runc, and return both outputs with
/// bundle paths and ids replaced by `$BUNDLE` and `$ID`.
pub fn run_both(setup: impl Fn(&Bundle)) -> Both {
    let run = |rt: Runtime| {
        let b = Bundle::busybox();
        setup(&b);
        let id = unique_id();
        rt.run(&b, &id)
            .normalised(&[(b.path_str(), "$BUNDLE"), (&id, "$ID")])
    };
    Both {
        skiff: run(Runtime::skiff()),
        runc: run(Runtime::runc()),
    }
}

/// Build C source `src` into a static binary at `out` with the host's cc
/// (for attack programs that busybox cannot express).
pub fn compile_static(src: &str, out: &Path) {
    let dir = tempfile::tempdir().expect("tempdir");
    let c = dir.path().join("prog.c");
    fs::write(&c, src).expect("write C source");
    let status = Command::new("cc")
        .args(["-static", "-O2", "-o"])
        .arg(out)
        .arg(&c)
        .status()
        .expect("run cc");
    assert!(status.success(), "cc -static {}", out.display());
}

/// create --console-socket, receive the master, start, read until `marker`
/// (or EOF), then clean up.  Returns the text read (CRLF -> LF).
pub fn create_with_console(rt: &Runtime, b: &Bundle, args: &[&str], marker: &str) -> String {
    b.set_args(args);
    b.edit(|v| v["process"]["terminal"] = json!(true));
    let sock = ConsoleSocket::new();
    let id = unique_id();
    rt.call(&[
        "create",
        "--bundle",
        b.path_str(),
        "--console-socket",
        sock.path_str(),
        &id,
    ])
    .ok();
    let master = sock.receive();
    rt.start(&id).ok();
    let text = read_pty(&master, Duration::from_secs(10), |t| t.contains(marker));
    rt.wait_status(&id, "stopped");
    rt.delete(&id).ok();
    text
}

/// Run `f` once with skiff and once with runc, each with a fresh busybox
/// bundle, and return `(skiff's result, runc's result)`.
pub fn on_both<T>(f: impl Fn(&Runtime, &Bundle) -> T) -> (T, T) {
    let s = f(&Runtime::skiff(), &Bundle::busybox());
    let r = f(&Runtime::runc(), &Bundle::busybox());
    (s, r)
}

/// Case-insensitive: does `haystack` contain any of `needles`?
pub fn mentions_any(haystack: &str, needles: &[&str]) -> bool {
    let h = haystack.to_lowercase();
    needles.iter().any(|n| h.contains(&n.to_lowercase()))
}

/// Normalise `/proc/self/mountinfo` text to sorted `mountpoint fstype
/// mount-options super-options` lines (ids, device numbers, roots and sources
/// dropped).
pub fn normalise_mountinfo(text: &str) -> Vec<String> {
    let mut v: Vec<String> = text
        .lines()
        .filter_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            let pre: Vec<&str> = pre.split(' ').collect();
            let post: Vec<&str> = post.split(' ').collect();
            Some(format!(
                "{} {} {} {}",
                pre.get(4)?,
                post.first()?,
                pre.get(5)?,
                post.get(2).unwrap_or(&"")
            ))
        })
        .collect();
    v.sort();
    v
}

// ---------------------------------------------------------------------------
// Leak checking
// ---------------------------------------------------------------------------

/// One measurement of everything a runtime could leak.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Snapshot {
    /// Number of lines in /proc/self/mountinfo.
    pub mount_count: usize,
    /// `mountpoint fstype source` of every mount (multiset, sorted).
    pub mounts: Vec<String>,
    /// Mount points whose path contains a watched directory.
    pub watched_mounts: Vec<String>,
    /// Cgroup directories under /sys/fs/cgroup/*/ named after a watched id.
    pub cgroups: Vec<PathBuf>,
    /// Our open fds: fd -> link target.
    pub fds: BTreeMap<i32, String>,
    /// Our child processes: pid -> comm.
    pub children: BTreeMap<i32, String>,
    /// Entries of every watched runtime root.
    pub root_entries: Vec<(PathBuf, BTreeSet<String>)>,
}

/// Snapshot of mounts, cgroups, fds, children and runtime roots, compared
/// with [`LeakCheck::assert_clean`] at the end of a test.
///
/// While alive it holds the process-wide exclusive lock (see crate docs), so
/// other test threads cannot add fds or children under its nose.
pub struct LeakCheck {
    before: Snapshot,
    roots: Vec<PathBuf>,
    paths: Vec<String>,
    ids: Vec<String>,
    _lock: ExclusiveGuard,
}

/// How deep below each /sys/fs/cgroup/<hierarchy>/ to look for cgroups.
const CGROUP_DEPTH: usize = 6;

impl LeakCheck {
    /// Watch the roots of `runtimes`, mounts under the `bundles` and the
    /// runtime roots, and cgroups whose name contains one of `ids`.
    pub fn new(runtimes: &[&Runtime], bundles: &[&Bundle], ids: &[&str]) -> LeakCheck {
        let lock = exclusive();
        let roots: Vec<PathBuf> = runtimes.iter().map(|r| r.root_path().to_owned()).collect();
        let mut paths: Vec<String> = bundles.iter().map(|b| b.path_str().to_owned()).collect();
        paths.extend(roots.iter().map(|r| r.to_string_lossy().into_owned()));
        let mut lc = LeakCheck {
            before: Snapshot::empty(),
            roots,
            paths,
            ids: ids.iter().map(|s| s.to_string()).collect(),
            _lock: lock,
        };
        lc.before = lc.snapshot();
        lc
    }

    /// The snapshot taken at construction.
    pub fn before(&self) -> &Snapshot {
        &self.before
    }

    /// Measure now.
    pub fn snapshot(&self) -> Snapshot {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut mounts = Vec::new();
        let mut watched = Vec::new();
        let mut count = 0;
        for l in mountinfo.lines() {
            let f: Vec<&str> = l.split(' ').collect();
            let post: Vec<&str> = l.split(" - ").nth(1).unwrap_or("").split(' ').collect();
            let mp = f.get(4).copied().unwrap_or("");
            // `ip netns add` by the network-namespace test (possibly in a
            // parallel nextest process) is ours but not the runtime's.
            if mp.starts_with("/run/netns/skiff-t-") {
                continue;
            }
            count += 1;
            mounts.push(format!(
                "{mp} {} {}",
                post.first().unwrap_or(&""),
                post.get(1).unwrap_or(&"")
            ));
            if self.paths.iter().any(|p| mp.contains(p.as_str())) {
                watched.push(mp.to_owned());
            }
        }
        mounts.sort();
        Snapshot {
            mount_count: count,
            mounts,
            watched_mounts: watched,
            cgroups: find_cgroups(&self.ids),
            fds: open_fds(),
            children: child_processes(),
            root_entries: self
                .roots
                .iter()
                .map(|r| (r.clone(), dir_names(r)))
                .collect(),
        }
    }

    /// Poll (5 s) until nothing is left that was not there at the start,
    /// else panic listing what leaked.
    ///
    /// "Leaked" means: more mountinfo lines or any new mount, any new mount
    /// under the test's dirs, any new cgroup named after a watched id, any
    /// new fd (number and target) or child process of ours, and any change
    /// of the runtime roots' entries.  Things that *vanished* meanwhile are
    /// not leaks (other test threads close fds of their own).
    #[track_caller]
    pub fn assert_clean(self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut leaks = self.before.leaks(&self.snapshot());
        while !leaks.is_empty() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(50));
            leaks = self.before.leaks(&self.snapshot());
        }
        assert!(leaks.is_empty(), "leak detected:\n{leaks}");
    }

    /// Stricter than [`LeakCheck::assert_clean`], for a test that is alone
    /// in its process: poll (5 s) until the snapshot is *exactly* the one
    /// from the start (same mount count and mounts, fds, children, cgroups,
    /// root entries), else panic with both.
    #[track_caller]
    pub fn assert_unchanged(self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut now = self.snapshot();
        while now != self.before && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(50));
            now = self.snapshot();
        }
        assert!(
            now == self.before,
            "state changed:\n{}\nbefore: {:#?}\nafter: {:#?}",
            self.before.leaks(&now),
            self.before,
            now
        );
    }
}

impl Snapshot {
    fn empty() -> Snapshot {
        Snapshot {
            mount_count: 0,
            mounts: vec![],
            watched_mounts: vec![],
            cgroups: vec![],
            fds: BTreeMap::new(),
            children: BTreeMap::new(),
            root_entries: vec![],
        }
    }

    /// What `after` has that `self` (before) had not, human-readable;
    /// empty when nothing leaked.
    pub fn leaks(&self, after: &Snapshot) -> String {
        let mut s = String::new();
        let (added, _) = multiset_diff(&self.mounts, &after.mounts);
        if after.mount_count > self.mount_count || !added.is_empty() {
            s += &format!(
                "  mountinfo lines: {} -> {}\n",
                self.mount_count, after.mount_count
            );
        }
        for m in added {
            s += &format!("  new mount: {m}\n");
        }
        let new_watched: Vec<_> = after
            .watched_mounts
            .iter()
            .filter(|m| !self.watched_mounts.contains(m))
            .collect();
        if !new_watched.is_empty() {
            s += &format!("  mounts under test dirs: {new_watched:?}\n");
        }
        let new_cg: Vec<_> = after
            .cgroups
            .iter()
            .filter(|c| !self.cgroups.contains(c))
            .collect();
        if !new_cg.is_empty() {
            s += &format!("  cgroups: {new_cg:?}\n");
        }
        let new_fds: Vec<_> = after
            .fds
            .iter()
            .filter(|(fd, t)| self.fds.get(fd) != Some(t))
            .collect();
        if !new_fds.is_empty() {
            s += &format!(
                "  fds ({} -> {}), new: {new_fds:?}\n",
                self.fds.len(),
                after.fds.len()
            );
        }
        let new_children: Vec<_> = after
            .children
            .iter()
            .filter(|(p, _)| !self.children.contains_key(p))
            .collect();
        if !new_children.is_empty() {
            s += &format!("  child processes: {new_children:?}\n");
        }
        if self.root_entries != after.root_entries {
            s += &format!(
                "  runtime root entries: {:?} -> {:?}\n",
                self.root_entries, after.root_entries
            );
        }
        s
    }
}

fn multiset_diff(before: &[String], after: &[String]) -> (Vec<String>, Vec<String>) {
    let mut count: BTreeMap<&str, i64> = BTreeMap::new();
    for m in after {
        *count.entry(m).or_default() += 1;
    }
    for m in before {
        *count.entry(m).or_default() -= 1;
    }
    let mut added = vec![];
    let mut removed = vec![];
    for (m, n) in count {
        for _ in 0..n.abs() {
            if n > 0 { &mut added } else { &mut removed }.push(m.to_owned());
        }
    }
    (added, removed)
}

/// Cgroup directories (depth-limited) whose name contains one of `ids`.
pub fn find_cgroups<S: AsRef<str>>(ids: &[S]) -> Vec<PathBuf> {
    fn walk(dir: &Path, depth: usize, ids: &[&str], out: &mut Vec<PathBuf>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            if !e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            if ids.iter().any(|id| name.contains(id)) {
                out.push(e.path());
            }
            if depth > 1 {
                walk(&e.path(), depth - 1, ids, out);
            }
        }
    }
    let ids: Vec<&str> = ids.iter().map(AsRef::as_ref).collect();
    let mut out = vec![];
    if ids.is_empty() {
        return out;
    }
    if let Ok(rd) = fs::read_dir("/sys/fs/cgroup") {
        for h in rd.flatten() {
            walk(&h.path(), CGROUP_DEPTH, &ids, &mut out);
        }
    }
    out.sort();
    out
}

/// Our open fds and what they point to (without the fd used to read the
/// directory itself).
pub fn open_fds() -> BTreeMap<i32, String> {
    let own_dir = format!("/proc/{}/fd", std::process::id());
    let mut m = BTreeMap::new();
    if let Ok(rd) = fs::read_dir("/proc/self/fd") {
        for e in rd.flatten() {
            if let Ok(fd) = e.file_name().to_string_lossy().parse::<i32>() {
                let t = fs::read_link(e.path())
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_default();
                if t != own_dir {
                    m.insert(fd, t);
                }
            }
        }
    }
    m
}

/// Processes whose parent is this (test) process: pid -> comm.
pub fn child_processes() -> BTreeMap<i32, String> {
    let me = std::process::id() as i32;
    let mut m = BTreeMap::new();
    let Ok(rd) = fs::read_dir("/proc") else {
        return m;
    };
    for e in rd.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may contain spaces and parens.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let ppid = stat[close + 1..]
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<i32>().ok());
        if ppid == Some(me) {
            m.insert(pid, stat[open + 1..close].to_owned());
        }
    }
    m
}

// ---------------------------------------------------------------------------
// Console socket
// ---------------------------------------------------------------------------

/// The receiving end of `--console-socket`: a listening unix socket in a
/// private temp dir.  The runtime connects and sends the pty master with
/// SCM_RIGHTS; [`ConsoleSocket::receive`] accepts and returns it.
pub struct ConsoleSocket {
    _dir: TempDir,
    path: PathBuf,
    listener: UnixListener,
}

impl Default for ConsoleSocket {
    fn default() -> Self {
        Self::new()
    }
}

impl ConsoleSocket {
    pub fn new() -> ConsoleSocket {
        let _g = shared();
        let dir = tempfile::Builder::new()
            .prefix("skiff-console-")
            .tempdir()
            .expect("tempdir");
        let path = dir.path().join("console.sock");
        let listener = UnixListener::bind(&path).expect("bind console socket");
        listener.set_nonblocking(true).expect("nonblocking");
        ConsoleSocket {
            _dir: dir,
            path,
            listener,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn path_str(&self) -> &str {
        self.path.to_str().expect("utf-8")
    }

    /// Accept one connection (10 s deadline) and receive one fd from it.
    pub fn receive(&self) -> OwnedFd {
        self.receive_timeout(Duration::from_secs(10))
            .expect("a console socket connection within 10 s")
    }

    /// Like [`ConsoleSocket::receive`], but `None` when no runtime
    /// connects within `timeout` (it failed before making a terminal).
    pub fn receive_timeout(&self, timeout: Duration) -> Option<OwnedFd> {
        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
        let deadline = Instant::now() + timeout;
        let conn = loop {
            if let Ok((conn, _)) = self.listener.accept() {
                break conn;
            }
            if Instant::now() > deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(10));
        };
        conn.set_nonblocking(false).expect("blocking");
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut buf = [0u8; 4096];
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let mut cmsg = nix::cmsg_space!([RawFd; 4]);
        let msg = recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .expect("recvmsg on console socket");
        let mut fds = vec![];
        for c in msg.cmsgs().expect("cmsgs") {
            if let ControlMessageOwned::ScmRights(v) = c {
                fds.extend(v);
            }
        }
        assert_eq!(
            fds.len(),
            1,
            "expected exactly one fd over the console socket"
        );
        // SAFETY: the fd was just received and is owned by nobody else.
        Some(unsafe { OwnedFd::from_raw_fd(fds[0]) })
    }
}

/// Read from a pty master until `done(text so far)` holds, EOF/EIO (all
/// slaves closed), or `timeout`.  `\r\n` is turned into `\n`.
pub fn read_pty(master: &impl AsFd, timeout: Duration, done: impl Fn(&str) -> bool) -> String {
    let fd = master.as_fd().as_raw_fd();
    let deadline = Instant::now() + timeout;
    let mut acc = Vec::new();
    loop {
        let text = String::from_utf8_lossy(&acc).replace("\r\n", "\n");
        let left = deadline.saturating_duration_since(Instant::now());
        if done(&text) || left.is_zero() {
            return text;
        }
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd that lives on this stack for the call.
        let r = unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(1000) as i32) };
        if r <= 0 {
            continue;
        }
        let mut buf = [0u8; 4096];
        // SAFETY: read(2) writes at most `buf.len()` bytes into `buf`.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            // EIO once the last slave fd is closed: that is EOF for a pty.
            return String::from_utf8_lossy(&acc).replace("\r\n", "\n");
        }
        acc.extend_from_slice(&buf[..n as usize]);
    }
}
