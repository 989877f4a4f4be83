//! A throw-away unprivileged user, for the rootless tests: made with
//! useradd(8), given subordinate uid and gid ranges of its own in
//! `/etc/subuid` and `/etc/subgid`, and an `$XDG_RUNTIME_DIR`; commands run
//! as it through setpriv(1). Dropping it ends its processes (all started by
//! the test) and removes it, its ranges and its directory with userdel(8).

use super::*;

/// How many subordinate ids each test user gets (as useradd's default).
pub const SUB_COUNT: u32 = 65536;

/// An unprivileged user that exists for one test.
pub struct TestUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// The first of its subordinate uids and gids (the same numbers).
    pub sub_start: u32,
    /// Its `$XDG_RUNTIME_DIR`: mode 0700, owned by it.
    pub runtime_dir: PathBuf,
    /// A scratch directory it owns (bundles go here).
    pub home: TempDir,
}

/// Run an administration command, retrying while another test holds the
/// lock on /etc/passwd (useradd and userdel take it exclusively).
fn admin(args: &[&str]) -> Output {
    let mut last = None;
    for _ in 0..50 {
        let mut c = Command::new(args[0]);
        c.args(&args[1..]);
        let out = output(c);
        if out.status.success() {
            return out;
        }
        let busy = out.stderr.contains("lock") || out.stderr.contains("try again");
        last = Some(out);
        if !busy {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    last.expect("ran")
}

impl TestUser {
    /// A new user `skrl<pid><n>` with a private group and the subordinate
    /// range `1_000_000 + uid * 65536` (unique, since uids are).
    pub fn create() -> TestUser {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "skrl{}x{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        admin(&[
            "useradd",
            "--no-create-home",
            "--user-group",
            "--shell",
            "/bin/sh",
            "-K",
            "SUB_UID_COUNT=0",
            "-K",
            "SUB_GID_COUNT=0",
            &name,
        ])
        .ok();
        let user = nix::unistd::User::from_name(&name)
            .ok()
            .flatten()
            .expect("the new user");
        let (uid, gid) = (user.uid.as_raw(), user.gid.as_raw());
        let sub_start = 1_000_000 + uid * SUB_COUNT;
        let range = format!("{}-{}", sub_start, sub_start + SUB_COUNT - 1);
        admin(&[
            "usermod",
            "--add-subuids",
            &range,
            "--add-subgids",
            &range,
            &name,
        ])
        .ok();
        let home = tempfile::Builder::new()
            .prefix("skiff-rootless-")
            .tempdir()
            .expect("tempdir");
        let runtime_dir = home.path().join("run");
        fs::create_dir(&runtime_dir).expect("mkdir");
        let u = TestUser {
            name,
            uid,
            gid,
            sub_start,
            runtime_dir,
            home,
        };
        u.chown(u.home.path());
        fs::set_permissions(&u.runtime_dir, fs::Permissions::from_mode(0o700)).expect("chmod");
        fs::set_permissions(u.home.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        u
    }

    /// Give `path` (recursively, symlinks themselves) to the user.
    pub fn chown(&self, path: &Path) {
        let mut c = Command::new("chown");
        c.args(["-R", "-h", &format!("{}:{}", self.uid, self.gid)])
            .arg(path);
        output(c).ok();
    }

    /// `program args...` as the user: no supplementary groups, no
    /// capabilities, a minimal environment with its `$XDG_RUNTIME_DIR`.
    pub fn cmd(&self, program: &Path, args: &[&str]) -> Command {
        let mut c = Command::new("/usr/bin/setpriv");
        c.arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid))
            .args(["--clear-groups", "--inh-caps=-all", "--"])
            .arg(program)
            .args(args)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .env("HOME", self.home.path())
            .env("XDG_RUNTIME_DIR", &self.runtime_dir)
            .current_dir(self.home.path());
        c
    }

    /// Run `program args...` as the user.
    pub fn run(&self, program: &Path, args: &[&str]) -> Output {
        output(self.cmd(program, args))
    }

    /// A busybox bundle in the user's directory, owned by it, with the
    /// rootless `config.json` that runc writes for it (`runc spec
    /// --rootless`, run as the user: its ids are mapped to root).
    pub fn bundle(&self) -> Bundle {
        let b = Bundle::busybox();
        fs::remove_file(b.config_path()).expect("rm config.json");
        self.chown(b.path());
        let mut c = self.cmd(&runc_bin(), &["spec", "--rootless"]);
        c.current_dir(b.path());
        output(c).ok();
        b.edit(|v| v["process"]["terminal"] = Value::Bool(false));
        self.chown(b.path());
        b
    }

    /// The pids of the user's live processes (zombies excluded: they wait
    /// for a parent outside the test to reap them, and hold nothing).
    pub fn processes(&self) -> Vec<i32> {
        let mut out = Vec::new();
        for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(status) = fs::read_to_string(e.path().join("status")) else {
                continue;
            };
            let field = |k: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(k))
                    .map(|v| v.split_whitespace().collect::<Vec<_>>())
                    .unwrap_or_default()
            };
            let zombie = field("State:").first() == Some(&"Z");
            if !zombie && field("Uid:").get(1) == Some(&self.uid.to_string().as_str()) {
                out.push(pid);
            }
        }
        out
    }

    /// Nothing of the user's left running, and `dir` (a state root) empty.
    pub fn assert_clean(&self, dir: &Path) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.processes().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            self.processes().is_empty(),
            "processes of {} left: {:?}",
            self.name,
            self.processes()
        );
        let left: Vec<_> = fs::read_dir(dir)
            .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{} holds {left:?}", dir.display());
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        // Everything running as the user was started by this test.
        for pid in self.processes() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        // The ranges first (userdel removes them too, but a range left
        // behind would be a change to the host that outlives the test).
        let range = format!("{}-{}", self.sub_start, self.sub_start + SUB_COUNT - 1);
        let _ = admin(&[
            "usermod",
            "--del-subuids",
            &range,
            "--del-subgids",
            &range,
            &self.name,
        ]);
        let _ = admin(&["userdel", &self.name]);
    }
}
