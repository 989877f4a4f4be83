//! Running the `skiff` binary for each task operation, the way containerd's
//! runc shim runs `runc`.
//!
//! The shim is a subreaper (prctl(2) `PR_SET_CHILD_SUBREAPER`): the
//! container's init, orphaned when `skiff create` exits, becomes the shim's
//! child, so the shim learns its exit status. A SIGCHLD handler in the
//! containerd-shim crate reaps every child as soon as it exits, so the
//! shim never calls wait(2) itself: it subscribes to the crate's exit
//! monitor before starting a command and waits for that pid's exit there.
//! Errors come from skiff's JSON log (`--log-format json`): the last
//! `error` line is what containerd shows its user.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use containerd_shim::monitor::{monitor_subscribe, wait_pid, Topic};

/// How to call skiff for one container.
#[derive(Debug, Clone)]
pub struct Runtime {
    /// The `skiff` binary ([`find_binary`]).
    pub binary: PathBuf,
    /// `--root`: skiff's state directory for this containerd namespace.
    pub root: PathBuf,
    /// `--log`, in the bundle.
    pub log: PathBuf,
}

/// The child's standard streams for one call.
#[derive(Default)]
pub struct CallIo {
    /// The child's stdin; `/dev/null` when `None`.
    pub stdin: Option<std::os::fd::OwnedFd>,
    /// The child's stdout; `/dev/null` when `None`, unless `capture` is set.
    pub stdout: Option<std::os::fd::OwnedFd>,
    /// The child's stderr; `/dev/null` when `None`.
    pub stderr: Option<std::os::fd::OwnedFd>,
    /// Read skiff's stdout (for `ps`). Never for create/exec: the
    /// container inherits that stdout and would hold the pipe open.
    pub capture: bool,
}

/// Where the skiff binary is: next to this shim, else on PATH.
pub fn find_binary() -> PathBuf {
    if let Ok(me) = std::env::current_exe() {
        let sibling = me.with_file_name("skiff");
        if sibling.is_file() {
            return sibling;
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join("skiff");
            if p.is_file() {
                return p;
            }
        }
    }
    PathBuf::from("skiff")
}

impl Runtime {
    /// Calls for a container of containerd namespace `namespace`: `--root` is
    /// `/run/containerd/skiff/<namespace>`, `--log` is `log.json` in `bundle`.
    pub fn new(namespace: &str, bundle: &Path) -> Runtime {
        Runtime {
            binary: find_binary(),
            root: PathBuf::from("/run/containerd/skiff").join(namespace),
            log: bundle.join("log.json"),
        }
    }

    /// The last error skiff logged, or `fallback`.
    fn last_error(&self, fallback: String) -> String {
        skiff_runtime::logging::last_error(&self.log).unwrap_or(fallback)
    }

    /// Run `skiff <args>`; its stdout on success, skiff's error otherwise.
    pub fn call(&self, args: &[&str], io: CallIo) -> Result<String, String> {
        let sub = monitor_subscribe(Topic::Pid).map_err(|e| format!("subscribe to exits: {e}"))?;
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--root")
            .arg(&self.root)
            .arg("--log")
            .arg(&self.log)
            .arg("--log-format")
            .arg("json")
            .args(args);
        cmd.stdin(io.stdin.map_or_else(Stdio::null, Stdio::from));
        let capture = io.capture && io.stdout.is_none();
        cmd.stdout(match io.stdout {
            Some(fd) => Stdio::from(fd),
            None if capture => Stdio::piped(),
            None => Stdio::null(),
        });
        cmd.stderr(io.stderr.map_or_else(Stdio::null, Stdio::from));
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("run {}: {e}", self.binary.display()))?;
        let mut out = String::new();
        if capture {
            if let Some(mut so) = child.stdout.take() {
                let _ = std::io::Read::read_to_string(&mut so, &mut out);
            }
        }
        let code = wait_pid(child.id() as i32, sub);
        if code == 0 {
            Ok(out)
        } else {
            Err(self.last_error(format!("skiff {} exited with status {code}", args[0])))
        }
    }
}
