//! The PodSpec that cluster workloads carry, each feature run twice: as a
//! static pod from the manifest directory, and as a pod the real API
//! server and scheduler give a node (`skiff_tests::k8s`). The behaviour
//! checked is kubelet's: lifecycle hooks, termination messages,
//! `activeDeadlineSeconds`, `subPathExpr` and file modes, the managed
//! /etc/hosts and resolv.conf, service links, the security context
//! (users, groups, fsGroup, privilege, sysctls) and a shared PID
//! namespace.

use std::time::{Duration, Instant};

use serde_json::Value;
use skiff_tests::agent::{container, events, stdout, Agent};
use skiff_tests::k8s::{cluster, Namespace};
use skiff_tests::unique_id;

const T: Duration = Duration::from_secs(90);

/// Where the pod comes from.
enum Runner {
    /// A static pod in a standalone agent's manifest directory.
    File(Agent),
    /// A pod applied to the API server, scheduled onto a node agent.
    Api {
        agent: Agent,
        ns: Namespace,
        label: String,
    },
}

impl Runner {
    fn file() -> Runner {
        Runner::File(Agent::start())
    }

    fn api() -> Runner {
        let label = unique_id().to_lowercase().replace(['_', '.'], "-");
        let agent = Agent::start_node(&label, &[]);
        Runner::Api {
            agent,
            ns: Namespace::new(),
            label,
        }
    }

    fn agent(&self) -> &Agent {
        match self {
            Runner::File(a) => a,
            Runner::Api { agent, .. } => agent,
        }
    }

    fn ns(&self) -> String {
        match self {
            Runner::File(_) => "default".into(),
            Runner::Api { ns, .. } => ns.name.clone(),
        }
    }

    /// Run pod `name` with `spec` (the pod spec's YAML, two-space indent,
    /// `IMAGE` for the test image).
    fn run(&self, name: &str, spec: &str) {
        let spec = spec.replace("IMAGE", "localhost/busybox:1");
        match self {
            Runner::File(a) => a.manifest(
                &format!("{name}.yaml"),
                &format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{app: {name}, tier: test}}\nspec:\n{spec}"),
            ),
            Runner::Api { ns, label, .. } => cluster().apply(
                &ns.name,
                &format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{app: {name}, tier: test}}\nspec:\n  nodeSelector: {{skiff-test: {label}}}\n{spec}"),
            ),
        }
    }

    fn delete(&self, name: &str) {
        match self {
            Runner::File(a) => a.remove_manifest(&format!("{name}.yaml")),
            Runner::Api { ns, .. } => {
                cluster().kubectl_ok(&["delete", "pod", name, "-n", &ns.name]);
            }
        }
    }

    /// The pod as the node reports it, once `f` holds.
    fn wait(&self, name: &str, what: &str, f: impl Fn(&Value) -> bool) -> Value {
        let a = self.agent();
        let ns = self.ns();
        let deadline = Instant::now() + T;
        loop {
            let p = a.pods().into_iter().find(|p| {
                p["metadata"]["name"] == name && p["metadata"]["namespace"] == ns.as_str()
            });
            if let Some(p) = &p {
                if f(p) {
                    return p.clone();
                }
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {name}: {what}\n{}\nagent log:\n{}",
                serde_json::to_string_pretty(&p).unwrap_or_default(),
                a.log()
            );
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    fn running(&self, name: &str) -> Value {
        self.wait(name, "all containers running", |p| {
            p["status"]["phase"] == "Running"
                && p["status"]["containerStatuses"]
                    .as_array()
                    .is_some_and(|cs| cs.iter().all(|c| c["state"]["running"].is_object()))
        })
    }

    /// Run a command in a container of the pod; its output.
    fn exec(&self, pod: &str, c: Option<&str>, cmd: &[&str]) -> String {
        let ns = self.ns();
        let mut args = vec!["exec", "-n", &ns];
        if let Some(c) = c {
            args.extend(["-c", c]);
        }
        args.push(pod);
        args.push("--");
        args.extend_from_slice(cmd);
        let out = self.agent().cli(&args);
        assert!(
            out.status.success(),
            "exec {cmd:?}: {}{}",
            stdout(&out),
            String::from_utf8_lossy(&out.stderr)
        );
        stdout(&out).trim_end_matches('\n').to_string()
    }

    /// The events the node recorded for the pod.
    fn events(&self) -> String {
        events(self.agent())
    }
}

/// One test per source for each feature.
macro_rules! both {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[test]
            fn from_a_manifest() {
                let f: fn(&Runner) = $body;
                f(&Runner::file());
            }
            #[test]
            fn from_the_api_server() {
                let f: fn(&Runner) = $body;
                f(&Runner::api());
            }
        }
    };
}

both!(lifecycle_hooks, |r: &Runner| {
    let host = r.agent().path("hooks");
    std::fs::create_dir_all(&host).unwrap();
    let spec = format!(
        "  terminationGracePeriodSeconds: 10
  volumes:
  - {{name: hooks, hostPath: {{path: {}, type: Directory}}}}
  containers:
  - name: main
    image: IMAGE
    command: [sh, -c, 'trap \"exit 0\" TERM; while true; do sleep 0.2; done']
    volumeMounts: [{{name: hooks, mountPath: /hooks}}]
    lifecycle:
      postStart: {{exec: {{command: [sh, -c, 'echo started > /tmp/post']}}}}
      preStop: {{exec: {{command: [sh, -c, 'echo stopping > /hooks/prestop; sleep 1']}}}}
",
        host.display()
    );
    r.run("hooks", &spec);
    r.running("hooks");
    assert_eq!(r.exec("hooks", None, &["cat", "/tmp/post"]), "started");
    r.delete("hooks");
    let deadline = Instant::now() + T;
    while !host.join("prestop").exists() {
        assert!(Instant::now() < deadline, "preStop never ran");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        std::fs::read_to_string(host.join("prestop")).unwrap(),
        "stopping\n"
    );
    // A failing postStart hook gets the container killed and restarted.
    r.run(
        "badhook",
        "  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: IMAGE
    command: [sleep, '3600']
    lifecycle:
      postStart: {exec: {command: [sh, -c, 'exit 7']}}
",
    );
    r.wait("badhook", "a restart", |p| {
        container(p, "main")["restartCount"].as_u64().unwrap_or(0) >= 1
    });
    let ev = r.events();
    assert!(ev.contains("FailedPostStartHook"), "{ev}");
});

both!(termination_messages, |r: &Runner| {
    r.run(
        "msg",
        "  restartPolicy: Never
  containers:
  - name: file
    image: IMAGE
    command: [sh, -c, 'printf \"all done\" > /dev/termination-log; exit 2']
  - name: custom
    image: IMAGE
    terminationMessagePath: /tmp/why
    command: [sh, -c, 'printf \"custom path\" > /tmp/why']
  - name: logs
    image: IMAGE
    terminationMessagePolicy: FallbackToLogsOnError
    command: [sh, -c, 'echo first; echo last words; exit 1']
",
    );
    let p = r.wait("msg", "Failed", |p| p["status"]["phase"] == "Failed");
    let msg = |c: &str| container(&p, c)["state"]["terminated"]["message"].clone();
    assert_eq!(msg("file"), "all done");
    assert_eq!(msg("custom"), "custom path");
    assert_eq!(msg("logs"), "first\nlast words");
    assert_eq!(container(&p, "file")["state"]["terminated"]["exitCode"], 2);
});

both!(active_deadline, |r: &Runner| {
    r.run(
        "deadline",
        "  activeDeadlineSeconds: 3
  terminationGracePeriodSeconds: 1
  containers:
  - {name: main, image: IMAGE, command: [sleep, '3600']}
",
    );
    let t0 = Instant::now();
    let p = r.wait("deadline", "Failed", |p| p["status"]["phase"] == "Failed");
    assert!(t0.elapsed() >= Duration::from_secs(1));
    assert_eq!(p["status"]["reason"], "DeadlineExceeded");
    assert_eq!(
        p["status"]["message"],
        "Pod was active on the node longer than the specified deadline"
    );
    // As kubelet, the phase is Failed before the kill: the container is
    // terminated within its grace period (1 s; sleep as PID 1 ignores
    // SIGTERM, so it takes the SIGKILL).
    let p = r.wait("deadline", "its container killed", |p| {
        container(p, "main")["state"]["terminated"].is_object()
    });
    assert_eq!(p["status"]["phase"], "Failed");
    assert_eq!(
        container(&p, "main")["state"]["terminated"]["exitCode"],
        137
    );
});

both!(sub_path_expr_and_downward_api_files, |r: &Runner| {
    r.run(
        "paths",
        "  volumes:
  - {name: work, emptyDir: {}}
  - name: info
    downwardAPI:
      defaultMode: 0444
      items:
      - {path: labels, fieldRef: {fieldPath: metadata.labels}}
      - {path: tier, fieldRef: {fieldPath: \"metadata.labels['tier']\"}, mode: 0400}
      - {path: mem, resourceFieldRef: {containerName: writer, resource: limits.memory, divisor: 1Mi}}
  containers:
  - name: writer
    image: IMAGE
    command: [sh, -c, 'echo mine > /data/file; exec sleep 3600']
    resources: {limits: {memory: 64Mi}}
    env:
    - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
    volumeMounts:
    - {name: work, mountPath: /data, subPathExpr: 'per-pod/$(POD_NAME)'}
    - {name: info, mountPath: /info}
  - name: reader
    image: IMAGE
    command: [sleep, '3600']
    volumeMounts: [{name: work, mountPath: /all}]
",
    );
    r.running("paths");
    let got = r.exec("paths", Some("reader"), &["cat", "/all/per-pod/paths/file"]);
    assert_eq!(got, "mine");
    assert_eq!(
        r.exec("paths", Some("writer"), &["cat", "/info/tier"]),
        "test"
    );
    assert_eq!(r.exec("paths", Some("writer"), &["cat", "/info/mem"]), "64");
    let labels = r.exec("paths", Some("writer"), &["cat", "/info/labels"]);
    assert!(
        labels.contains("app=\"paths\"") && labels.contains("tier=\"test\""),
        "{labels}"
    );
    let ls = r.exec("paths", Some("writer"), &["ls", "-lL", "/info/"]);
    assert!(
        ls.lines()
            .any(|l| l.starts_with("-r-------- ") && l.ends_with(" tier")),
        "{ls}"
    );
    assert!(
        ls.lines()
            .any(|l| l.starts_with("-r--r--r-- ") && l.ends_with(" mem")),
        "{ls}"
    );
    // No escape: a subPathExpr that names a symlink out of the volume fails.
    r.run(
        "escape",
        "  restartPolicy: Never
  volumes:
  - {name: work, emptyDir: {}}
  initContainers:
  - {name: link, image: IMAGE, command: [ln, -s, /etc, /w/out], volumeMounts: [{name: work, mountPath: /w}]}
  containers:
  - {name: main, image: IMAGE, command: [sleep, '3600'], volumeMounts: [{name: work, mountPath: /x, subPath: out}]}
",
    );
    let p = r.wait("escape", "a config error", |p| {
        container(p, "main")["state"]["waiting"]["reason"] == "CreateContainerConfigError"
    });
    let m = container(&p, "main")["state"]["waiting"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(m.contains("outside the volume"), "{m}");
});

both!(hosts_hostname_and_dns, |r: &Runner| {
    r.run(
        "names",
        "  hostname: db-0
  subdomain: db
  hostAliases:
  - {ip: 10.9.8.7, hostnames: [legacy.example, legacy]}
  dnsPolicy: None
  dnsConfig:
    nameservers: [192.0.2.10]
    searches: [corp.example]
    options: [{name: ndots, value: '2'}]
  containers:
  - {name: main, image: IMAGE, command: [sleep, '3600']}
",
    );
    let p = r.running("names");
    let ip = p["status"]["podIP"].as_str().unwrap().to_string();
    assert_eq!(r.exec("names", None, &["hostname"]), "db-0");
    let hosts = r.exec("names", None, &["cat", "/etc/hosts"]);
    assert!(
        hosts.starts_with("# Kubernetes-managed hosts file."),
        "{hosts}"
    );
    let ns = r.ns();
    assert!(
        hosts.contains(&format!("{ip}\tdb-0.db.{ns}.svc.cluster.local\tdb-0")),
        "{hosts}"
    );
    assert!(
        hosts.contains("10.9.8.7\tlegacy.example\tlegacy"),
        "{hosts}"
    );
    assert_eq!(
        r.exec("names", None, &["cat", "/etc/resolv.conf"]),
        "nameserver 192.0.2.10\nsearch corp.example\noptions ndots:2"
    );
});

both!(service_links, |r: &Runner| {
    if let Runner::Api { ns, .. } = r {
        cluster().kubectl_ok(&[
            "create",
            "service",
            "clusterip",
            "shop-db",
            "-n",
            &ns.name,
            "--tcp=5432:5432",
        ]);
    }
    let spec = |links: bool| {
        format!(
            "  enableServiceLinks: {links}\n  containers:\n  - {{name: main, image: IMAGE, command: [sleep, '3600']}}\n"
        )
    };
    r.run("linked", &spec(true));
    r.run("unlinked", &spec(false));
    r.running("linked");
    r.running("unlinked");
    let linked = r.exec("linked", None, &["env"]);
    let unlinked = r.exec("unlinked", None, &["env"]);
    match r {
        Runner::Api { .. } => {
            assert!(linked.contains("SHOP_DB_SERVICE_HOST=10.0.0."), "{linked}");
            assert!(
                linked.contains("SHOP_DB_PORT_5432_TCP_PORT=5432"),
                "{linked}"
            );
            assert!(!unlinked.contains("SHOP_DB_"), "{unlinked}");
            for env in [&linked, &unlinked] {
                assert!(env.contains("KUBERNETES_SERVICE_HOST=10.0.0.1"), "{env}");
            }
        }
        // A standalone node knows no services.
        Runner::File(_) => assert!(!linked.contains("_SERVICE_HOST"), "{linked}"),
    }
});

both!(security_context, |r: &Runner| {
    r.run(
        "secure",
        "  securityContext:
    runAsUser: 1000
    runAsGroup: 3000
    supplementalGroups: [4000]
    fsGroup: 2000
    sysctls: [{name: net.ipv4.ip_local_port_range, value: '20000 30000'}]
  volumes:
  - {name: data, emptyDir: {}}
  containers:
  - name: plain
    image: IMAGE
    command: [sh, -c, 'touch /data/mine; exec sleep 3600']
    volumeMounts: [{name: data, mountPath: /data}]
    securityContext: {allowPrivilegeEscalation: false}
  - name: root
    image: IMAGE
    command: [sleep, '3600']
    securityContext: {runAsUser: 0, privileged: true}
",
    );
    r.running("secure");
    let id = r.exec("secure", Some("plain"), &["id"]);
    assert!(id.starts_with("uid=1000 gid=3000"), "{id}");
    assert!(id.contains("2000") && id.contains("4000"), "{id}");
    let ls = r.exec("secure", Some("plain"), &["ls", "-ln", "/data"]);
    assert!(
        ls.contains(" 1000     2000 "),
        "files in the fsGroup volume belong to it: {ls}"
    );
    let dir = r.exec("secure", Some("plain"), &["stat", "-c", "%a %g", "/data"]);
    assert_eq!(dir, "2777 2000");
    let st = r.exec(
        "secure",
        Some("plain"),
        &["grep", "NoNewPrivs", "/proc/self/status"],
    );
    assert!(st.ends_with('1'), "{st}");
    let range = r.exec(
        "secure",
        Some("plain"),
        &["cat", "/proc/sys/net/ipv4/ip_local_port_range"],
    );
    assert_eq!(
        range.split_whitespace().collect::<Vec<_>>(),
        ["20000", "30000"]
    );
    // Privileged: every capability the node itself has.
    let caps = r.exec(
        "secure",
        Some("root"),
        &["grep", "CapEff", "/proc/self/status"],
    );
    let ours = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:").map(|v| v.trim().to_string()))
        .unwrap();
    assert!(
        caps.ends_with(&ours),
        "privileged: {caps}, the node's: {ours}"
    );
    r.exec(
        "secure",
        Some("root"),
        &["ip", "addr", "add", "192.0.2.99/32", "dev", "lo"],
    );
    // An unsafe sysctl is refused.
    r.run(
        "unsafe",
        "  securityContext: {sysctls: [{name: kernel.msgmax, value: '65536'}]}\n  containers:\n  - {name: main, image: IMAGE, command: [sleep, '3600']}\n",
    );
    let p = r.wait("unsafe", "Failed", |p| p["status"]["phase"] == "Failed");
    assert_eq!(p["status"]["reason"], "SysctlForbidden");
    assert_eq!(
        p["status"]["message"],
        "forbidden sysctl: \"kernel.msgmax\" not whitelisted"
    );
});

both!(shared_process_namespace, |r: &Runner| {
    r.run(
        "shared",
        "  shareProcessNamespace: true
  containers:
  - {name: app, image: IMAGE, command: [sleep, '4242']}
  - {name: debug, image: IMAGE, command: [sleep, '3600']}
",
    );
    r.running("shared");
    let ps = r.exec("shared", Some("debug"), &["ps", "-o", "pid,args"]);
    assert!(
        ps.contains("sleep 4242"),
        "the other container's process: {ps}"
    );
    let first = ps.lines().nth(1).unwrap_or("");
    assert!(
        first.trim_start().starts_with("1 ") && first.contains("pause"),
        "{ps}"
    );
    // The pause, PID 1 of the pod, reaps an orphan: the shell exits at
    // once, its sleep is re-parented to the pause and must not stay a
    // zombie once it ends.
    r.exec("shared", Some("debug"), &["sh", "-c", "sleep 0.2 & exit 0"]);
    let mut ps = String::new();
    for _ in 0..50 {
        std::thread::sleep(std::time::Duration::from_millis(100));
        ps = r.exec("shared", Some("debug"), &["ps", "-o", "pid,ppid,stat,args"]);
        // busybox's ps shows a zombie as `Z [sleep]`.
        if !ps.contains("sleep 0.2") && !ps.contains("[sleep]") {
            break;
        }
    }
    assert!(
        !ps.contains("sleep 0.2") && !ps.contains("[sleep]"),
        "the orphan is reaped: {ps}"
    );
});
