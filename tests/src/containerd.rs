//! A private containerd for tests: its own config, root, state and socket
//! in a temporary directory (shim sockets still go under
//! /run/containerd/s), a unique namespace, and cleanup of every task and
//! mount it made. Stopped by PID on drop.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use crate::images::{busybox_layout, layout_ref, sh};
use crate::*;

pub struct Containerd {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub namespace: String,
}

impl Containerd {
    pub fn start() -> Containerd {
        let dir = tempfile::Builder::new()
            .prefix("skiff-containerd-")
            .tempdir()
            .unwrap();
        let d = dir.path();
        std::fs::write(
            d.join("config.toml"),
            format!(
                "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\n[grpc]\n  address = \"{sock}\"\n\
                 [plugins.\"io.containerd.grpc.v1.cri\"]\n  disable = true\n",
                root = d.join("root").display(),
                state = d.join("state").display(),
                sock = d.join("containerd.sock").display()
            ),
        )
        .unwrap();
        let mut c = Containerd {
            child: None,
            dir,
            namespace: format!("skiff-{}", unique_id()),
        };
        c.launch();
        c
    }

    fn launch(&mut self) {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join("containerd.log"))
            .unwrap();
        // containerd finds shims (containerd-shim-skiff-v2) on its PATH:
        // put the build's own first.
        let bin_dir = skiff_bin().parent().unwrap().to_path_buf();
        let path = format!(
            "{}:{}",
            bin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let child = Command::new("containerd")
            .env("PATH", path)
            .arg("--config")
            .arg(self.dir.path().join("config.toml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start containerd");
        self.child = Some(child);
        let sock = self.socket();
        poll(
            std::time::Duration::from_secs(30),
            "containerd to answer",
            || {
                let ok = sock.exists()
                    && Command::new("ctr")
                        .arg("-a")
                        .arg(&sock)
                        .arg("version")
                        .output()
                        .is_ok_and(|o| o.status.success());
                ok.then_some(())
            },
        );
    }

    /// Stop containerd (SIGTERM, as a service manager would) and start it
    /// again on the same root and state: running containers stay.
    pub fn restart(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on the pid of a child we started.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
        self.launch();
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("containerd.sock")
    }

    pub fn ctr_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ctr");
        c.arg("-a")
            .arg(self.socket())
            .arg("-n")
            .arg(&self.namespace)
            .args(args);
        c
    }

    pub fn ctr(&self, args: &[&str]) -> Output {
        output(self.ctr_cmd(args))
    }

    /// Import a busybox image (built with umoci, PATH set) running `cmd`;
    /// returns its name.
    pub fn import_busybox(&self, cmd: &[&str]) -> String {
        let img = busybox_layout(cmd, &["PATH=/bin"]);
        let archive = img.path().join("image.tar");
        sh(Command::new("skopeo")
            .args(["copy", "-q", &layout_ref(&img)])
            .arg(format!("oci-archive:{}:v1", archive.display())));
        let name = format!("docker.io/skiff-test/busybox-{}", unique_id());
        self.ctr(&[
            "images",
            "import",
            "--base-name",
            &name,
            "--digests",
            archive.to_str().unwrap(),
        ])
        .ok();
        let all = self.ctr(&["images", "ls", "-q"]).ok().stdout;
        all.lines()
            .find(|l| l.starts_with(&name))
            .unwrap_or_else(|| panic!("imported image not listed: {all}"))
            .to_string()
    }

    /// `ctr task ls` for `id`: (pid, status), if listed.
    pub fn task(&self, id: &str) -> Option<(i32, String)> {
        let ls = self.ctr(&["task", "ls"]).stdout;
        let line = ls
            .lines()
            .find(|l| l.split_whitespace().next() == Some(id))?;
        let mut f = line.split_whitespace().skip(1);
        Some((f.next()?.parse().ok()?, f.next()?.to_string()))
    }

    /// The host pid of task `id`'s init.
    pub fn task_pid(&self, id: &str) -> i32 {
        self.task(id)
            .unwrap_or_else(|| panic!("task {id} not listed"))
            .0
    }

    /// Wait (10 s) until task `id` has `status` (RUNNING, PAUSED, STOPPED).
    pub fn wait_status(&self, id: &str, status: &str) {
        poll(
            std::time::Duration::from_secs(10),
            &format!("task {id} to be {status}"),
            || self.task(id).filter(|(_, s)| s == status).map(drop),
        );
    }

    /// The ttrpc socket of the shim serving container `id`, from the
    /// `address` file in its bundle.
    pub fn shim_socket(&self, id: &str) -> Option<PathBuf> {
        let bundle = self
            .dir
            .path()
            .join("state/io.containerd.runtime.v2.task")
            .join(&self.namespace)
            .join(id);
        let address = std::fs::read_to_string(bundle.join("address")).ok()?;
        Some(PathBuf::from(address.trim().trim_start_matches("unix://")))
    }

    /// The pid of the shim serving container `id` (`-id <id>` on its command line).
    pub fn shim_pid(&self, id: &str) -> Option<i32> {
        for e in std::fs::read_dir("/proc").ok()?.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                continue;
            };
            let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
            let is_shim = args
                .first()
                .is_some_and(|a| a.windows(15).any(|w| w == b"containerd-shim"));
            let has_ns = args
                .windows(2)
                .any(|w| w[0] == b"-namespace" && w[1] == self.namespace.as_bytes());
            let has_id = args
                .windows(2)
                .any(|w| w[0] == b"-id" && w[1] == id.as_bytes());
            if is_shim && has_ns && has_id {
                return Some(pid);
            }
        }
        None
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if self.child.is_some() {
            let tasks = self.ctr(&["task", "ls", "-q"]).stdout;
            for t in tasks.lines() {
                let _ = self.ctr(&["task", "kill", "-s", "SIGKILL", t]);
            }
            for t in tasks.lines() {
                let _ = self.ctr(&["task", "delete", "-f", t]);
            }
            for c in self.ctr(&["containers", "ls", "-q"]).stdout.lines() {
                let _ = self.ctr(&["containers", "rm", c]);
            }
        }
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on the pid of a child we started.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
        crate::unmount_below(self.dir.path());
        // The runtimes' per-namespace state directories, empty by now.
        for rt in ["skiff", "runc"] {
            let _ =
                std::fs::remove_dir(Path::new("/run/containerd").join(rt).join(&self.namespace));
        }
        remove_namespace_cgroups(&self.namespace);
    }
}

/// ctr gives each container the cgroup `/<namespace>/<id>`. A runtime
/// makes the parent and, like runc, leaves it when the container goes (it
/// is shared by the namespace's containers). The namespace is this test's
/// own, so its parent is removed from every hierarchy (and from the cgroup2
/// root on a v2 host); rmdir(2) refuses one that still holds anything, and
/// that is left for the leak checks to report.
fn remove_namespace_cgroups(namespace: &str) {
    let root = Path::new("/sys/fs/cgroup");
    let _ = std::fs::remove_dir(root.join(namespace));
    for h in std::fs::read_dir(root).into_iter().flatten().flatten() {
        let _ = std::fs::remove_dir(h.path().join(namespace));
    }
}
