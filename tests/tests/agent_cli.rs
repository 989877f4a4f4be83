//! The node agent end to end, as users drive it: bad manifests reported with
//! their reason, apply, logs -f and delete through the CLI, log rotation,
//! image pulls by pull policy, and the monitor's command line.
//!
//! Real pods from manifest files, run by the skiff runtime, networked by
//! Debian's CNI plugins inside a network namespace made for each test,
//! observed through the agent's API and CLI (see `skiff_tests::agent`).

use std::time::{Duration, Instant};

use serde_json::Value;
use skiff_tests::agent::{
    condition, container, events, logs_when, phase, pod_yaml, poll_until, s, stdout, Agent,
};

const T: Duration = Duration::from_secs(60);

#[test]
fn bad_input_gets_a_reason_and_the_rest_keeps_running() {
    let a = Agent::start();
    a.manifest(
        "good.yaml",
        &pod_yaml(
            "good",
            "  containers:\n  - name: c\n    image: IMAGE\n    command: [sleep, \"1000\"]\n",
        ),
    );
    a.manifest(
        "broken.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: [unclosed\n",
    );
    a.manifest(
        "unknown.yaml",
        &pod_yaml(
            "unknown",
            "  containers:\n  - name: c\n    image: IMAGE\n    imagePulPolicy: Never\n",
        ),
    );
    a.manifest("volume.yaml", &pod_yaml("volume", "  containers:\n  - name: c\n    image: IMAGE\n  volumes:\n  - name: v\n    configMap: {name: x}\n"));
    a.manifest(
        "noimage.yaml",
        &pod_yaml(
            "noimage",
            "  containers:\n  - name: c\n    image: 127.0.0.1:1/nope:1\n",
        ),
    );
    a.manifest(
        "nocmd.yaml",
        &pod_yaml(
            "nocmd",
            "  containers:\n  - name: c\n    image: IMAGE\n    command: [/no/such/binary]\n",
        ),
    );
    a.manifest("badport.yaml", &pod_yaml("badport", "  containers:\n  - name: c\n    image: IMAGE\n    command: [sleep, \"1000\"]\n    readinessProbe:\n      httpGet: {port: web, path: /}\n      periodSeconds: 1\n"));
    a.manifest(
        ".hidden.yaml",
        &pod_yaml("hidden", "  containers:\n  - name: c\n    image: IMAGE\n"),
    );
    let good = a.wait_pod("good", T, "ready", |p| condition(p, "Ready") == "True");
    assert_eq!(phase(&good), "Running");
    let msg = |p: &Value| s(&p["status"]["message"]).to_string();
    let broken = a.wait_pod("broken", T, "invalid", |p| {
        p["status"]["reason"] == "InvalidManifest"
    });
    assert!(
        msg(&broken).contains("broken.yaml: invalid YAML"),
        "{}",
        msg(&broken)
    );
    let unknown = a.wait_pod("unknown", T, "invalid", |p| {
        p["status"]["reason"] == "InvalidManifest"
    });
    assert_eq!(
        msg(&unknown),
        "spec.containers[0].imagePulPolicy: unknown field"
    );
    let volume = a.wait_pod("volume", T, "invalid", |p| {
        p["status"]["reason"] == "InvalidManifest"
    });
    assert_eq!(
        msg(&volume),
        "spec.volumes[0].configMap: a static pod cannot use secrets, config maps or service account tokens (only pods from the API server can)"
    );
    let noimage = a.wait_pod("noimage", T, "ImagePullBackOff", |p| {
        container(p, "c")["state"]["waiting"]["reason"] == "ImagePullBackOff"
    });
    assert!(
        s(&container(&noimage, "c")["state"]["waiting"]["message"]).contains("127.0.0.1:1/nope:1")
    );
    let nocmd = a.wait_pod("nocmd", T, "start error", |p| {
        container(p, "c")["lastState"]["terminated"]["reason"] == "StartError"
    });
    let why = s(&container(&nocmd, "c")["lastState"]["terminated"]["message"]);
    assert!(why.contains("/no/such/binary"), "{why}");
    assert_eq!(
        container(&nocmd, "c")["lastState"]["terminated"]["exitCode"],
        128
    );
    let table = stdout(&a.cli(&["get", "pods"]));
    for want in ["InvalidManifest", "ImagePullBackOff"] {
        assert!(table.contains(want), "{table}");
    }
    assert!(
        table.contains("CrashLoopBackOff") || table.contains("StartError"),
        "{table}"
    );
    assert!(a.pod("hidden").is_none(), "dot files are ignored");
    let ev = events(&a);
    for want in [
        "port \\\"web\\\" is not the name of a container port",
        "imagePulPolicy: unknown field",
        "Back-off pulling image",
    ] {
        assert!(ev.contains(want), "events lack {want:?}:\n{ev}");
    }
    let describe = stdout(&a.cli(&["describe", "pod", "nocmd"]));
    assert!(describe.contains("/no/such/binary"), "{describe}");
    // And the good pod never noticed.
    let good2 = a.pod("good").unwrap();
    assert_eq!(container(&good2, "c")["restartCount"], 0);
    assert_eq!(condition(&good2, "Ready"), "True");
    a.stop_all();
    a.assert_clean();
}

#[test]
fn apply_follow_logs_and_delete_through_the_cli() {
    let a = Agent::start();
    let file = a.path("ticker.yaml");
    std::fs::write(
        &file,
        pod_yaml("ticker", "  containers:\n  - name: c\n    image: IMAGE\n    command: [sh, -c, 'i=0; while true; do echo line $i; i=$((i+1)); sleep 0.1; done']\n"),
    )
    .unwrap();
    let out = a.cli(&["apply", "-f", file.to_str().unwrap()]);
    assert_eq!(stdout(&out), "pod/ticker configured\n", "{out:?}");
    a.wait_pod("ticker", T, "running", |p| {
        container(p, "c")["ready"] == true
    });
    // A bad manifest is refused by apply and not written.
    std::fs::write(
        a.path("bad.yaml"),
        pod_yaml(
            "bad",
            "  containers:\n  - name: c\n    image: IMAGE\n    stdin: true\n",
        ),
    )
    .unwrap();
    let out = a.cli(&["apply", "-f", a.path("bad.yaml").to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("spec.containers[0].stdin: not supported"),
        "{out:?}"
    );
    assert!(!a.path("manifests/bad.yaml").exists());
    // logs -f streams new lines as they come: it must deliver lines written
    // after it started, not only the old ones.
    let seen_before = logs_when(&a, &["ticker"], |l| !l.is_empty())
        .lines()
        .count();
    let mut child = std::process::Command::new(skiff_tests::agent_bin())
        .args(["logs", "--listen", &a.socket(), "-f", "ticker"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let rx = skiff_tests::line_channel(child.stdout.take().unwrap());
    let want = format!("line {}", seen_before + 10);
    let deadline = Instant::now() + T;
    let mut lines = Vec::new();
    while !lines.contains(&want) && Instant::now() < deadline {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
            lines.push(l);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(lines.contains(&want), "follow never got {want}: {lines:?}");
    assert!(
        lines
            .iter()
            .enumerate()
            .all(|(i, l)| *l == format!("line {i}")),
        "{lines:?}"
    );
    // exec -it runs the command on a terminal (script(1) gives the client one).
    let cmdline = format!(
        "{} exec --listen {} -it ticker -- tty",
        skiff_tests::agent_bin().display(),
        a.socket()
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &cmdline, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(stdout(&out).contains("/dev/pts/"), "{out:?}");
    let out = a.cli(&["delete", "pod", "ticker"]);
    assert!(out.status.success(), "{out:?}");
    assert!(!a.path("manifests/ticker.yaml").exists());
    let t0 = Instant::now();
    while a.pod("ticker").is_some() {
        assert!(t0.elapsed() < T, "not deleted");
        std::thread::sleep(Duration::from_millis(100));
    }
    a.assert_clean();
}

#[test]
fn container_logs_rotate_by_size() {
    let a = Agent::start_with(&[
        "--container-log-max-size",
        "2000",
        "--container-log-max-files",
        "2",
    ]);
    a.manifest(
        "chatty.yaml",
        &pod_yaml(
            "chatty",
            "  containers:\n  - name: c\n    image: IMAGE\n    command: [sh, -c, 'i=0; while [ $i -lt 300 ]; do echo \"line $i\"; i=$((i+1)); done; exec sleep 1000']\n",
        ),
    );
    let p = a.wait_pod("chatty", T, "running", |p| {
        container(p, "c")["ready"] == true
    });
    let dir = a.path(&format!(
        "data/pod-logs/default_chatty_{}/c",
        s(&p["metadata"]["uid"])
    ));
    poll_until(|| stdout(&a.cli(&["logs", "chatty"])).ends_with("line 299\n"));
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["0.log", "0.log.1", "0.log.2"], "rotated files");
    for n in &names {
        let len = std::fs::metadata(dir.join(n)).unwrap().len();
        assert!(len <= 2000, "{n} is {len} bytes");
    }
    // `logs` reads the live file: the newest lines, complete.
    let text = stdout(&a.cli(&["logs", "chatty"]));
    let last: Vec<&str> = text.lines().collect();
    assert!(last.len() > 10 && last.len() < 300, "{} lines", last.len());
    a.stop_all();
    a.assert_clean();
}

#[test]
fn images_are_pulled_from_a_registry_by_pull_policy() {
    use skiff_tests::images::{RegistrySetup, TestRegistry};
    let a = Agent::start();
    // The registry runs in the agent's network namespace, where the agent
    // can reach it on 127.0.0.1 (plain HTTP, as for every loopback one).
    let reg = TestRegistry::start(RegistrySetup {
        netns: Some(a.netns.clone()),
        ..Default::default()
    });
    let layout = skiff_tests::agent::busybox_image();
    reg.push(
        &format!("oci:{}:1", layout.display()),
        "team/busybox:1",
        &[],
    );
    let image = format!("{}/team/busybox:1", reg.host());
    let pod = |name: &str, policy: &str| {
        pod_yaml(
            name,
            &format!("  containers:\n  - name: c\n    image: {image}\n    imagePullPolicy: {policy}\n    command: [sleep, \"1000\"]\n"),
        )
    };
    a.manifest("first.yaml", &pod("first", "Always"));
    let first = a.wait_pod("first", T, "ready", |p| condition(p, "Ready") == "True");
    let image_id = s(&container(&first, "c")["imageID"]).to_string();
    assert!(
        image_id.starts_with(&format!("{}/team/busybox@sha256:", reg.host())),
        "{image_id}"
    );
    let ev = a.http("/events?pod=first");
    assert!(
        ev.contains("Pulling image") && ev.contains("Successfully pulled image"),
        "{ev}"
    );
    // IfNotPresent finds it in the store; Always asks the registry again.
    a.manifest("cached.yaml", &pod("cached", "IfNotPresent"));
    a.manifest("again.yaml", &pod("again", "Always"));
    for p in ["cached", "again"] {
        a.wait_pod(p, T, "ready", |p| condition(p, "Ready") == "True");
    }
    let cached = a.http("/events?pod=cached");
    assert!(
        cached.contains("already present on machine") && !cached.contains("Pulling"),
        "{cached}"
    );
    assert!(a
        .http("/events?pod=again")
        .contains("Successfully pulled image"));
    let manifests = reg.log().matches("/v2/team/busybox/manifests/1").count();
    assert!(
        manifests >= 2,
        "the registry saw {manifests} manifest requests:\n{}",
        reg.log()
    );
    // A tag the registry does not have: ErrImagePull, then ImagePullBackOff.
    a.manifest(
        "missing.yaml",
        &pod("missing", "IfNotPresent").replace("busybox:1", "busybox:nope"),
    );
    let missing = a.wait_pod("missing", T, "back-off", |p| {
        container(p, "c")["state"]["waiting"]["reason"] == "ImagePullBackOff"
    });
    assert!(s(&container(&missing, "c")["state"]["waiting"]["message"]).contains("busybox:nope"));
    a.stop_all();
    a.assert_clean();
}

/// A data directory the pause program cannot run from (a `noexec` mount, as
/// Debian's /run is) is refused when the agent starts, with the reason,
/// and nothing is left in it: otherwise every pod's sandbox would fail.
#[test]
fn a_data_dir_on_a_noexec_mount_is_refused_at_start() {
    use nix::mount::{mount, MsFlags};
    /// Unmounts the test's tmpfs however the test ends.
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            skiff_tests::unmount_below(&self.0);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    mount(
        Some("tmpfs"),
        &data,
        Some("tmpfs"),
        MsFlags::MS_NOEXEC | MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("size=1m"),
    )
    .unwrap();
    let _unmount = Unmount(data.clone());
    let p = |name: &str| dir.path().join(name).display().to_string();
    let mut child = std::process::Command::new(skiff_tests::agent_bin())
        .args([
            "serve",
            "--manifests",
            &p("manifests"),
            "--state-dir",
            &p("state"),
        ])
        .arg("--data-dir")
        .arg(&data)
        .args(["--listen", &format!("unix://{}", p("agent.sock"))])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the agent started on a noexec data directory");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{} is on a file system mounted noexec",
            data.display()
        )),
        "{stderr}"
    );
    let left: Vec<_> = std::fs::read_dir(&data)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().contains("pause"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// The monitor's command line is read the same way by `skiff-monitor` and
/// by the agent's own `monitor` subcommand (its fallback when no
/// `skiff-monitor` is beside it): flags that cannot run are refused with
/// the reason, and flags that can reach the monitor itself, which here
/// records its pid and then finds no FIFOs to take over.
#[test]
fn both_monitor_command_lines_read_the_same_flags() {
    let agent = skiff_tests::agent_bin();
    let monitor = agent.with_file_name("skiff-monitor");
    // SKIFF_AGENT_BIN may name an agent without its skiff-monitor.
    let bins = [Some(&monitor).filter(|m| m.exists()), Some(&agent)];
    for (bin, sub) in bins.into_iter().flatten().map(|b| (b, "monitor")) {
        let dir = tempfile::tempdir().unwrap();
        let run = |extra: &[&str]| {
            let out = std::process::Command::new(bin)
                .arg(sub)
                .args([
                    "--skiff",
                    "/nonexistent/skiff",
                    "--root",
                    "/nonexistent/root",
                ])
                .args(["--id", "c1", "--dir"])
                .arg(dir.path())
                .args(extra)
                .output()
                .unwrap();
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        };
        let out = std::process::Command::new(bin)
            .args([sub, "--help"])
            .output()
            .unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && help.contains("(--bundle DIR | --adopt PID)"),
            "{}: {help}",
            bin.display()
        );
        let (code, err) = run(&["--bundle", "/b", "--adopt", "1"]);
        assert_eq!(code, Some(2), "{}: {err}", bin.display());
        assert!(err.contains("usage: skiff-monitor monitor"), "{err}");
        assert!(
            err.contains("--bundle and --adopt exclude each other"),
            "{}: {err}",
            bin.display()
        );
        let (code, err) = run(&["--adopt", "1", "--log-max-files", "many"]);
        assert_eq!(code, Some(2), "{}: {err}", bin.display());
        assert!(
            err.contains("--log-max-files \"many\""),
            "{}: {err}",
            bin.display()
        );
        assert!(
            !dir.path().join("monitor.pid").exists(),
            "refused before it ran"
        );
        let pid = std::process::id().to_string();
        let (code, err) = run(&["--adopt", &pid, "--log-max-size=0"]);
        assert_eq!(code, Some(1), "{}: {err}", bin.display());
        assert!(
            err.contains("monitor: open the FIFOs in"),
            "{}: {err}",
            bin.display()
        );
        assert!(
            dir.path().join("monitor.pid").exists(),
            "{}: the monitor ran",
            bin.display()
        );
    }
}
