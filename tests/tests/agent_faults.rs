//! The node agent under faults: the agent killed with SIGKILL at random
//! moments while its pods start and while they are torn down, a container's
//! monitor killed, a pod's pause process killed. Each time the node must
//! converge: every pod running and ready exactly once (no duplicate
//! sandbox or container, no restart that did not happen), and once the
//! manifests are gone, nothing left (the harness's `assert_clean`: mounts,
//! runtime state, netns pins, veths, IPAM leases, monitors, pause
//! processes, cgroups).

use std::time::{Duration, Instant};

use serde_json::Value;
use skiff_tests::agent::{condition, container, pod_yaml, Agent};
use skiff_tests::fault::Rng;

const T: Duration = Duration::from_secs(60);

fn trials() -> u64 {
    std::env::var("SKIFF_AGENT_FAULT_TRIALS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10)
}

/// Two pods, one with an init container, both with an HTTP readiness
/// probe, so a start goes through every step: sandbox, CNI, image, bundle,
/// init, app, probe.
fn manifest() -> String {
    let web = |name: &str, init: bool| {
        let init = if init {
            "  initContainers:\n  - name: setup\n    image: IMAGE\n    command: [sh, -c, 'echo ready > /www/ready']\n    volumeMounts: [{name: www, mountPath: /www}]\n"
        } else {
            ""
        };
        pod_yaml(
            name,
            &format!(
                "  volumes: [{{name: www, emptyDir: {{}}}}]\n{init}  containers:\n  - name: web\n    image: IMAGE\n    command: [sh, -c, 'echo ok > /www/healthz; exec httpd -f -p 8080 -h /www']\n    volumeMounts: [{{name: www, mountPath: /www}}]\n    readinessProbe:\n      httpGet: {{path: /healthz, port: 8080}}\n      periodSeconds: 1\n"
            ),
        )
    };
    format!("{}---\n{}", web("f1", true), web("f2", false))
}

fn all_ready(a: &Agent) -> bool {
    let pods = a.pods();
    pods.len() == 2 && pods.iter().all(|p| condition(p, "Ready") == "True")
}

/// The runtime's containers, by name.
fn runtime_containers(a: &Agent) -> Vec<String> {
    let out = std::process::Command::new(skiff_tests::skiff_bin())
        .arg("--root")
        .arg(a.path("state/runtime"))
        .args(["list", "-q"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect()
}

/// Every pod is there once: one sandbox and one instance of each
/// container, no restart counted, the monitors one per app container (a
/// pause container has none).
fn assert_exactly_once(a: &Agent, what: &str) {
    let pods = a.pods();
    for p in &pods {
        assert_eq!(
            container(p, "web")["restartCount"],
            0,
            "{what}: a restart was counted\n{}\nagent log:\n{}",
            serde_json::to_string_pretty(p).unwrap(),
            a.log()
        );
    }
    let ids = runtime_containers(a);
    let pauses = ids.iter().filter(|i| i.starts_with("k8s_POD_")).count();
    let webs = ids.iter().filter(|i| i.starts_with("k8s_web_")).count();
    assert_eq!(
        (pauses, webs),
        (2, 2),
        "{what}: runtime containers {ids:?}\nagent log:\n{}",
        a.log()
    );
    let monitors = std::process::Command::new("pgrep")
        .args(["-f", &format!("monitor .*--dir {}", a.dir.path().display())])
        .output()
        .unwrap();
    let n = String::from_utf8_lossy(&monitors.stdout).lines().count();
    assert_eq!(n, 2, "{what}: {n} monitors for 2 app containers");
}

/// The agent killed at a random moment while two pods start, then while
/// they are torn down; restarted each time, it converges.
#[test]
fn agent_killed_while_pods_start_and_stop_converges() {
    let rng = Rng::new("agent fault");
    let mut a = Agent::start();
    // How long a start takes here, to spread the kills over it.
    let t0 = Instant::now();
    a.manifest("f.yaml", &manifest());
    skiff_tests::poll(T, "pods ready (timing run)", || all_ready(&a).then_some(()));
    let span = t0.elapsed().mul_f64(1.2);
    a.stop_all();
    a.assert_clean();
    for trial in 0..trials() {
        let at = rng.within(span);
        a.manifest("f.yaml", &manifest());
        std::thread::sleep(at);
        a.kill9();
        a.spawn();
        let what = format!("trial {trial}, killed {at:?} into the start");
        let deadline = Instant::now() + T;
        while !all_ready(&a) {
            assert!(
                Instant::now() < deadline,
                "{what}: not converged\npods: {}\nagent log:\n{}",
                serde_json::to_string_pretty(&a.pods()).unwrap(),
                a.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_exactly_once(&a, &what);

        let at = rng.within(Duration::from_millis(2500));
        a.remove_manifest("f.yaml");
        std::thread::sleep(at);
        a.kill9();
        a.spawn();
        a.stop_all();
        a.assert_clean();
    }
}

/// A container's monitor killed: a new one takes over, so the container's
/// output still reaches its log and its exit is still recorded.
#[test]
fn a_killed_monitor_is_replaced() {
    let a = Agent::start();
    a.manifest(
        "m.yaml",
        &pod_yaml(
            "m",
            "  restartPolicy: Never\n  containers:\n  - name: c\n    image: IMAGE\n    command: [sh, -c, 'i=0; until [ -e /tmp/stop ]; do echo line $i; i=$((i+1)); sleep 0.1; done; exit 3']\n",
        ),
    );
    let p = a.wait_pod("m", T, "running", |p| {
        container(p, "c")["state"]["running"].is_object()
    });
    let uid = p["metadata"]["uid"].as_str().unwrap().to_string();
    let id = container(&p, "c")["containerID"]
        .as_str()
        .unwrap()
        .trim_start_matches("skiff://")
        .to_string();
    let pid_file = a.path(&format!("state/pods/{uid}/containers/{id}/monitor.pid"));
    let read_pid = || -> i32 {
        std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    };
    let first = read_pid();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    skiff_tests::wait_exited(first, "the monitor to die");
    let second = skiff_tests::poll(T, "a new monitor", || {
        let p = read_pid();
        (p > 0 && p != first && skiff_tests::process_alive(p)).then_some(p)
    });
    assert_ne!(second, first);
    // Output written after the kill still reaches the log.
    let logs = || String::from_utf8_lossy(&a.cli(&["logs", "m"]).stdout).to_string();
    let before = logs().lines().count();
    skiff_tests::poll(T, "the log to grow after the monitor was replaced", || {
        (logs().lines().count() > before + 5).then_some(())
    });
    let stop = a.cli(&["exec", "m", "--", "touch", "/tmp/stop"]);
    assert!(stop.status.success(), "{stop:?}");
    let p = a.wait_pod("m", T, "exited", |p| {
        container(p, "c")["state"]["terminated"].is_object()
    });
    assert_eq!(
        container(&p, "c")["state"]["terminated"]["exitCode"],
        3,
        "{}",
        serde_json::to_string_pretty(&p).unwrap()
    );
    let text = logs();
    let nums: Vec<u64> = text
        .lines()
        .filter_map(|l| l.strip_prefix("line ")?.parse().ok())
        .collect();
    assert!(
        nums.windows(2).all(|w| w[1] == w[0] + 1),
        "the log lost lines across the monitor's death: {nums:?}"
    );
    a.stop_all();
    a.assert_clean();
}

/// A pod's pause process killed: as kubelet does, the sandbox is made
/// again and the container restarted once; its probes pass at once in the
/// new sandbox (no probe timeouts, no liveness kill, no CrashLoopBackOff).
#[test]
fn a_killed_pause_costs_one_restart() {
    let a = Agent::start();
    a.manifest(
        "p.yaml",
        &pod_yaml(
            "p",
            "  containers:\n  - name: web\n    image: IMAGE\n    command: [httpd, -f, -p, '8080', -h, /www]\n    readinessProbe:\n      httpGet: {path: /healthz, port: 8080}\n      periodSeconds: 1\n    livenessProbe:\n      tcpSocket: {port: 8080}\n      periodSeconds: 1\n      failureThreshold: 2\n",
        ),
    );
    let p = a.wait_pod("p", T, "ready", |p| condition(p, "Ready") == "True");
    let uid = p["metadata"]["uid"].as_str().unwrap().to_string();
    let rec: Value = serde_json::from_slice(
        &std::fs::read(a.path(&format!("state/pods/{uid}/pod.json"))).unwrap(),
    )
    .unwrap();
    let pause = rec["sandbox"]["pid"].as_i64().unwrap() as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pause),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    a.wait_pod("p", T, "ready in a new sandbox", |p| {
        container(p, "web")["restartCount"].as_i64() >= Some(1) && condition(p, "Ready") == "True"
    });
    // Stable: ten more seconds of probes and still one restart.
    std::thread::sleep(Duration::from_secs(10));
    let p = a.pod("p").unwrap();
    assert_eq!(
        container(&p, "web")["restartCount"],
        1,
        "{}\nagent log:\n{}",
        serde_json::to_string_pretty(&p).unwrap(),
        a.log()
    );
    assert_eq!(condition(&p, "Ready"), "True");
    let events = String::from_utf8_lossy(&a.cli(&["describe", "pod", "p"]).stdout).to_string();
    assert!(events.contains("SandboxChanged"), "{events}");
    assert!(!events.contains("Liveness probe failed"), "{events}");
    a.stop_all();
    a.assert_clean();
}

/// A CNI plugin that fails while the pause container starts beside it
/// (the two run at once): the sandbox is undone, pause container, veth and
/// IP included, before the failure is reported; the pod says why and is
/// tried again.
#[test]
fn a_failing_cni_plugin_leaves_no_sandbox_behind() {
    let mut a = Agent::start();
    a.kill9();
    // The test network's bridge, then a plugin that is not installed: the
    // bridge has made the veth and taken an IP by the time the chain fails.
    let conf = a.path("cni/10-test.conflist");
    let mut v: Value = serde_json::from_slice(&std::fs::read(&conf).unwrap()).unwrap();
    v["plugins"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"type": "skiff-no-such-plugin"}));
    std::fs::write(&conf, serde_json::to_vec(&v).unwrap()).unwrap();
    a.spawn();
    a.manifest(
        "p.yaml",
        &pod_yaml(
            "p",
            "  containers:\n  - name: c\n    image: IMAGE\n    command: [sleep, '1000']\n",
        ),
    );
    // The event is posted after the sandbox is taken down; the next try
    // comes 5 s later, so what is left now is what the failure left.
    let deadline = Instant::now() + T;
    let events = loop {
        let e = skiff_tests::agent::events(&a);
        if e.contains("FailedCreatePodSandBox") {
            break e;
        }
        assert!(
            Instant::now() < deadline,
            "no FailedCreatePodSandBox: {e}\n{}",
            a.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        events.contains("failed to set up pod network") && events.contains("skiff-no-such-plugin"),
        "{events}"
    );
    let out = std::process::Command::new(skiff_tests::skiff_bin())
        .arg("--root")
        .arg(a.path("state/runtime"))
        .args(["list", "-q"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "",
        "a container (the pause) is left\n{}",
        a.log()
    );
    let links = a.in_netns(&["ip", "-o", "link"]);
    let links = String::from_utf8_lossy(&links.stdout);
    assert!(!links.contains("veth"), "veths left: {links}");
    let ipam: Vec<_> = std::fs::read_dir(a.path(&format!("ipam/{}", a.network)))
        .map(|rd| {
            rd.flatten()
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .parse::<std::net::IpAddr>()
                        .is_ok()
                })
                .map(|e| e.file_name())
                .collect()
        })
        .unwrap_or_default();
    assert!(ipam.is_empty(), "IPs still reserved: {ipam:?}");
    let pins = std::fs::read_dir(a.path("state/netns"))
        .map(|rd| rd.count())
        .unwrap_or(0);
    assert_eq!(pins, 0, "a network namespace pin is left");
    let p = a.pod("p").unwrap();
    assert_eq!(
        container(&p, "c")["state"]["waiting"]["reason"],
        "ContainerCreating",
        "{p}"
    );
    a.stop_all();
    a.assert_clean();
}
