//! skiff as podman's OCI runtime (`podman --runtime /path/to/skiff`): run,
//! detached run with exec, stop and rm, exit codes, and a terminal session
//! driven through script(1). podman runs with a private root, runroot and
//! tmpdir, cgroupfs, file events, no network, and ulimits this machine can
//! grant (it lacks CAP_SYS_RESOURCE).

use std::process::Command;

use skiff_tests::images::{busybox_layout, layout_ref, sh};
use skiff_tests::*;

struct Podman {
    dir: tempfile::TempDir,
    image: String,
}

impl Podman {
    fn new() -> Podman {
        let dir = tempfile::Builder::new()
            .prefix("skiff-podman-")
            .tempdir()
            .unwrap();
        std::fs::write(
            dir.path().join("containers.conf"),
            "[containers]\ndefault_ulimits = [\"nofile=20000:20000\", \"nproc=32768:32768\"]\n\
             netns = \"none\"\n[engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n",
        )
        .unwrap();
        let img = busybox_layout(&["sh"], &["PATH=/bin"]);
        let archive = dir.path().join("image.tar");
        sh(Command::new("skopeo")
            .args(["copy", "-q", &layout_ref(&img)])
            .arg(format!(
                "oci-archive:{}:skiff-test/busybox:v1",
                archive.display()
            )));
        let p = Podman {
            dir,
            image: "localhost/skiff-test/busybox:v1".into(),
        };
        p.call(&["load", "-q", "-i", archive.to_str().unwrap()])
            .ok();
        p
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let d = self.dir.path();
        let mut c = Command::new("podman");
        c.env("CONTAINERS_CONF", d.join("containers.conf"))
            .arg("--root")
            .arg(d.join("storage"))
            .arg("--runroot")
            .arg(d.join("run"))
            .arg("--tmpdir")
            .arg(d.join("tmp"))
            .arg("--runtime")
            .arg(skiff_bin())
            .args(args);
        c
    }

    fn call(&self, args: &[&str]) -> Output {
        output(self.cmd(args))
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.cmd(&["rm", "-af"]).output();
        let _ = self.cmd(&["system", "reset", "-f"]).output();
        unmount_below(self.dir.path());
    }
}

#[test]
fn podman_run_exit_codes_and_output() {
    let p = Podman::new();
    let out = p.call(&[
        "run",
        "--rm",
        &p.image,
        "sh",
        "-c",
        "echo hi from podman; exit 5",
    ]);
    assert_eq!(
        (out.code(), out.stdout.as_str()),
        (5, "hi from podman\n"),
        "{out}"
    );
    let out = p
        .call(&["run", "--rm", &p.image, "sh", "-c", "ulimit -n"])
        .ok();
    assert_eq!(out.stdout, "20000\n");
    let out = p.call(&["run", "--rm", &p.image, "/no/such-binary"]);
    assert_ne!(out.code(), 0);
    assert!(out.stderr.contains("/no/such-binary"), "{out}");
}

#[test]
fn podman_detached_exec_stop_rm() {
    let p = Podman::new();
    let name = unique_id();
    p.call(&[
        "run",
        "-d",
        "--name",
        &name,
        &p.image,
        "sh",
        "-c",
        "trap 'exit 0' TERM; while true; do sleep 0.1; done",
    ])
    .ok();
    let out = p.call(&["exec", &name, "sh", "-c", "echo exec-ok; exit 6"]);
    assert_eq!((out.code(), out.stdout.as_str()), (6, "exec-ok\n"), "{out}");
    p.call(&["stop", "-t", "5", &name]).ok();
    let state = p
        .call(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.ExitCode}}",
            &name,
        ])
        .ok();
    assert_eq!(state.stdout.trim(), "exited 0");
    p.call(&["rm", &name]).ok();
    assert!(p.call(&["ps", "-aq"]).ok().stdout.trim().is_empty());
}

#[test]
fn podman_terminal_session() {
    let p = Podman::new();
    let mut parts: Vec<String> = vec!["podman".into()];
    let c = p.cmd(&[
        "run",
        "--rm",
        "-t",
        &p.image,
        "sh",
        "-c",
        "tty; test -t 0 && echo TTY-OK",
    ]);
    parts.extend(c.get_args().map(|a| format!("'{}'", a.to_string_lossy())));
    let line = format!(
        "CONTAINERS_CONF={} {}",
        p.dir.path().join("containers.conf").display(),
        parts.join(" ")
    );
    let out = output({
        let mut s = Command::new("script");
        s.args(["-qec", &line, "/dev/null"]);
        s
    });
    assert!(out.stdout.contains("/dev/pts/0"), "{out}");
    assert!(out.stdout.contains("TTY-OK"), "{out}");
}
