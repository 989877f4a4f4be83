//! Temporary OCI bundles with a static busybox rootfs.

use super::*;

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
