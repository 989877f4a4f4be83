//! Rootless: skiff run by an ordinary user, next to runc run by the same
//! user on the same bundle (a real unprivileged user, made for each test
//! with subordinate id ranges of its own, and removed after it).
//!
//! Both runtimes use their default state directories under the user's
//! `$XDG_RUNTIME_DIR`, as a user at a shell would.

use skiff_tests::*;
use std::fs;
use std::path::PathBuf;

/// skiff and runc, with the state directory each uses by default.
fn runtimes(u: &TestUser) -> [(&'static str, PathBuf, PathBuf); 2] {
    [
        ("skiff", skiff_bin(), u.runtime_dir.join("skiff")),
        ("runc", runc_bin(), u.runtime_dir.join("runc")),
    ]
}

/// The part of the output before a `---` line, and the normalised
/// mountinfo after it.
fn split(out: &str) -> (String, Vec<String>) {
    let (head, mounts) = out.split_once("---\n").unwrap_or((out, ""));
    (head.to_string(), normalise_mountinfo(mounts))
}

#[test]
fn spec_rootless_is_runcs_byte_for_byte() {
    let u = TestUser::create();
    let mut texts = Vec::new();
    for (label, bin, _) in runtimes(&u) {
        let dir = u.home.path().join(format!("spec-{label}"));
        fs::create_dir(&dir).unwrap();
        u.chown(&dir);
        let mut c = u.cmd(&bin, &["spec", "--rootless"]);
        c.current_dir(&dir);
        output(c).ok();
        texts.push(fs::read(dir.join("config.json")).unwrap());
    }
    assert_eq!(
        String::from_utf8_lossy(&texts[0]),
        String::from_utf8_lossy(&texts[1])
    );
    let v: serde_json::Value = serde_json::from_slice(&texts[0]).unwrap();
    assert_eq!(v["linux"]["uidMappings"][0]["hostID"], u.uid);
    assert_eq!(v["linux"]["gidMappings"][0]["hostID"], u.gid);
}

#[test]
fn run_as_a_user_matches_runc() {
    let u = TestUser::create();
    let b = u.bundle();
    b.set_args(&[
        "sh",
        "-c",
        "id; grep -E '^(Cap|NoNewPrivs|Seccomp:)' /proc/self/status; hostname; \
         cat /proc/self/uid_map /proc/self/gid_map /proc/self/setgroups; ls -ln /dev; \
         echo ---; cat /proc/self/mountinfo; exit 7",
    ]);
    let mut seen = Vec::new();
    for (label, bin, state) in runtimes(&u) {
        let out = u.run(&bin, &["run", "--bundle", b.path_str(), &unique_id()]);
        assert_eq!(out.code(), 7, "{label}: {out}");
        u.assert_clean(&state);
        seen.push((label, split(&out.stdout)));
    }
    let (s, r) = (&seen[0].1, &seen[1].1);
    assert_eq!(s.0, r.0, "ids, capabilities, hostname, maps, /dev");
    assert_eq!(s.1, r.1, "mounts");
    assert!(s.0.starts_with("uid=0(root) gid=0(root)"), "{}", s.0);
    assert!(
        s.0.contains(&format!("0 {:>10} {:>10}", u.uid, 1)),
        "{}",
        s.0
    );
    assert!(s.0.contains("deny"), "setgroups denied: {}", s.0);
}

#[test]
fn create_exec_kill_delete_as_a_user() {
    let u = TestUser::create();
    let b = u.bundle();
    // A second process inside, forked by the init (one left by `exec -d`
    // would be reparented outside the container, to a reaper the test does
    // not control).
    b.set_args(&["sh", "-c", "sleep 1000 & wait"]);
    for (label, bin, state) in runtimes(&u) {
        let id = unique_id();
        let call = |args: &[&str]| u.run(&bin, args);
        call(&["create", "--bundle", b.path_str(), &id]).ok();
        call(&["start", &id]).ok();
        let st: serde_json::Value = serde_json::from_str(&call(&["state", &id]).ok().stdout)
            .unwrap_or_else(|e| panic!("{label}: state: {e}"));
        assert_eq!(st["status"], "running", "{label}");
        let pid = st["pid"].as_i64().unwrap() as i32;
        assert!(
            call(&["list", "-q"]).ok().stdout.lines().any(|l| l == id),
            "{label}"
        );
        let exec = call(&["exec", &id, "sh", "-c", "id -u; exit 3"]);
        assert_eq!(exec.code(), 3, "{label}: {exec}");
        assert_eq!(exec.stdout, "0\n", "{label}");
        // The init and its child, both listed. (runc cannot: without a
        // cgroup it has no list to read.)
        if label == "skiff" {
            let pids: Vec<i32> =
                serde_json::from_str(&call(&["ps", "--format", "json", &id]).ok().stdout).unwrap();
            assert!(pids.contains(&pid) && pids.len() == 2, "{label}: {pids:?}");
        }
        call(&["kill", &id, "KILL"]).ok();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while call(&["state", &id]).stdout.contains("\"running\"") {
            assert!(
                std::time::Instant::now() < deadline,
                "{label}: still running"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        call(&["delete", &id]).ok();
        u.assert_clean(&state);
    }
}

#[test]
fn kill_all_and_delete_force_reach_every_process() {
    let u = TestUser::create();
    let b = u.bundle();
    b.set_args(&["sh", "-c", "sleep 1000 & sleep 1000 & wait"]);
    let id = unique_id();
    let call = |args: &[&str]| u.run(&skiff_bin(), args);
    call(&["run", "-d", "--bundle", b.path_str(), &id]).ok();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let count = || {
        serde_json::from_str::<Vec<i32>>(&call(&["ps", "--format", "json", &id]).ok().stdout)
            .unwrap()
            .len()
    };
    while count() < 3 {
        assert!(std::time::Instant::now() < deadline, "three processes");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    call(&["kill", "--all", &id, "KILL"]).ok();
    call(&["delete", "--force", &id]).ok();
    u.assert_clean(&u.runtime_dir.join("skiff"));
}

#[test]
fn a_multi_range_mapping_goes_through_newuidmap() {
    let u = TestUser::create();
    let b = u.bundle();
    let maps = |own: u32| {
        json!([
            {"containerID": 0, "hostID": own, "size": 1},
            {"containerID": 1, "hostID": u.sub_start, "size": SUB_COUNT}
        ])
    };
    b.edit(|v| {
        v["linux"]["uidMappings"] = maps(u.uid);
        v["linux"]["gidMappings"] = maps(u.gid);
        v["process"]["user"] = json!({"uid": 1000, "gid": 1000});
        v["root"]["readonly"] = json!(false);
        v["process"]["args"] = json!([
            "sh",
            "-c",
            "id; cat /proc/self/uid_map /proc/self/gid_map /proc/self/setgroups; \
             echo x > /tmp/owned; stat -c '%u %g' /tmp/owned; rm /tmp/owned"
        ]);
    });
    let mut outs = Vec::new();
    for (label, bin, state) in runtimes(&u) {
        let out = u.run(&bin, &["run", "--bundle", b.path_str(), &unique_id()]);
        assert_eq!(out.code(), 0, "{label}: {out}");
        u.assert_clean(&state);
        outs.push(out.stdout);
    }
    assert_eq!(outs[0], outs[1]);
    assert!(outs[0].starts_with("uid=1000 gid=1000"), "{}", outs[0]);
    assert!(
        outs[0].contains(&format!("1 {:>10} {:>10}", u.sub_start, SUB_COUNT)),
        "{}",
        outs[0]
    );
    assert!(outs[0].contains("1000 1000\n"), "{}", outs[0]);
    // exec as the container's user 1000 too.
    let id = unique_id();
    b.set_args(&["sleep", "1000"]);
    u.run(&skiff_bin(), &["run", "-d", "--bundle", b.path_str(), &id])
        .ok();
    let out = u.run(&skiff_bin(), &["exec", &id, "id", "-u"]).ok();
    assert_eq!(out.stdout, "1000\n");
    u.run(&skiff_bin(), &["delete", "-f", &id]).ok();
    u.assert_clean(&u.runtime_dir.join("skiff"));
}

/// Run the bundle with skiff as the user; it must fail, mention every one
/// of `needles`, and leave nothing behind.
fn refused(u: &TestUser, b: &Bundle, mut cmd: std::process::Command, needles: &[&str]) -> Output {
    let id = unique_id();
    cmd.args(["run", "--bundle", b.path_str(), &id]);
    let out = output(cmd).fail();
    for n in needles {
        assert!(out.stderr.contains(n), "no {n:?} in: {out}");
    }
    assert!(!out.stderr.contains("panicked"), "{out}");
    u.assert_clean(&u.runtime_dir.join("skiff"));
    out
}

#[test]
fn bad_rootless_input_is_refused_clearly_and_leaves_nothing() {
    let u = TestUser::create();
    let b = u.bundle();
    let skiff = skiff_bin();

    // A range outside the user's subordinate ids.
    let outside = u.sub_start + SUB_COUNT;
    b.edit(|v| {
        v["linux"]["uidMappings"] = json!([
            {"containerID": 0, "hostID": u.uid, "size": 1},
            {"containerID": 1, "hostID": outside, "size": 10}
        ]);
    });
    refused(
        &u,
        &b,
        u.cmd(&skiff, &[]),
        &["linux.uidMappings[1]", &outside.to_string(), "/etc/subuid"],
    );
    // runc refuses it as well (newuidmap does).
    let id = unique_id();
    u.run(&runc_bin(), &["run", "--bundle", b.path_str(), &id])
        .fail();
    let _ = u.run(&runc_bin(), &["delete", "-f", &id]);

    // No newuidmap on PATH for a range that needs it.
    b.edit(|v| {
        v["linux"]["uidMappings"] = json!([
            {"containerID": 0, "hostID": u.uid, "size": 1},
            {"containerID": 1, "hostID": u.sub_start, "size": 10}
        ]);
    });
    let mut c = u.cmd(&skiff, &[]);
    c.env("PATH", "/nonexistent");
    refused(&u, &b, c, &["newuidmap", "uidmap"]);

    // Single mappings again: the rest is about the state directory.
    b.edit(|v| {
        v["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": u.uid, "size": 1}]);
    });
    let mut c = u.cmd(&skiff, &[]);
    c.env_remove("XDG_RUNTIME_DIR");
    refused(&u, &b, c, &["XDG_RUNTIME_DIR is not set", "--root"]);
    let mut c = u.cmd(&skiff, &[]);
    c.env("XDG_RUNTIME_DIR", "/tmp");
    let out = refused(&u, &b, c, &["XDG_RUNTIME_DIR /tmp", "owned by uid 0"]);
    assert!(out.stderr.contains(&format!("uid {}", u.uid)), "{out}");

    // Supplementary groups need setgroups, which a single-gid map denies.
    b.edit(|v| v["process"]["user"]["additionalGids"] = json!([5]));
    refused(
        &u,
        &b,
        u.cmd(&skiff, &[]),
        &["process.user.additionalGids", "setgroups"],
    );
    b.edit(|v| {
        v["process"]["user"]
            .as_object_mut()
            .unwrap()
            .remove("additionalGids");
    });

    // What only CAP_SYS_RESOURCE may do: lower oom_score_adj, raise a hard
    // rlimit.
    b.edit(|v| v["process"]["oomScoreAdj"] = json!(-500));
    refused(
        &u,
        &b,
        u.cmd(&skiff, &[]),
        &["process.oomScoreAdj -500", "CAP_SYS_RESOURCE"],
    );
    b.edit(|v| {
        v["process"].as_object_mut().unwrap().remove("oomScoreAdj");
    });
    let (_, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    b.edit(|v| {
        v["process"]["rlimits"] =
            json!([{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": hard + 1}]);
    });
    refused(
        &u,
        &b,
        u.cmd(&skiff, &[]),
        &[
            "process.rlimits",
            &(hard + 1).to_string(),
            "CAP_SYS_RESOURCE",
        ],
    );
    b.edit(|v| {
        v["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 1024}]);
    });
    // A fresh sysfs needs a network namespace of the user namespace's own.
    b.add_mount(json!({"destination": "/mnt", "type": "sysfs", "source": "sysfs"}));
    refused(
        &u,
        &b,
        u.cmd(&skiff, &[]),
        &["/mnt (type sysfs)", "user namespace"],
    );
    b.edit(|v| {
        v["mounts"].as_array_mut().unwrap().pop();
    });

    // Limits need a cgroup the user may write; there is none here.
    b.edit(|v| v["linux"]["resources"] = json!({"pids": {"limit": 10}}));
    refused(
        &u,
        &b,
        u.cmd(&skiff, &[]),
        &["linux.resources.pids", "delegated"],
    );
}

#[test]
fn pause_and_update_without_a_cgroup_say_why() {
    let u = TestUser::create();
    let b = u.bundle();
    b.set_args(&["sleep", "1000"]);
    let id = unique_id();
    let call = |args: &[&str]| u.run(&skiff_bin(), args);
    call(&["run", "-d", "--bundle", b.path_str(), &id]).ok();
    let out = call(&["pause", &id]).fail();
    assert!(out.stderr.contains("no cgroup"), "{out}");
    let out = call(&["update", "--pids-limit", "10", &id]).fail();
    assert!(out.stderr.contains("no cgroup"), "{out}");
    assert!(call(&["state", &id]).ok().stdout.contains("\"running\""));
    call(&["delete", "-f", &id]).ok();
    u.assert_clean(&u.runtime_dir.join("skiff"));
}

/// A cgroup v2 subtree delegated to the user, as systemd's `Delegate=yes`
/// makes one: the directory and its `cgroup.procs`,
/// `cgroup.subtree_control` and `cgroup.threads` are the user's, and the
/// user's commands start in its leaf `session` (moving a process between
/// two cgroups needs write access to their common ancestor's
/// `cgroup.procs`, so the user's own processes must already be inside).
struct Delegated {
    dir: PathBuf,
}

impl Delegated {
    fn new(u: &TestUser) -> Delegated {
        let dir = PathBuf::from("/sys/fs/cgroup").join(format!("skiff-rl-{}", u.name));
        fs::create_dir(&dir).unwrap();
        fs::create_dir(dir.join("session")).unwrap();
        fs::write(dir.join("cgroup.subtree_control"), "+memory +pids").unwrap();
        for f in [
            "",
            "cgroup.procs",
            "cgroup.subtree_control",
            "cgroup.threads",
        ] {
            let p = dir.join(f);
            std::os::unix::fs::chown(&p, Some(u.uid), Some(u.gid)).unwrap();
        }
        for f in ["", "cgroup.procs"] {
            let p = dir.join("session").join(f);
            std::os::unix::fs::chown(&p, Some(u.uid), Some(u.gid)).unwrap();
        }
        Delegated { dir }
    }

    /// `skiff args...` as the user, started in the subtree's `session`.
    fn skiff(&self, u: &TestUser, args: &[&str]) -> Output {
        let inner = u.cmd(&skiff_bin(), args);
        let mut c = std::process::Command::new("/bin/sh");
        c.arg("-c")
            .arg("echo $$ > \"$0\" && exec \"$@\"")
            .arg(self.dir.join("session/cgroup.procs"))
            .arg(inner.get_program())
            .args(inner.get_args())
            .env_clear()
            .envs(inner.get_envs().filter_map(|(k, v)| Some((k, v?))))
            .current_dir(u.home.path());
        output(c)
    }
}

impl Drop for Delegated {
    fn drop(&mut self) {
        for _ in 0..100 {
            let _ = fs::remove_dir(self.dir.join("c1"));
            let _ = fs::remove_dir(self.dir.join("session"));
            if fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

#[test]
fn a_delegated_cgroup_v2_subtree_gives_limits_and_pause() {
    if !unified_host() {
        eprintln!("skipped: a hybrid host has no cgroup v2 controllers to delegate (runs in the VM test bed)");
        return;
    }
    let u = TestUser::create();
    let cg = Delegated::new(&u);
    let b = u.bundle();
    let cgroup_path = format!("/skiff-rl-{}/c1", u.name);
    b.edit(|v| {
        v["linux"]["cgroupsPath"] = json!(cgroup_path);
        v["linux"]["resources"] = json!({"memory": {"limit": 64 << 20}, "pids": {"limit": 20}});
    });
    b.set_args(&["sleep", "1000"]);
    let id = unique_id();
    cg.skiff(&u, &["run", "-d", "--bundle", b.path_str(), &id])
        .ok();
    let c1 = cg.dir.join("c1");
    let file = |f: &str| fs::read_to_string(c1.join(f)).unwrap().trim().to_string();
    assert_eq!(file("memory.max"), (64u64 << 20).to_string());
    assert_eq!(file("pids.max"), "20");
    // The memory limit holds: sort(1) keeps its input (one 100 MB line) in
    // memory, and is OOM-killed.
    let out = cg
        .skiff(
            &u,
            &[
                "exec",
                &id,
                "sh",
                "-c",
                "head -c 100000000 /dev/zero | sort >/dev/null; echo $?",
            ],
        )
        .ok();
    assert_eq!(out.stdout.trim(), "137", "{out}");
    // The pids limit holds: forks beyond it fail.
    let out = cg.skiff(
        &u,
        &[
            "exec",
            &id,
            "sh",
            "-c",
            "i=0; while [ $i -lt 40 ]; do sleep 100 & i=$((i+1)); done; echo started",
        ],
    );
    assert!(
        out.stderr.contains("can't fork") || out.stderr.contains("Resource temporarily"),
        "{out}"
    );
    assert!(file("pids.current").parse::<u32>().unwrap() <= 20);
    // Pause and resume through cgroup.freeze.
    cg.skiff(&u, &["pause", &id]).ok();
    assert_eq!(file("cgroup.freeze"), "1");
    assert!(cg
        .skiff(&u, &["state", &id])
        .ok()
        .stdout
        .contains("\"paused\""));
    cg.skiff(&u, &["resume", &id]).ok();
    assert_eq!(file("cgroup.freeze"), "0");
    // Stats come from the cgroup too.
    let ev = cg.skiff(&u, &["events", "--stats", &id]).ok();
    assert!(ev.stdout.contains("\"pids\""), "{ev}");
    cg.skiff(&u, &["delete", "-f", &id]).ok();
    assert!(!c1.exists(), "the container's cgroup is removed");
    u.assert_clean(&u.runtime_dir.join("skiff"));
}

#[test]
fn rootless_podman_runs_execs_stops_and_removes_through_skiff() {
    let u = TestUser::create();
    // The image: the busybox rootfs, imported by the user.
    let b = Bundle::busybox();
    let tar = u.home.path().join("busybox.tar");
    let mut c = std::process::Command::new("tar");
    c.arg("-C").arg(b.rootfs()).arg("-cf").arg(&tar).arg(".");
    output(c).ok();
    u.chown(&tar);
    let storage = u.home.path().join("storage");
    let run_root = u.runtime_dir.join("containers");
    // podman checks the runtime's path as the user, and the checkout may
    // lie where the user cannot look (the fresh root's /root is 0700): a
    // copy in the user's own directory.
    let skiff = u.home.path().join("skiff");
    fs::copy(skiff_bin(), &skiff).unwrap();
    u.chown(&skiff);
    let podman = |args: &[&str]| {
        let mut all = vec![
            "--runtime",
            skiff.to_str().unwrap(),
            "--root",
            storage.to_str().unwrap(),
            "--runroot",
            run_root.to_str().unwrap(),
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "file",
        ];
        all.extend_from_slice(args);
        u.run(std::path::Path::new("/usr/bin/podman"), &all)
    };
    podman(&[
        "import",
        tar.to_str().unwrap(),
        "localhost/skiff-rootless-bb",
    ])
    .ok();
    // slirp4netns needs /dev/net/tun, which some hosts keep root-only (this
    // development machine does; the VM test bed's devtmpfs does not).
    let tun = u.run(
        std::path::Path::new("/bin/sh"),
        &["-c", "exec 3<>/dev/net/tun"],
    );
    let network = if tun.status.success() {
        "slirp4netns"
    } else {
        eprintln!("/dev/net/tun is not open to users here: --network none");
        "none"
    };
    let name = unique_id();
    let out = podman(&[
        "run",
        "-d",
        "--network",
        network,
        "--name",
        &name,
        "localhost/skiff-rootless-bb",
        "sleep",
        "1000",
    ])
    .ok();
    let long_id = out.stdout.trim().to_string();
    // skiff holds it, in the state directory podman gave it.
    assert!(
        u.runtime_dir.join("skiff").join(&long_id).is_dir(),
        "{:?}",
        fs::read_dir(&u.runtime_dir)
            .map(|r| r.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
    );
    let exec = podman(&[
        "exec",
        &name,
        "sh",
        "-c",
        "id -u; cat /proc/net/dev; exit 4",
    ]);
    assert_eq!(exec.code(), 4, "{exec}");
    assert!(exec.stdout.starts_with("0\n"), "{exec}");
    if network == "slirp4netns" {
        assert!(
            exec.stdout.contains("tap0"),
            "slirp4netns's tap device: {exec}"
        );
    }
    let ps = podman(&["ps", "--format", "{{.Names}} {{.Status}}"]).ok();
    assert!(ps.stdout.contains(&format!("{name} Up")), "{ps}");
    podman(&["stop", "-t", "1", &name]).ok();
    let ps = podman(&["ps", "-a", "--format", "{{.Names}} {{.Status}}"]).ok();
    assert!(ps.stdout.contains(&format!("{name} Exited")), "{ps}");
    podman(&["rm", &name]).ok();
    assert!(!u.runtime_dir.join("skiff").join(&long_id).exists());
    // A foreground run, its exit code passed through.
    let out = podman(&[
        "run",
        "--rm",
        "--network",
        network,
        "localhost/skiff-rootless-bb",
        "sh",
        "-c",
        "exit 6",
    ]);
    assert_eq!(out.code(), 6, "{out}");
    let _ = podman(&["system", "reset", "--force"]);
}

/// CVE-2019-5736 without root. A rootless skiff does not re-execute from a
/// protected copy when its binary belongs to the host's root and nobody else
/// may write it: the container has no more rights than its user, who cannot
/// write the file either. A copy the user owns is still sealed in a memfd.
/// As in `escapes::runtime_binary_cannot_be_reopened_for_writing`, the
/// attacker's handle is `/proc/PID/exe` of the waiting init, opened `O_PATH`
/// (by the test, so it does not depend on winning a race); it is handed to
/// a process of the user (who has every right a container of theirs has),
/// which reopens it for writing once nothing runs the file any more.
#[test]
fn a_rootless_container_cannot_reach_the_runtime_binary() {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let u = TestUser::create();
    let b = u.bundle();
    b.set_args(&["sleep", "1000"]);
    let own = u.home.path().join("skiff-own");
    fs::copy(skiff_bin(), &own).unwrap();
    u.chown(&own);
    let reopen = r#"
import errno, fcntl, os, time
for _ in range(1000):
    try:
        fd = os.open("/proc/self/fd/3", os.O_WRONLY)
    except OSError as e:
        if e.errno == errno.ETXTBSY:
            time.sleep(0.01)
            continue
        print("refused:", errno.errorcode[e.errno])
        break
    sealed = fcntl.fcntl(fd, fcntl.F_GET_SEALS) & fcntl.F_SEAL_WRITE
    print("sealed copy" if sealed else "WRITABLE")
    break
"#;
    for (label, bin, expected) in [
        ("root's binary", skiff_bin(), "refused: EACCES"),
        ("the user's own copy", own, "sealed copy"),
    ] {
        let id = unique_id();
        u.run(&bin, &["create", "--bundle", b.path_str(), &id]).ok();
        let st: serde_json::Value =
            serde_json::from_str(&u.run(&bin, &["state", &id]).ok().stdout).unwrap();
        let handle = nix::fcntl::open(
            format!("/proc/{}/exe", st["pid"]).as_str(),
            nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .unwrap();
        u.run(&bin, &["delete", "-f", &id]).ok();
        let mut c = u.cmd(std::path::Path::new("/usr/bin/python3"), &["-c", reopen]);
        let raw = handle.as_raw_fd();
        // SAFETY: dup2 and fcntl are async-signal-safe; they only give the
        // child the handle as fd 3, without close-on-exec (dup2 onto itself
        // would keep the flag), before it execs.
        unsafe {
            c.pre_exec(move || {
                let rc = if raw == 3 {
                    libc::fcntl(3, libc::F_SETFD, 0)
                } else {
                    libc::dup2(raw, 3)
                };
                if rc < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let out = output(c);
        assert_eq!(out.stdout.trim(), expected, "{label}: {out}");
        u.assert_clean(&u.runtime_dir.join("skiff"));
    }
    // --explain says which way it went.
    let id = unique_id();
    let out = u.run(
        &skiff_bin(),
        &["--explain", "create", "--bundle", b.path_str(), &id],
    );
    u.run(&skiff_bin(), &["delete", "-f", &id]).ok();
    assert!(
        out.stderr
            .contains("not re-executing from a protected copy"),
        "{out}"
    );
}
