//! The node agent end to end, pods from manifests: init and app containers
//! reaching Running and Ready, restart policies and CrashLoopBackOff, an
//! edited or removed manifest, limits and the security context applied.
//!
//! Real pods from manifest files, run by the skiff runtime, networked by
//! Debian's CNI plugins inside a network namespace made for each test,
//! observed through the agent's API and CLI (see `skiff_tests::agent`).

use std::time::{Duration, Instant};

use serde_json::Value;
use skiff_tests::agent::{
    condition, container, events, logs_when, phase, pod_yaml, s, stdout, Agent,
};

const T: Duration = Duration::from_secs(60);

#[test]
fn init_then_two_app_containers_reach_running_and_ready() {
    let a = Agent::start();
    a.manifest(
        "web.yaml",
        &pod_yaml(
            "web",
            r#"  initContainers:
  - name: setup
    image: IMAGE
    command: [sh, -c, "echo from-init > /work/init.txt"]
    volumeMounts: [{name: work, mountPath: /work}]
  containers:
  - name: httpd
    image: IMAGE
    command: [httpd, -f, -p, "8080", -h, /www]
    ports: [{name: http, containerPort: 8080}]
    readinessProbe:
      httpGet: {path: /index.html, port: http}
      periodSeconds: 1
  - name: worker
    image: IMAGE
    command: [sh, -c, 'echo "pod=$POD_NAME ns=$POD_NS ip=$POD_IP node=$NODE"; cat /work/init.txt; id -u; exec sleep 1000']
    env:
    - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    - {name: POD_NS, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}
    - {name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
    - {name: NODE, valueFrom: {fieldRef: {fieldPath: spec.nodeName}}}
    securityContext: {runAsUser: 33}
    volumeMounts: [{name: work, mountPath: /work}]
  volumes:
  - name: work
    emptyDir: {}
"#,
        ),
    );
    let p = a.wait_pod("web", T, "Ready", |p| condition(p, "Ready") == "True");
    assert_eq!(phase(&p), "Running");
    for c in [
        "PodScheduled",
        "Initialized",
        "ContainersReady",
        "PodReadyToStartContainers",
    ] {
        assert_eq!(condition(&p, c), "True", "{c}");
    }
    let init = container(&p, "setup");
    assert_eq!(init["state"]["terminated"]["reason"], "Completed");
    assert_eq!(init["state"]["terminated"]["exitCode"], 0);
    let ip = s(&p["status"]["podIP"]).to_string();
    assert!(ip.starts_with("10."), "pod IP {ip}");
    for c in ["httpd", "worker"] {
        let st = container(&p, c);
        assert!(st["state"]["running"]["startedAt"].is_string(), "{c}: {st}");
        assert_eq!(st["ready"], true);
        assert_eq!(st["started"], true);
        assert_eq!(st["restartCount"], 0);
        assert!(s(&st["containerID"]).starts_with("skiff://"));
        assert!(s(&st["imageID"]).contains("sha256:"));
    }
    // The init container ran before, its file is there; env from fieldRefs.
    let log = logs_when(&a, &["web", "-c", "worker"], |l| l.ends_with("\n33\n"));
    assert_eq!(
        log,
        format!("pod=web ns=default ip={ip} node=test-node\nfrom-init\n33\n")
    );
    // get pods reads like kubectl.
    let table = stdout(&a.cli(&["get", "pods", "-o", "wide"]));
    let row = table
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>();
    assert_eq!(&row[..4], ["web", "2/2", "Running", "0"], "{table}");
    assert!(row.contains(&ip.as_str()), "{table}");
    // exec runs in the container; the pod's containers share the network.
    let out = a.cli(&[
        "exec",
        "web",
        "-c",
        "worker",
        "--",
        "wget",
        "-qO-",
        "http://127.0.0.1:8080/",
    ]);
    assert!(stdout(&out).contains("hello from a skiff pod"), "{out:?}");
    let describe = stdout(&a.cli(&["describe", "pod", "web"]));
    for want in [
        "Init Containers:",
        "setup:",
        "Reason:       Completed",
        "Started container worker",
        "Readiness:",
    ] {
        assert!(
            describe.contains(want),
            "describe lacks {want:?}:\n{describe}"
        );
    }
    a.stop_all();
    a.assert_clean();
}

#[test]
fn completed_pods_succeed_or_fail_and_on_failure_restarts() {
    let a = Agent::start();
    a.manifest(
        "ok.yaml",
        &pod_yaml("ok", "  restartPolicy: Never\n  containers:\n  - name: c\n    image: IMAGE\n    command: [sh, -c, 'echo done']\n"),
    );
    a.manifest(
        "bad.yaml",
        &pod_yaml("bad", "  restartPolicy: Never\n  containers:\n  - name: c\n    image: IMAGE\n    command: [sh, -c, 'exit 3']\n"),
    );
    a.manifest(
        "retry.yaml",
        &pod_yaml(
            "retry",
            "  restartPolicy: OnFailure\n  containers:\n  - name: c\n    image: IMAGE\n    command: [sh, -c, 'if [ -e /cache/second ]; then exit 0; fi; touch /cache/second; exit 1']\n    volumeMounts: [{name: cache, mountPath: /cache}]\n  volumes:\n  - name: cache\n    emptyDir: {medium: Memory, sizeLimit: 1Mi}\n",
        ),
    );
    let ok = a.wait_pod("ok", T, "Succeeded", |p| phase(p) == "Succeeded");
    assert_eq!(
        container(&ok, "c")["state"]["terminated"]["reason"],
        "Completed"
    );
    assert_eq!(condition(&ok, "Ready"), "False");
    let bad = a.wait_pod("bad", T, "Failed", |p| phase(p) == "Failed");
    let t = &container(&bad, "c")["state"]["terminated"];
    assert_eq!(
        (t["exitCode"].as_i64(), s(&t["reason"])),
        (Some(3), "Error")
    );
    assert_eq!(container(&bad, "c")["restartCount"], 0);
    let retry = a.wait_pod("retry", T, "Succeeded after one retry", |p| {
        phase(p) == "Succeeded"
    });
    assert_eq!(container(&retry, "c")["restartCount"], 1);
    assert_eq!(
        container(&retry, "c")["lastState"]["terminated"]["exitCode"],
        1
    );
    let table = stdout(&a.cli(&["get", "pods"]));
    assert!(
        table.contains("Completed") && table.contains("Error"),
        "{table}"
    );
    a.stop_all();
    a.assert_clean();
}

#[test]
fn always_restarts_with_crash_loop_backoff_timing() {
    let a = Agent::start();
    a.manifest(
        "crash.yaml",
        &pod_yaml("crash", "  containers:\n  - name: c\n    image: IMAGE\n    command: [sh, -c, 'read up idle < /proc/uptime; echo $up; exit 2']\n"),
    );
    // Back-off here is 1 s doubling to 4 s: restarts at about +0, +1, +2, +4, +4.
    let p = a.wait_pod("crash", T, "four restarts", |p| {
        container(p, "c")["restartCount"].as_i64() >= Some(4)
    });
    let st = container(&p, "c");
    assert_eq!(st["lastState"]["terminated"]["exitCode"], 2);
    let shown = a.wait_pod("crash", T, "CrashLoopBackOff", |p| {
        container(p, "c")["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    });
    // The agent's own record of the cap: the wait after the fourth
    // restart is the 4 s maximum (kubelet's message, "back-off 4s ...").
    let waiting = s(&container(&shown, "c")["state"]["waiting"]["message"]).to_string();
    assert!(waiting.starts_with("back-off 4s "), "{waiting}");
    let table = stdout(&a.cli(&["get", "pods"]));
    assert!(
        table.contains("CrashLoopBackOff") || table.contains("Error"),
        "{table}"
    );
    // The start times of the attempts (each printed its own) show the
    // delays growing: gaps of at least 0, 1, 2, 4 seconds. (Each gap also
    // holds the time one start takes, a second or more in the TCG VM, so
    // only lower bounds are asserted on them.)
    let mut starts = Vec::new();
    let mut logged_at = Vec::new();
    for n in 0..=4 {
        let f = a.path(&format!(
            "data/pod-logs/default_crash_{}/c/{n}.log",
            s(&p["metadata"]["uid"])
        ));
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        let mut fields = text.split_whitespace();
        // A CRI log line: TIME STREAM TAG UPTIME.
        let at: jiff::Timestamp = fields
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{}: {text:?}", f.display()));
        let t: f64 = fields
            .nth(2)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{}: {text:?}", f.display()));
        starts.push(t);
        logged_at.push(at);
    }
    let gaps: Vec<f64> = starts.windows(2).map(|w| w[1] - w[0]).collect();
    for (gap, want) in gaps.iter().zip([0.0, 1.0, 2.0, 4.0]) {
        assert!(*gap >= want * 0.9, "gaps {gaps:?} want at least [0,1,2,4]");
    }
    // The first restart waits for nothing: the agent's first BackOff
    // event comes after the second attempt had already run (its output
    // logged), by the agent's clock, not the test's.
    let evs: Value = serde_json::from_str(&events(&a)).expect("events JSON");
    let first_backoff: jiff::Timestamp = evs["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["pod"] == "crash" && e["reason"] == "BackOff")
        .filter_map(|e| e["firstTimestamp"].as_str()?.parse().ok())
        .min()
        .unwrap_or_else(|| panic!("no BackOff event: {evs}"));
    assert!(
        first_backoff > logged_at[1],
        "the first restart is immediate: first BackOff at {first_backoff}, second attempt logged at {}",
        logged_at[1]
    );
    a.stop_all();
    a.assert_clean();
}

#[test]
fn edited_manifest_recreates_the_pod_and_removal_stops_it_within_grace() {
    let a = Agent::start();
    let v1 = pod_yaml("app", "  terminationGracePeriodSeconds: 3\n  containers:\n  - name: c\n    image: IMAGE\n    command: [sh, -c, 'echo v1; exec sleep 1000']\n");
    a.manifest("app.yaml", &v1);
    let p1 = a.wait_pod("app", T, "running", |p| container(p, "c")["ready"] == true);
    let id1 = s(&container(&p1, "c")["containerID"]).to_string();
    a.manifest("app.yaml", &v1.replace("echo v1", "echo v2"));
    let p2 = a.wait_pod("app", T, "recreated", |p| {
        container(p, "c")["ready"] == true && container(p, "c")["containerID"] != id1.as_str()
    });
    assert_eq!(
        container(&p2, "c")["restartCount"],
        0,
        "a new pod starts from 0"
    );
    assert_eq!(logs_when(&a, &["app"], |l| !l.is_empty()), "v2\n");
    // `sleep` as PID 1 ignores SIGTERM: the pod stops at the grace period.
    let t0 = Instant::now();
    a.remove_manifest("app.yaml");
    while a.pod("app").is_some() {
        assert!(
            t0.elapsed() < Duration::from_secs(25),
            "pod not stopped:\n{}",
            a.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(2800),
        "stopped before the grace period: {took:?}"
    );
    // (the default grace period, 30 s, is what this rules out; the rest is
    // teardown, slow in the TCG VM)
    assert!(
        took < Duration::from_secs(20),
        "stopped long after the grace period: {took:?}"
    );
    assert!(a.log().contains("Stopping container c"));
    a.assert_clean();
}

#[test]
fn memory_limit_is_enforced_and_reported_as_oom_killed() {
    let a = Agent::start();
    a.manifest(
        "oom.yaml",
        &pod_yaml(
            "oom",
            "  restartPolicy: Never\n  containers:\n  - name: c\n    image: IMAGE\n    command: [sh, -c, 'a=$(head -c 200000000 /dev/zero | tr \"\\\\0\" x); echo ${#a}']\n    resources:\n      limits: {memory: 24Mi, cpu: 500m}\n",
        ),
    );
    let p = a.wait_pod("oom", T, "finished", |p| {
        phase(p) == "Failed" || phase(p) == "Succeeded"
    });
    let t = &container(&p, "c")["state"]["terminated"];
    assert_eq!(s(&t["reason"]), "OOMKilled", "{p}");
    assert_eq!(t["exitCode"], 137);
    // Limits alone set the requests too: Guaranteed.
    assert_eq!(p["status"]["qosClass"], "Guaranteed");
    let table = stdout(&a.cli(&["get", "pods"]));
    assert!(table.contains("OOMKilled"), "{table}");
    a.stop_all();
    a.assert_clean();
}

#[test]
fn security_context_resources_and_volumes_are_applied() {
    let a = Agent::start();
    let host_dir = a.path("shared");
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::write(host_dir.join("from-host"), "hi\n").unwrap();
    a.manifest(
        "sec.yaml",
        &pod_yaml(
            "sec",
            &format!(
                r#"  securityContext:
    runAsUser: 1000
    runAsGroup: 3000
    supplementalGroups: [4000]
  containers:
  - name: locked
    image: IMAGE
    command: [sh, -c, 'id; grep -E "^(CapBnd|NoNewPrivs|Seccomp):" /proc/self/status; touch /x 2>&1 || echo root-ro; cat /host/from-host; touch /host/nope 2>&1 || echo host-ro; grep " /scratch " /proc/mounts; exec sleep 1000']
    securityContext:
      readOnlyRootFilesystem: true
      allowPrivilegeEscalation: false
      capabilities: {{drop: [ALL], add: [NET_BIND_SERVICE]}}
      seccompProfile: {{type: RuntimeDefault}}
    resources:
      limits: {{cpu: 250m, memory: 64Mi}}
      requests: {{cpu: 100m}}
    volumeMounts:
    - {{name: host, mountPath: /host, readOnly: true}}
    - {{name: scratch, mountPath: /scratch}}
  - name: rootless
    image: IMAGE
    command: [id]
    securityContext: {{runAsUser: 0, runAsNonRoot: true}}
  volumes:
  - name: host
    hostPath: {{path: {}, type: Directory}}
  - name: scratch
    emptyDir: {{medium: Memory, sizeLimit: 2Mi}}
"#,
                host_dir.display()
            ),
        ),
    );
    let p = a.wait_pod("sec", T, "locked running, rootless refused", |p| {
        container(p, "locked")["ready"] == true
            && container(p, "rootless")["state"]["waiting"]["reason"]
                == "CreateContainerConfigError"
    });
    assert_eq!(
        s(&container(&p, "rootless")["state"]["waiting"]["message"]),
        "container has runAsNonRoot and image will run as root"
    );
    let log = logs_when(&a, &["sec", "-c", "locked"], |l| l.contains(" /scratch "));
    let lines: Vec<&str> = log.lines().collect();
    assert!(lines[0].starts_with("uid=1000 gid=3000"), "{log}");
    assert!(lines[0].contains("4000"), "supplementary group: {log}");
    // Only CAP_NET_BIND_SERVICE (bit 10) is left to gain (a non-root
    // user's effective set is empty after exec, as under runc).
    assert_eq!(
        lines[1].split_whitespace().nth(1),
        Some("0000000000000400"),
        "{log}"
    );
    assert_eq!(lines[2], "NoNewPrivs:\t1");
    assert_eq!(lines[3], "Seccomp:\t2");
    assert!(log.contains("root-ro") && log.contains("host-ro"), "{log}");
    assert!(log.contains("hi\n"), "{log}");
    let scratch = lines
        .iter()
        .find(|l| l.contains(" /scratch "))
        .unwrap_or(&"");
    assert!(
        scratch.starts_with("tmpfs") && scratch.contains("size=2048k"),
        "{log}"
    );
    // Resources reached the container's cgroup (v1 cpu controller here, or v2).
    let uid = s(&p["metadata"]["uid"]);
    let id = s(&container(&p, "locked")["containerID"]).trim_start_matches("skiff://");
    let v1 = format!("/sys/fs/cgroup/cpu/skiff-agent/pod{uid}/{id}");
    if std::path::Path::new(&v1).exists() {
        let quota = std::fs::read_to_string(format!("{v1}/cpu.cfs_quota_us")).unwrap();
        let shares = std::fs::read_to_string(format!("{v1}/cpu.shares")).unwrap();
        assert_eq!((quota.trim(), shares.trim()), ("25000", "102"));
        let mem = std::fs::read_to_string(format!(
            "/sys/fs/cgroup/memory/skiff-agent/pod{uid}/{id}/memory.limit_in_bytes"
        ))
        .unwrap();
        assert_eq!(mem.trim(), (64u64 << 20).to_string());
    } else {
        let dir = format!("/sys/fs/cgroup/skiff-agent/pod{uid}/{id}");
        assert_eq!(
            std::fs::read_to_string(format!("{dir}/cpu.max"))
                .unwrap()
                .trim(),
            "25000 100000"
        );
        assert_eq!(
            std::fs::read_to_string(format!("{dir}/memory.max"))
                .unwrap()
                .trim(),
            (64u64 << 20).to_string()
        );
    }
    a.stop_all();
    a.assert_clean();
}
