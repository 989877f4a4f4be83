//! The node agent end to end, probes: readiness flipping READY, liveness
//! restarts, startup probes gating the others and the initial delay, every
//! handler (exec, httpGet, tcpSocket, grpc), a probe's own grace period.
//!
//! Real pods from manifest files, run by the skiff runtime, networked by
//! Debian's CNI plugins inside a network namespace made for each test,
//! observed through the agent's API and CLI (see `skiff_tests::agent`).

use std::time::{Duration, Instant};

use skiff_tests::agent::{condition, container, events, phase, pod_yaml, Agent};

const T: Duration = Duration::from_secs(60);

#[test]
fn probes_flip_readiness_and_restart_on_liveness_failure() {
    let a = Agent::start();
    let bin = grpc_bin_dir(&a);
    a.manifest(
        "probes.yaml",
        &pod_yaml(
            "probes",
            &format!(
                r#"  containers:
  - name: web
    image: IMAGE
    command: [httpd, -f, -p, "8080", -h, /www]
    ports: [{{name: http, containerPort: 8080}}]
    readinessProbe:
      httpGet: {{path: /healthz, port: http, httpHeaders: [{{name: X-Test, value: yes}}]}}
      periodSeconds: 1
    livenessProbe:
      tcpSocket: {{port: 8080}}
      periodSeconds: 1
  - name: sick
    image: IMAGE
    command: [httpd, -f, -p, "8081", -h, /www]
    livenessProbe:
      httpGet: {{path: /missing, port: 8081}}
      periodSeconds: 1
      failureThreshold: 2
  - name: unready
    image: IMAGE
    command: [sleep, "1000"]
    readinessProbe:
      tcpSocket: {{port: 9999}}
      periodSeconds: 1
  - name: slow
    image: IMAGE
    command: [sleep, "1000"]
    readinessProbe:
      exec: {{command: [sh, -c, "sleep 3"]}}
      periodSeconds: 1
      timeoutSeconds: 1
  - name: late
    image: IMAGE
    command: [sh, -c, "sleep 3; touch /tmp/ready; exec sleep 1000"]
    readinessProbe:
      exec: {{command: [cat, /tmp/ready]}}
      periodSeconds: 1
      timeoutSeconds: 10
  - name: grpc
    image: IMAGE
    command: [/probe-bin/grpc-health, "9000", "3"]
    startupProbe:
      tcpSocket: {{port: 9000}}
      periodSeconds: 1
      failureThreshold: 30
    livenessProbe:
      grpc: {{port: 9000, service: app}}
      periodSeconds: 1
      timeoutSeconds: 5
      failureThreshold: 1
    volumeMounts: [{{name: bin, mountPath: /probe-bin, readOnly: true}}]
  volumes:
  - name: bin
    hostPath: {{path: {bin}, type: Directory}}
"#
            ),
        ),
    );
    // `late` is unready until its file exists, then ready.
    let early = a.wait_pod("probes", T, "web ready", |p| {
        container(p, "web")["ready"] == true
    });
    assert_eq!(
        container(&early, "late")["ready"],
        false,
        "late is not ready before its file"
    );
    let p = a.wait_pod("probes", T, "late ready, sick and grpc restarted", |p| {
        container(p, "late")["ready"] == true
            && container(p, "sick")["restartCount"].as_i64() >= Some(1)
            && container(p, "grpc")["restartCount"].as_i64() >= Some(1)
    });
    // Readiness failures never restart; they keep the pod unready.
    for c in ["unready", "slow", "web", "late"] {
        assert_eq!(container(&p, c)["restartCount"], 0, "{c}");
    }
    for c in ["unready", "slow"] {
        assert_eq!(container(&p, c)["ready"], false, "{c}");
    }
    assert_eq!(condition(&p, "Ready"), "False");
    assert_eq!(condition(&p, "ContainersReady"), "False");
    assert_eq!(phase(&p), "Running");
    let ev = events(&a);
    for want in [
        "Liveness probe failed: HTTP probe failed with statuscode: 404",
        "Container sick failed liveness probe, will be restarted",
        "Container grpc failed liveness probe, will be restarted",
        "service unhealthy (responded with \\\"NOT_SERVING\\\")",
        "Readiness probe failed: dial tcp",
        "timed out after 1s",
    ] {
        assert!(ev.contains(want), "events lack {want:?}:\n{ev}");
    }
    // The HTTP probe looks like kubelet's: check what httpd saw? busybox
    // httpd keeps no log, so ask the API for the probe counters instead.
    let metrics = a.http("/metrics");
    assert!(
        metrics.contains("skiff_probe_total{namespace=\"default\",pod=\"probes\",container=\"web\",probe_type=\"Readiness\",result=\"successful\"}"),
        "{metrics}"
    );
    a.stop_all();
    a.assert_clean();
    // A pod that is gone leaves no counters behind (kubelet deletes its
    // probe metrics' labels too); the pod-start summary stays.
    let metrics = a.http("/metrics");
    assert!(!metrics.contains("pod=\"probes\""), "{metrics}");
    assert!(
        metrics.contains("skiff_pod_start_duration_seconds_count 1"),
        "{metrics}"
    );
}

#[test]
fn startup_probe_gates_liveness_and_initial_delay_holds() {
    let a = Agent::start();
    a.manifest(
        "startup.yaml",
        &pod_yaml(
            "startup",
            r#"  containers:
  - name: delayed
    image: IMAGE
    command: [httpd, -f, -p, "8090", -h, /www]
    readinessProbe:
      tcpSocket: {port: 8090}
      initialDelaySeconds: 12
      periodSeconds: 1
  - name: neverstarts
    image: IMAGE
    command: [sleep, "1000"]
    startupProbe:
      exec: {command: ["false"]}
      periodSeconds: 1
      failureThreshold: 2
  - name: slowstart
    image: IMAGE
    command: [sh, -c, "sleep 8; touch /tmp/started; exec sleep 1000"]
    startupProbe:
      exec: {command: [test, -e, /tmp/started]}
      periodSeconds: 1
      failureThreshold: 20
      timeoutSeconds: 10
    livenessProbe:
      exec: {command: [test, -e, /tmp/started]}
      periodSeconds: 1
      failureThreshold: 1
      timeoutSeconds: 10
"#,
        ),
    );
    // Containers start in order; slowstart, the last, is seen running at
    // t0, a little after it started (and delayed a little before that,
    // by the time one start takes).
    let p = a.wait_pod("startup", T, "running", |p| {
        container(p, "slowstart")["state"]["running"].is_object()
    });
    let t0 = Instant::now();
    assert_eq!(container(&p, "slowstart")["started"], false);
    // Well before 12 s (8 s for slowstart): nothing is ready, slowstart
    // has not started.
    std::thread::sleep(Duration::from_millis(2500));
    let p = a.pod("startup").unwrap();
    // delayed started a container start or two before slowstart: seconds,
    // under TCG. Its own startedAt (whole seconds, rounded down, so never
    // later than the start) says whether its 12 s can have passed.
    let delayed = container(&p, "delayed");
    let started = delayed["state"]["running"]["startedAt"]
        .as_str()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .unwrap_or_else(|| panic!("delayed has no running.startedAt: {delayed}"));
    if jiff::Timestamp::now().duration_since(started) < jiff::SignedDuration::from_secs(11) {
        assert_eq!(
            delayed["ready"], false,
            "readiness ran before initialDelaySeconds"
        );
    }
    if t0.elapsed() < Duration::from_millis(5000) {
        assert_eq!(container(&p, "slowstart")["started"], false);
    }
    let p = a.wait_pod(
        "startup",
        T,
        "slowstart started, delayed ready, neverstarts restarted",
        |p| {
            container(p, "slowstart")["started"] == true
                && container(p, "delayed")["ready"] == true
                && container(p, "neverstarts")["restartCount"].as_i64() >= Some(1)
        },
    );
    // The liveness probe would have failed during startup: it never ran.
    assert_eq!(container(&p, "slowstart")["restartCount"], 0);
    assert_eq!(container(&p, "slowstart")["ready"], true);
    assert_eq!(container(&p, "neverstarts")["started"], false);
    let ev = events(&a);
    assert!(
        ev.contains("Container neverstarts failed startup probe, will be restarted"),
        "{ev}"
    );
    assert!(!ev.contains("Container slowstart failed"), "{ev}");
    a.stop_all();
    a.assert_clean();
}

#[test]
fn every_handler_serves_as_startup_and_readiness_probe() {
    let a = Agent::start();
    let bin = grpc_bin_dir(&a);
    a.manifest(
        "matrix.yaml",
        &pod_yaml(
            "matrix",
            &format!(
                r#"  containers:
  - name: http
    image: IMAGE
    command: [httpd, -f, -p, "8080", -h, /www]
    workingDir: /www
    startupProbe:
      httpGet: {{path: /healthz, port: 8080, scheme: HTTP}}
      periodSeconds: 1
    readinessProbe:
      exec: {{command: [test, -e, healthz]}}
      periodSeconds: 1
      successThreshold: 2
      timeoutSeconds: 10
  - name: grpcready
    image: IMAGE
    command: [/probe-bin/grpc-health, "9000"]
    startupProbe:
      tcpSocket: {{port: 9000}}
      periodSeconds: 1
    readinessProbe:
      grpc: {{port: 9000}}
      periodSeconds: 1
    volumeMounts: [{{name: bin, mountPath: /probe-bin, readOnly: true}}]
  - name: grpcstart
    image: IMAGE
    command: [/probe-bin/grpc-health, "9001"]
    startupProbe:
      grpc: {{port: 9001, service: app}}
      periodSeconds: 1
    readinessProbe:
      tcpSocket: {{port: 9001}}
      periodSeconds: 1
    volumeMounts: [{{name: bin, mountPath: /probe-bin, readOnly: true}}]
  volumes:
  - name: bin
    hostPath: {{path: {bin}}}
"#
            ),
        ),
    );
    let p = a.wait_pod("matrix", T, "all started and ready", |p| {
        condition(p, "Ready") == "True"
    });
    for c in ["http", "grpcready", "grpcstart"] {
        let st = container(&p, c);
        assert_eq!(
            (st["started"].as_bool(), st["ready"].as_bool()),
            (Some(true), Some(true)),
            "{c}"
        );
        assert_eq!(st["restartCount"], 0, "{c}");
    }
    let m = a.http("/metrics");
    for (c, kind) in [
        ("http", "Startup"),
        ("grpcready", "Readiness"),
        ("grpcstart", "Startup"),
        ("http", "Readiness"),
    ] {
        let needle = format!("container=\"{c}\",probe_type=\"{kind}\",result=\"successful\"");
        assert!(m.contains(&needle), "{needle}:\n{m}");
    }
    a.stop_all();
    a.assert_clean();
}

#[test]
fn a_probe_grace_period_shortens_the_kill() {
    let a = Agent::start();
    // The first instance ignores SIGTERM (sleep as PID 1); its liveness
    // probe fails at once. The pod allows 30 s, the probe 1 s: the restart
    // comes after the probe's grace. Later instances exit on SIGTERM, so
    // the pod stops quickly at the end.
    a.manifest(
        "grace.yaml",
        &pod_yaml(
            "grace",
            r#"  terminationGracePeriodSeconds: 30
  containers:
  - name: c
    image: IMAGE
    command: [sh, -c, 'if [ -e /v/seen ]; then trap "exit 0" TERM; while :; do sleep 0.2; done; fi; touch /v/seen; exec sleep 1000']
    livenessProbe:
      exec: {command: ["false"]}
      periodSeconds: 1
      failureThreshold: 1
      terminationGracePeriodSeconds: 1
    volumeMounts: [{name: v, mountPath: /v}]
  volumes:
  - name: v
    emptyDir: {}
"#,
        ),
    );
    let restarted = a.wait_pod("grace", T, "restarted", |p| {
        container(p, "c")["restartCount"].as_i64() >= Some(1)
    });
    // The agent's own record of the first instance: it ran from its start
    // to the probe's failure (about a second), then the probe's grace of
    // 1 s, not the pod's 30 s. Its times, not the test's clock, so a slow
    // machine does not blur the two.
    let term = &container(&restarted, "c")["lastState"]["terminated"];
    let at = |k: &str| {
        term[k]
            .as_str()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .unwrap_or_else(|| panic!("lastState.terminated.{k}: {term}"))
    };
    let ran = at("finishedAt").duration_since(at("startedAt"));
    assert!(
        ran < jiff::SignedDuration::from_secs(20),
        "the first instance ran {ran:?}: killed after the pod's grace, not the probe's"
    );
    // SIGKILL after the grace: 128 + 9.
    assert_eq!(
        container(&restarted, "c")["lastState"]["terminated"]["exitCode"],
        137
    );
    a.stop_all();
    a.assert_clean();
}

/// The gRPC health server, copied where a hostPath volume can offer it.
fn grpc_bin_dir(a: &Agent) -> String {
    let dir = a.path("bin");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_grpc-health"), dir.join("grpc-health")).unwrap();
    dir.display().to_string()
}
