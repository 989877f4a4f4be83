//! The node agent end to end, networking and what outlives what: pods
//! reaching each other over the CNI bridge, containers surviving agent and
//! monitor kills, a dead sandbox made again, a broken network found by CNI
//! CHECK on adoption.
//!
//! Real pods from manifest files, run by the skiff runtime, networked by
//! Debian's CNI plugins inside a network namespace made for each test,
//! observed through the agent's API and CLI (see `skiff_tests::agent`).

use std::time::Duration;

use serde_json::Value;
use skiff_tests::agent::{
    condition, container, events, phase, pod_yaml, poll_metric, runtime_pid, s, stdout, Agent,
};

const T: Duration = Duration::from_secs(60);

#[test]
fn pods_reach_each_other_and_host_network_pods_share_the_namespace() {
    let a = Agent::start();
    a.manifest(
        "server.yaml",
        &pod_yaml("server", "  containers:\n  - name: httpd\n    image: IMAGE\n    command: [httpd, -f, -p, \"8080\", -h, /www]\n    readinessProbe:\n      tcpSocket: {port: 8080}\n      periodSeconds: 1\n"),
    );
    a.manifest(
        "client.yaml",
        &pod_yaml(
            "client",
            "  containers:\n  - name: c\n    image: IMAGE\n    command: [sleep, \"1000\"]\n",
        ),
    );
    a.manifest(
        "hostnet.yaml",
        &pod_yaml("hostnet", "  hostNetwork: true\n  containers:\n  - name: httpd\n    image: IMAGE\n    command: [httpd, -f, -p, \"127.0.0.1:18080\", -h, /www]\n    readinessProbe:\n      httpGet: {host: 127.0.0.1, port: 18080, path: /}\n      periodSeconds: 1\n"),
    );
    let server = a.wait_pod("server", T, "ready", |p| condition(p, "Ready") == "True");
    let client = a.wait_pod("client", T, "ready", |p| condition(p, "Ready") == "True");
    let hostnet = a.wait_pod("hostnet", T, "ready", |p| condition(p, "Ready") == "True");
    let ip = s(&server["status"]["podIP"]).to_string();
    assert_ne!(ip, s(&client["status"]["podIP"]));
    let out = a.cli(&[
        "exec",
        "client",
        "--",
        "wget",
        "-qO-",
        &format!("http://{ip}:8080/"),
    ]);
    assert!(stdout(&out).contains("hello from a skiff pod"), "{out:?}");
    // The hostNetwork pod listens on the agent's namespace's loopback.
    let out = a.in_netns(&["/bin/busybox", "wget", "-qO-", "http://127.0.0.1:18080/"]);
    assert!(stdout(&out).contains("hello from a skiff pod"), "{out:?}");
    assert_eq!(hostnet["status"]["podIP"], hostnet["status"]["hostIP"]);
    // Each pod has its veth while it runs; CNI DEL removes them all.
    let links = stdout(&a.in_netns(&["ip", "-o", "link"]));
    assert_eq!(links.matches("veth").count(), 2, "{links}");
    a.stop_all();
    a.assert_clean();
}

#[test]
fn containers_survive_agent_and_monitor_kills() {
    let mut a = Agent::start();
    a.manifest(
        "keep.yaml",
        &pod_yaml(
            "keep",
            r#"  containers:
  - name: web
    image: IMAGE
    command: [httpd, -f, -p, "8080", -h, /www]
    livenessProbe:
      httpGet: {path: /healthz, port: 8080}
      periodSeconds: 1
  - name: ticker
    image: IMAGE
    command: [sh, -c, "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done"]
  - name: crash
    image: IMAGE
    command: [sh, -c, "exit 1"]
"#,
        ),
    );
    a.manifest(
        "seven.yaml",
        &pod_yaml("seven", "  restartPolicy: Never\n  containers:\n  - name: c\n    image: IMAGE\n    command: [sh, -c, 'until [ -e /tmp/go ]; do sleep 0.1; done; exit 7']\n"),
    );
    // kill -9 the monitor of `seven`: its exit is still recorded (the
    // agent, a subreaper, inherits the container).
    let seven = a.wait_pod("seven", T, "running", |p| {
        container(p, "c")["state"]["running"].is_object()
    });
    let id = s(&container(&seven, "c")["containerID"])
        .trim_start_matches("skiff://")
        .to_string();
    let mon = a.path(&format!(
        "state/pods/{}/containers/{id}/monitor.pid",
        s(&seven["metadata"]["uid"])
    ));
    let mpid: i32 = std::fs::read_to_string(&mon)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(mpid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    skiff_tests::wait_exited(mpid, "the monitor to die");
    let go = a.cli(&["exec", "seven", "--", "touch", "/tmp/go"]);
    assert!(go.status.success(), "{go:?}");
    let seven = a.wait_pod("seven", T, "Failed", |p| phase(p) == "Failed");
    assert_eq!(container(&seven, "c")["state"]["terminated"]["exitCode"], 7);

    let before = a.wait_pod("keep", T, "crash restarted twice", |p| {
        container(p, "crash")["restartCount"].as_i64() >= Some(2)
            && container(p, "web")["ready"] == true
    });
    let web_id = s(&container(&before, "web")["containerID"]).to_string();
    let ticker_id = s(&container(&before, "ticker")["containerID"]).to_string();
    let (web_pid, ticker_pid) = (runtime_pid(&a, &web_id), runtime_pid(&a, &ticker_id));
    assert!(web_pid > 0 && ticker_pid > 0);
    let crash_restarts = container(&before, "crash")["restartCount"]
        .as_i64()
        .unwrap();
    a.kill9();
    std::thread::sleep(Duration::from_millis(500));
    a.spawn();
    let after = a.wait_pod("keep", T, "adopted", |p| {
        container(p, "web")["ready"] == true
    });
    assert_eq!(s(&container(&after, "web")["containerID"]), web_id);
    assert_eq!(s(&container(&after, "ticker")["containerID"]), ticker_id);
    assert_eq!(runtime_pid(&a, &web_id), web_pid, "web was restarted");
    assert_eq!(
        runtime_pid(&a, &ticker_id),
        ticker_pid,
        "ticker was restarted"
    );
    for c in ["web", "ticker"] {
        assert_eq!(container(&after, c)["restartCount"], 0, "{c}");
    }
    assert!(container(&after, "crash")["restartCount"].as_i64().unwrap() >= crash_restarts);
    // Probes resume, logs go on in the same file.
    poll_metric(
        &a,
        "container=\"web\",probe_type=\"Liveness\",result=\"successful\"",
    );
    let n1 = stdout(&a.cli(&["logs", "keep", "-c", "ticker"]))
        .lines()
        .count();
    std::thread::sleep(Duration::from_millis(1000));
    let text = stdout(&a.cli(&["logs", "keep", "-c", "ticker"]));
    assert!(text.lines().count() > n1, "log stopped growing");
    let nums: Vec<u64> = text
        .lines()
        .filter_map(|l| l.strip_prefix("tick ")?.parse().ok())
        .collect();
    assert!(
        nums.windows(2).all(|w| w[1] == w[0] + 1),
        "log has gaps: {nums:?}"
    );
    a.stop_all();
    a.assert_clean();
}

#[test]
fn a_dead_sandbox_is_recreated_with_its_containers() {
    let a = Agent::start();
    a.manifest(
        "sb.yaml",
        &pod_yaml(
            "sb",
            "  containers:\n  - name: c\n    image: IMAGE\n    command: [sleep, \"1000\"]\n",
        ),
    );
    let p = a.wait_pod("sb", T, "ready", |p| condition(p, "Ready") == "True");
    let uid = s(&p["metadata"]["uid"]).to_string();
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
    let p2 = a.wait_pod("sb", T, "running again in a new sandbox", |p| {
        container(p, "c")["restartCount"].as_i64() >= Some(1) && container(p, "c")["ready"] == true
    });
    assert!(events(&a).contains("SandboxChanged"));
    assert!(s(&p2["status"]["podIP"]).starts_with("10."));
    a.stop_all();
    a.assert_clean();
}

#[test]
fn cni_check_on_adoption_replaces_a_broken_network() {
    let mut a = Agent::start();
    a.manifest(
        "net.yaml",
        &pod_yaml(
            "net",
            "  containers:\n  - name: c\n    image: IMAGE\n    command: [sleep, \"1000\"]\n",
        ),
    );
    a.wait_pod("net", T, "ready", |p| condition(p, "Ready") == "True");
    // A healthy network passes CHECK: nothing is restarted.
    a.kill9();
    a.spawn();
    let p = a.wait_pod("net", T, "adopted", |p| container(p, "c")["ready"] == true);
    assert_eq!(container(&p, "c")["restartCount"], 0);
    assert!(!events(&a).contains("FailedCNICheck"));
    // Break it while the agent is away: the pod's veth disappears.
    a.kill9();
    let links = stdout(&a.in_netns(&["ip", "-o", "link"]));
    let veth = links
        .lines()
        .find_map(|l| l.split(": ").nth(1).filter(|n| n.starts_with("veth")))
        .expect("a veth")
        .split('@')
        .next()
        .unwrap()
        .to_string();
    assert!(a
        .in_netns(&["ip", "link", "delete", &veth])
        .status
        .success());
    a.spawn();
    a.wait_pod("net", T, "recreated", |p| {
        container(p, "c")["restartCount"].as_i64() >= Some(1) && container(p, "c")["ready"] == true
    });
    assert!(events(&a).contains("FailedCNICheck"), "{}", events(&a));
    a.stop_all();
    a.assert_clean();
}
