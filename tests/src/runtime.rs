//! A runtime binary with a private `--root`, and skiff compared with runc.

use super::*;

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

pub(crate) fn dir_names(p: &Path) -> BTreeSet<String> {
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
