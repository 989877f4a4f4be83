//! Create: mount the rootfs containerd prepared, open the stdio it asked
//! for, run `skiff create` with a pid file (and a console socket for a
//! terminal), then record the init and its cgroup and publish TaskCreate.
//! A failure at any step undoes the steps before it, so containerd can
//! retry with nothing left behind.

use std::path::{Path, PathBuf};

use containerd_shim::api;
use containerd_shim::protos::events::task::{TaskCreate, TaskIO};
use containerd_shim::protos::protobuf::MessageField;
use containerd_shim::protos::topics;
use containerd_shim::protos::ttrpc::Code;
use containerd_shim::TtrpcResult;

use super::tasks::Proc;
use super::{err, TaskService};
use crate::io::{self, Stdio};
use crate::runtime::CallIo;

impl TaskService {
    /// The Create call (see the module docs).
    pub(super) fn create_task(
        &self,
        req: api::CreateTaskRequest,
    ) -> TtrpcResult<api::CreateTaskResponse> {
        let bundle = PathBuf::from(&req.bundle);
        let stdio = Stdio {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        if !req.rootfs.is_empty() {
            mount_rootfs(&req.rootfs, &bundle.join("rootfs"))
                .map_err(|e| err(Code::INTERNAL, e))?;
        }
        {
            let mut t = self.lock();
            t.id = req.id.clone();
            t.bundle = bundle.clone();
            t.rootfs_mounted = !req.rootfs.is_empty();
            t.procs.insert(String::new(), Proc::new(stdio.clone()));
        }
        let fail = |msg: String| {
            if !req.rootfs.is_empty() {
                unmount_rootfs(&bundle);
            }
            self.lock().procs.remove("");
            err(Code::UNKNOWN, format!("OCI runtime create failed: {msg}"))
        };
        let prepared = io::prepare(&stdio).map_err(|e| fail(format!("open stdio: {e}")))?;
        let pid_file = bundle.join("init.pid");
        let b = bundle.display().to_string();
        let pf = pid_file.display().to_string();
        let mut args = vec!["create", "--bundle", &b, "--pid-file", &pf];
        let sock_path;
        if let Some(s) = &prepared.console_socket {
            sock_path = s.path().display().to_string();
            args.extend(["--console-socket", sock_path.as_str()]);
        }
        args.push(&req.id);
        let rt = self.runtime(&bundle);
        rt.call(&args, prepared.call).map_err(fail)?;
        // From here the container exists: a failure must delete it too.
        let fail_created = |msg: String| {
            let _ = rt.call(&["delete", "--force", &req.id], CallIo::default());
            fail(msg)
        };
        let mut keep = prepared.keep;
        if let Some(s) = prepared.console_socket {
            io::receive_console(s, &stdio, &mut keep)
                .map_err(|e| fail_created(format!("console: {e}")))?;
        }
        let pid = read_pid(&pid_file).map_err(fail_created)?;
        let cgroup = cgroup_of(&rt.root, &req.id);
        {
            let mut t = self.lock();
            t.cgroup = cgroup.clone();
            if let Some(p) = t.procs.get_mut("") {
                p.pid = pid;
                p.io = keep;
            }
        }
        if let Some(paths) = cgroup {
            self.watch_oom(paths, &req.id);
        }
        self.publish(
            topics::TASK_CREATE_EVENT_TOPIC,
            Box::new(TaskCreate {
                container_id: req.id.clone(),
                bundle: req.bundle.clone(),
                rootfs: req.rootfs.clone(),
                io: MessageField::some(TaskIO {
                    stdin: req.stdin.clone(),
                    stdout: req.stdout.clone(),
                    stderr: req.stderr.clone(),
                    terminal: req.terminal,
                    ..Default::default()
                }),
                pid: pid as u32,
                ..Default::default()
            }),
        );
        Ok(api::CreateTaskResponse {
            pid: pid as u32,
            ..Default::default()
        })
    }
}

/// The container's cgroup paths, from skiff's state.
fn cgroup_of(root: &Path, id: &str) -> Option<skiff_runtime::cgroups::CgroupPaths> {
    skiff_runtime::container::Container::cgroup_paths(root, id).ok()
}

pub(super) fn read_pid(path: &Path) -> Result<i32, String> {
    std::fs::read_to_string(path)
        .map_err(|e| format!("read {}: {e}", path.display()))?
        .trim()
        .parse()
        .map_err(|e| format!("pid file {}: {e}", path.display()))
}

/// Mount the rootfs containerd prepared (usually one overlay) at `target`.
fn mount_rootfs(
    mounts: &[containerd_shim::protos::types::mount::Mount],
    target: &Path,
) -> Result<(), String> {
    for m in mounts {
        containerd_shim::mount::mount_rootfs(
            Some(m.type_.as_str()).filter(|s| !s.is_empty()),
            Some(m.source.as_str()).filter(|s| !s.is_empty()),
            &m.options,
            target,
        )
        .map_err(|e| format!("mount rootfs at {}: {e}", target.display()))?;
    }
    Ok(())
}

pub(super) fn unmount_rootfs(bundle: &Path) {
    let _ = nix::mount::umount2(&bundle.join("rootfs"), nix::mount::MntFlags::MNT_DETACH);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_files_are_read_strictly() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("pid");
        std::fs::write(&f, "4242\n").unwrap();
        assert_eq!(read_pid(&f).unwrap(), 4242);
        std::fs::write(&f, "nope").unwrap();
        assert!(read_pid(&f).unwrap_err().contains("pid file"));
        assert!(read_pid(&d.path().join("missing"))
            .unwrap_err()
            .starts_with("read "));
    }

    #[test]
    fn a_containers_cgroup_comes_from_its_state() {
        let d = tempfile::tempdir().unwrap();
        assert!(cgroup_of(d.path(), "c1").is_none(), "no state, no cgroup");
        std::fs::create_dir(d.path().join("c1")).unwrap();
        std::fs::write(
            d.path().join("c1/state.json"),
            r#"{"cgroupPaths": {"mode": "unified", "paths": {"": "/sys/fs/cgroup/x"}}, "config": {}}"#,
        )
        .unwrap();
        let p = cgroup_of(d.path(), "c1").unwrap();
        assert!(p.is_v2());
        assert_eq!(p.unified(), Some(Path::new("/sys/fs/cgroup/x")));
    }
}
