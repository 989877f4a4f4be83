//! The node agent as a node of a real Kubernetes cluster: registration
//! and readiness, pods the real scheduler places, readiness and
//! CrashLoopBackOff as `kubectl get pods` shows them, secrets, config maps
//! and service-account tokens, deletion, mirror pods, an agent killed and
//! restarted, and bad input.
//!
//! The control plane is Kubernetes 1.20 built from Debian's source package
//! (`tests/k8s/control-plane.sh`), with the Node and RBAC authorizers and
//! the NodeRestriction and ServiceAccount admission plugins on; kubectl is
//! the real one. See `skiff_tests::k8s`.

use std::time::{Duration, Instant};

use serde_json::Value;
use skiff_tests::agent::{stdout, Agent};
use skiff_tests::k8s::{cluster, condition_true, pod_yaml, Namespace};
use skiff_tests::unique_id;

const T: Duration = Duration::from_secs(90);

fn label() -> String {
    unique_id().to_lowercase().replace(['_', '.'], "-")
}

/// `kubectl get pod` as JSON, polled until `f` holds.
fn wait_pod(ns: &Namespace, name: &str, what: &str, f: impl Fn(&Value) -> bool) -> Value {
    cluster().wait_json(&["pod", name, "-n", &ns.name], T, what, f)
}

fn running_ready(p: &Value) -> bool {
    p["status"]["phase"] == "Running" && condition_true(p, "Ready")
}

/// Run `cmd` in the pod's container through the agent's own API.
fn exec(a: &Agent, ns: &str, pod: &str, cmd: &[&str]) -> String {
    let mut args = vec!["exec", "-n", ns, pod, "--"];
    args.extend_from_slice(cmd);
    let out = a.cli(&args);
    assert!(
        out.status.success(),
        "exec {cmd:?} in {ns}/{pod}: {}{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout(&out)
}

/// A kubectl table column of one pod (`kubectl get pod -o wide`).
fn column(ns: &Namespace, pod: &str, col: &str) -> String {
    let out = cluster().kubectl_ok(&["get", "pod", pod, "-n", &ns.name, "-o", "wide"]);
    let mut lines = out.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    let row: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    let i = header.iter().position(|h| *h == col).unwrap_or(usize::MAX);
    row.get(i).unwrap_or(&"").to_string()
}

#[test]
fn the_node_registers_renews_its_lease_and_turns_ready() {
    let l = label();
    let a = Agent::start_node(&l, &[]);
    let c = cluster();
    let name = a.node_name();
    let n = c.get_json(&["node", &name]).expect("node");
    let st = &n["status"];
    assert_eq!(st["capacity"]["pods"], "110");
    assert!(
        st["capacity"]["cpu"]
            .as_str()
            .unwrap()
            .parse::<u32>()
            .unwrap()
            >= 1
    );
    assert!(st["allocatable"]["memory"]
        .as_str()
        .unwrap()
        .ends_with("Ki"));
    assert!(st["capacity"]["ephemeral-storage"].is_string());
    let info = &st["nodeInfo"];
    assert!(info["containerRuntimeVersion"]
        .as_str()
        .unwrap()
        .starts_with("skiff://"));
    assert!(info["kubeletVersion"]
        .as_str()
        .unwrap()
        .starts_with("v1.20"));
    assert_eq!(info["operatingSystem"], "linux");
    assert!(!info["bootID"].as_str().unwrap().is_empty());
    assert!(!info["kernelVersion"].as_str().unwrap().is_empty());
    let addrs = st["addresses"].as_array().unwrap();
    let ip = a.node.as_ref().unwrap().ip.clone();
    assert!(addrs
        .iter()
        .any(|x| x["type"] == "InternalIP" && x["address"] == ip.as_str()));
    assert!(addrs
        .iter()
        .any(|x| x["type"] == "Hostname" && x["address"] == name.as_str()));
    assert_eq!(st["daemonEndpoints"]["kubeletEndpoint"]["Port"], 10250);
    let conds = st["conditions"].as_array().unwrap();
    for (kind, status, reason) in [
        ("Ready", "True", "KubeletReady"),
        ("MemoryPressure", "False", "KubeletHasSufficientMemory"),
        ("DiskPressure", "False", "KubeletHasNoDiskPressure"),
        ("PIDPressure", "False", "KubeletHasSufficientPID"),
    ] {
        assert!(
            conds
                .iter()
                .any(|x| x["type"] == kind && x["status"] == status && x["reason"] == reason),
            "{kind}: {conds:?}"
        );
    }
    let images = st["images"].as_array().unwrap();
    assert!(
        images.iter().any(|i| i["names"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == "localhost/busybox:1")),
        "{images:?}"
    );
    assert_eq!(n["metadata"]["labels"]["skiff-test"], l.as_str());
    assert_eq!(
        n["metadata"]["labels"]["kubernetes.io/hostname"],
        name.as_str()
    );
    // The lease: renewed every 10 s, for 40 s, owned by the Node. It is
    // made once the Node is registered (it needs the Node's uid), which may
    // be after the Node turned Ready.
    let lease = c.wait_json(
        &["lease", &name, "-n", "kube-node-lease"],
        Duration::from_secs(30),
        "the node's lease",
        |_| true,
    );
    assert_eq!(lease["spec"]["holderIdentity"], name.as_str());
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 40);
    let first = lease["spec"]["renewTime"].as_str().unwrap().to_string();
    let owner = &lease["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "Node");
    assert_eq!(owner["uid"], n["metadata"]["uid"]);
    // Renewed before the 40 s it promised run out (every 10 s, and a
    // renewal the API server leaves unanswered is retried after 10 s).
    c.wait_json(
        &["lease", &name, "-n", "kube-node-lease"],
        Duration::from_secs(40),
        "the lease to be renewed",
        |l| l["spec"]["renewTime"].as_str() != Some(first.as_str()),
    );
    // kubectl's own view.
    let table = c.kubectl_ok(&["get", "node", &name, "-o", "wide"]);
    assert!(table.contains(" Ready "), "{table}");
    assert!(table.contains("skiff://"), "{table}");
}

#[test]
fn the_scheduler_places_a_pod_and_readiness_flips_ready() {
    let l = label();
    let a = Agent::start_node(&l, &[]);
    let ns = Namespace::new();
    let c = cluster();
    // Ready after 3 s, unready at 12 s.
    c.apply(
        &ns.name,
        &pod_yaml(
            "flip",
            &l,
            "",
            "    command: [sh, -c, 'sleep 3; touch /tmp/ready; sleep 9; rm /tmp/ready; exec sleep 3600']\n    readinessProbe:\n      exec: {command: [test, -f, /tmp/ready]}\n      periodSeconds: 1\n",
        ),
    );
    let p = wait_pod(&ns, "flip", "Running", |p| {
        p["status"]["phase"] == "Running"
    });
    assert_eq!(
        p["spec"]["nodeName"],
        a.node_name().as_str(),
        "placed by the scheduler"
    );
    assert_eq!(column(&ns, "flip", "READY"), "0/1");
    let t0 = Instant::now();
    wait_pod(&ns, "flip", "Ready", |p| condition_true(p, "Ready"));
    assert_eq!(column(&ns, "flip", "READY"), "1/1");
    // What the node reports: the container unready again. (The Ready
    // condition alone may also be set false by the controller manager's
    // node lifecycle controller, which marks pods not ready when it
    // thinks their node is; the containers' own flags are the node's.)
    wait_pod(&ns, "flip", "unready again", |p| {
        p["status"]["phase"] == "Running"
            && p["status"]["containerStatuses"][0]["ready"] == false
            && !condition_true(p, "Ready")
    });
    assert_eq!(column(&ns, "flip", "READY"), "0/1");
    assert!(t0.elapsed() > Duration::from_secs(5));
    let p = c.get_json(&["pod", "flip", "-n", &ns.name]).unwrap();
    let st = &p["status"];
    assert_eq!(st["qosClass"], "BestEffort");
    assert_eq!(st["hostIP"], a.node.as_ref().unwrap().ip.as_str());
    assert!(st["podIP"].as_str().unwrap().starts_with("10."));
    assert!(st["startTime"].is_string());
    let cs = &st["containerStatuses"][0];
    assert_eq!(cs["restartCount"], 0);
    assert_eq!(cs["started"], true);
    assert!(cs["containerID"].as_str().unwrap().starts_with("skiff://"));
    assert!(cs["imageID"].as_str().unwrap().contains("sha256:"));
    assert!(cs["state"]["running"]["startedAt"].is_string());
    // kubelet's events, posted to the API.
    let ev = c.kubectl_ok(&["get", "events", "-n", &ns.name]);
    for reason in ["Scheduled", "Created", "Started", "Unhealthy"] {
        assert!(ev.contains(reason), "{reason} in {ev}");
    }
    let ev = c.get_json(&["events", "-n", &ns.name]).unwrap();
    let started = ev["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["reason"] == "Started")
        .expect("a Started event");
    assert_eq!(started["source"]["component"], "kubelet");
    assert_eq!(started["source"]["host"], a.node_name().as_str());
    assert_eq!(
        started["involvedObject"]["fieldPath"],
        "spec.containers{main}"
    );
}

/// The test bed itself: a node leaving the control plane's bridge must not
/// cut the other nodes off. A Linux bridge without an address of its own
/// takes its lowest port's MAC and changes it when that port goes; nodes
/// then sent to a MAC nobody had until ARP asked again (up to 30 s of
/// heartbeats and status lost, the "no answer within 10s" of earlier CI
/// runs). `control-plane.sh up` gives the bridge a fixed address.
#[test]
fn a_node_leaving_the_bridge_keeps_the_api_servers_mac() {
    let c = cluster();
    let mac = || {
        let out = c.exec(&["ip", "-br", "link", "show", &c.env("BRIDGE")]);
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .nth(2)
            .unwrap_or("")
            .to_string()
    };
    let before = mac();
    let names: Vec<String> = (0..3)
        .map(|i| format!("skt-br{i}-{}", std::process::id()))
        .collect();
    for n in &names {
        assert!(std::process::Command::new("ip")
            .args(["netns", "add", n])
            .status()
            .unwrap()
            .success());
        c.attach(n);
    }
    let during = mac();
    for n in &names {
        let _ = std::process::Command::new("ip")
            .args(["netns", "delete", n])
            .status();
    }
    // The veths die with their namespaces.
    std::thread::sleep(Duration::from_millis(300));
    assert!(!before.is_empty());
    assert_eq!(during, before, "nodes plugged in changed the bridge's MAC");
    assert_eq!(mac(), before, "nodes leaving changed the bridge's MAC");
}

/// kubelet's status reconcile: a pod status someone else overwrote in the
/// API is set right by the node, though nothing changed on the node.
#[test]
fn a_status_overwritten_in_the_api_is_set_right_again() {
    let l = label();
    let a = Agent::start_node(&l, &[]);
    let ns = Namespace::new();
    let c = cluster();
    c.apply(
        &ns.name,
        &pod_yaml("drift", &l, "", "    command: [sleep, '3600']\n"),
    );
    wait_pod(&ns, "drift", "Running and Ready", running_ready);
    c.patch_pod_status(
        &ns.name,
        "drift",
        &serde_json::json!({"status": {"phase": "Pending", "message": "overwritten by the test"}}),
    );
    let p = c.get_json(&["pod", "drift", "-n", &ns.name]).unwrap();
    assert_eq!(p["status"]["phase"], "Pending", "the overwrite took");
    // Two reconcile ticks of 10 s at most.
    let p = wait_pod(&ns, "drift", "the node's status back", |p| {
        running_ready(p) && p["status"]["message"].is_null()
    });
    // And no more: a steady pod's object stays as it is over two more
    // ticks, and the status went once.
    std::thread::sleep(Duration::from_secs(21));
    let later = c.get_json(&["pod", "drift", "-n", &ns.name]).unwrap();
    assert_eq!(
        later["metadata"]["resourceVersion"], p["metadata"]["resourceVersion"],
        "the node left a steady pod alone"
    );
    let resent = a
        .log()
        .matches("differs from the node's: sending it again")
        .count();
    assert_eq!(
        resent, 1,
        "the agent says once why it sent the status again"
    );
}

#[test]
fn a_crashing_pod_shows_crash_loop_back_off() {
    let l = label();
    let _a = Agent::start_node(&l, &[]);
    let ns = Namespace::new();
    let c = cluster();
    c.apply(
        &ns.name,
        &pod_yaml(
            "crash",
            &l,
            "",
            "    command: [sh, -c, 'echo bye; exit 3']\n",
        ),
    );
    let deadline = Instant::now() + T;
    loop {
        let status = column(&ns, "crash", "STATUS");
        let restarts: u32 = column(&ns, "crash", "RESTARTS").parse().unwrap_or(0);
        if status == "CrashLoopBackOff" && restarts >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no CrashLoopBackOff: {}",
            c.kubectl_ok(&["get", "pod", "crash", "-n", &ns.name, "-o", "yaml"])
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let p = c.get_json(&["pod", "crash", "-n", &ns.name]).unwrap();
    let cs = &p["status"]["containerStatuses"][0];
    assert_eq!(cs["state"]["waiting"]["reason"], "CrashLoopBackOff");
    assert_eq!(cs["lastState"]["terminated"]["exitCode"], 3);
    assert_eq!(cs["lastState"]["terminated"]["reason"], "Error");
    let ev = c.kubectl_ok(&["get", "events", "-n", &ns.name]);
    assert!(ev.contains("BackOff"), "{ev}");
}

#[test]
fn secrets_and_config_maps_are_mounted_and_updates_reach_the_pod() {
    let l = label();
    let a = Agent::start_node(&l, &[]);
    let ns = Namespace::new();
    let c = cluster();
    c.kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "db",
        "-n",
        &ns.name,
        "--from-literal=password=s3cret",
        "--from-literal=user=admin",
    ]);
    c.kubectl_ok(&[
        "create",
        "configmap",
        "settings",
        "-n",
        &ns.name,
        "--from-literal=color=blue",
        "--from-literal=size=9",
    ]);
    c.apply(
        &ns.name,
        &pod_yaml(
            "vols",
            &l,
            "  securityContext: {fsGroup: 2000}\n  volumes:\n  - name: sec\n    secret: {secretName: db, defaultMode: 0400}\n  - name: cfg\n    configMap:\n      name: settings\n      items: [{key: color, path: nested/color.txt, mode: 0600}]\n  - name: missing\n    configMap: {name: nothing-here, optional: true}\n",
            "    command: [sleep, '3600']\n    env:\n    - {name: PASSWORD, valueFrom: {secretKeyRef: {name: db, key: password}}}\n    - {name: GREETING, value: 'hello $(PASSWORD)'}\n    envFrom:\n    - {prefix: CFG_, configMapRef: {name: settings}}\n    volumeMounts:\n    - {name: sec, mountPath: /etc/db}\n    - {name: cfg, mountPath: /etc/cfg}\n    - {name: missing, mountPath: /etc/none}\n    - {name: cfg, mountPath: /etc/one-color.txt, subPath: nested/color.txt}\n",
        ),
    );
    wait_pod(&ns, "vols", "Running and Ready", running_ready);
    let pod = "vols";
    assert_eq!(
        exec(&a, &ns.name, pod, &["cat", "/etc/db/password"]),
        "s3cret"
    );
    assert_eq!(
        exec(&a, &ns.name, pod, &["cat", "/etc/cfg/nested/color.txt"]),
        "blue"
    );
    assert_eq!(
        exec(&a, &ns.name, pod, &["cat", "/etc/one-color.txt"]),
        "blue"
    );
    let ls = exec(
        &a,
        &ns.name,
        pod,
        &["ls", "-lL", "/etc/db/password", "/etc/cfg/nested/color.txt"],
    );
    assert!(
        ls.contains("-r--r----- ") && ls.contains(" 2000 "),
        "defaultMode 0400 with fsGroup: {ls}"
    );
    assert!(
        ls.contains("-rw-r----- "),
        "item mode 0600 with fsGroup: {ls}"
    );
    assert_eq!(exec(&a, &ns.name, pod, &["ls", "/etc/none"]), "");
    let env = exec(&a, &ns.name, pod, &["env"]);
    for want in [
        "PASSWORD=s3cret",
        "GREETING=hello s3cret",
        "CFG_color=blue",
        "CFG_size=9",
    ] {
        assert!(env.lines().any(|l| l == want), "{want} in {env}");
    }
    let id = exec(&a, &ns.name, pod, &["id"]);
    assert!(
        id.contains("2000"),
        "fsGroup is a supplementary group: {id}"
    );
    // The secret's files live under the agent's root-only state directory,
    // not the data directory (the runtime spec holds the environment, as
    // containerd's does, in a root-only bundle).
    let found = std::process::Command::new("grep")
        .args(["-rl", "--exclude=config.json", "s3cret"])
        .arg(a.path("data"))
        .output()
        .unwrap();
    assert!(
        stdout(&found).is_empty(),
        "a secret under the data dir: {}",
        stdout(&found)
    );
    let uid = c.get_json(&["pod", pod, "-n", &ns.name]).unwrap()["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    use std::os::unix::fs::PermissionsExt;
    for d in [a.path(&format!("data/pods/{uid}")), a.path("state")] {
        let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", d.display());
    }
    // An update reaches the running pod, through the ..data swap.
    let before = exec(&a, &ns.name, pod, &["readlink", "/etc/cfg/..data"]);
    c.kubectl_stdin(
        &["apply", "-n", &ns.name, "-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {color: green, size: '9'}\n",
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while exec(&a, &ns.name, pod, &["cat", "/etc/cfg/nested/color.txt"]) != "green" {
        assert!(
            Instant::now() < deadline,
            "the update never reached the pod"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let after = exec(&a, &ns.name, pod, &["readlink", "/etc/cfg/..data"]);
    assert_ne!(before, after, "a new version directory");
    assert_eq!(
        exec(&a, &ns.name, pod, &["cat", "/etc/one-color.txt"]),
        "blue",
        "a subPath mount keeps the version it was made from, as in kubelet"
    );
    // A pod whose secret does not exist waits, saying why.
    c.apply(
        &ns.name,
        &pod_yaml(
            "nosecret",
            &l,
            "  volumes:\n  - {name: s, secret: {secretName: absent}}\n",
            "    command: [sleep, '3600']\n    volumeMounts: [{name: s, mountPath: /s}]\n",
        ),
    );
    c.wait_json(&["events", "-n", &ns.name], T, "FailedMount", |e| {
        e["items"].as_array().unwrap().iter().any(|e| {
            e["reason"] == "FailedMount"
                && e["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("secret \"absent\" not found")
        })
    });
    let p = c.get_json(&["pod", "nosecret", "-n", &ns.name]).unwrap();
    assert_eq!(p["status"]["phase"], "Pending");
    // Once it exists, the pod starts.
    c.kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "absent",
        "-n",
        &ns.name,
        "--from-literal=k=v",
    ]);
    wait_pod(&ns, "nosecret", "Running", running_ready);
}

#[test]
fn the_service_account_token_lets_a_pod_call_the_api() {
    let l = label();
    let a = Agent::start_node(&l, &[]);
    let ns = Namespace::new();
    let c = cluster();
    // Let the namespace's default account read its pods.
    c.kubectl_ok(&[
        "create",
        "rolebinding",
        "view",
        "-n",
        &ns.name,
        "--clusterrole=view",
        &format!("--serviceaccount={}:default", ns.name),
    ]);
    c.apply(
        &ns.name,
        &pod_yaml("caller", &l, "", "    command: [sleep, '3600']\n"),
    );
    let p = wait_pod(&ns, "caller", "Running", running_ready);
    // The ServiceAccount admission plugin added the projected volume.
    let vols = p["spec"]["volumes"].as_array().unwrap();
    assert!(
        vols.iter().any(|v| v["projected"]["sources"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["serviceAccountToken"].is_object()))),
        "{vols:?}"
    );
    let dir = "/var/run/secrets/kubernetes.io/serviceaccount";
    assert_eq!(
        exec(
            &a,
            &ns.name,
            "caller",
            &["cat", &format!("{dir}/namespace")]
        ),
        ns.name
    );
    let ca = exec(&a, &ns.name, "caller", &["cat", &format!("{dir}/ca.crt")]);
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"));
    let url = format!(
        "{}/api/v1/namespaces/{}/pods/caller",
        c.apiserver(),
        ns.name
    );
    let script = format!(
        "wget -q -O - --no-check-certificate --header \"Authorization: Bearer $(cat {dir}/token)\" {url}"
    );
    let got = exec(&a, &ns.name, "caller", &["sh", "-c", &script]);
    let v: Value = serde_json::from_str(&got).unwrap_or_else(|e| panic!("{e}: {got}"));
    assert_eq!(v["metadata"]["name"], "caller");
    assert_eq!(
        v["status"]["phase"], "Running",
        "it reads the status the node reported"
    );
    // In-cluster clients find the API server through these.
    let env = exec(&a, &ns.name, "caller", &["env"]);
    assert!(env.contains("KUBERNETES_SERVICE_HOST=10.0.0.1"), "{env}");
    assert!(env.contains("KUBERNETES_SERVICE_PORT=443"), "{env}");
    // The token files are removed with the pod.
    let uid = p["metadata"]["uid"].as_str().unwrap().to_string();
    c.kubectl_ok(&["delete", "pod", "caller", "-n", &ns.name]);
    assert!(!a.path(&format!("state/pods/{uid}")).exists());
}

#[test]
fn kubectl_delete_stops_the_pod_within_its_grace_period() {
    let l = label();
    let a = Agent::start_node(&l, &[]);
    let ns = Namespace::new();
    let c = cluster();
    // A process that ignores SIGTERM: the grace period (3 s) decides.
    c.apply(
        &ns.name,
        &pod_yaml(
            "stubborn",
            &l,
            "",
            "    command: [sh, -c, 'trap \"\" TERM; while true; do sleep 1; done']\n",
        )
        .replace(
            "terminationGracePeriodSeconds: 5",
            "terminationGracePeriodSeconds: 3",
        ),
    );
    wait_pod(&ns, "stubborn", "Running", running_ready);
    let t0 = Instant::now();
    c.kubectl_ok(&["delete", "pod", "stubborn", "-n", &ns.name]);
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_secs(2),
        "killed before the grace period: {took:?}"
    );
    assert!(took < Duration::from_secs(20), "deletion took {took:?}");
    assert!(a.pods().is_empty(), "the node still has it");
    assert!(c.get_json(&["pod", "stubborn", "-n", &ns.name]).is_none());
    // A shorter grace period on the command line wins.
    c.apply(
        &ns.name,
        &pod_yaml("quick", &l, "", "    command: [sleep, '3600']\n"),
    );
    wait_pod(&ns, "quick", "Running", running_ready);
    let t0 = Instant::now();
    c.kubectl_ok(&["delete", "pod", "quick", "-n", &ns.name, "--grace-period=1"]);
    assert!(t0.elapsed() < Duration::from_secs(10));
}

#[test]
fn static_pods_get_mirror_pods() {
    let l = label();
    let a = Agent::start_node(&l, &[]);
    let c = cluster();
    a.manifest(
        "static.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: static-web, namespace: default}\nspec:\n  containers:\n  - {name: web, image: localhost/busybox:1, command: [sleep, '3600']}\n",
    );
    let name = format!("static-web-{}", a.node_name());
    let p = c.wait_json(
        &["pod", &name, "-n", "default"],
        T,
        "the mirror pod Running",
        |p| p["status"]["phase"] == "Running",
    );
    let ann = &p["metadata"]["annotations"];
    assert!(ann["kubernetes.io/config.mirror"].is_string());
    assert_eq!(ann["kubernetes.io/config.source"], "file");
    let owner = &p["metadata"]["ownerReferences"][0];
    assert_eq!(
        (owner["kind"].as_str(), owner["name"].as_str()),
        (Some("Node"), Some(a.node_name().as_str()))
    );
    let all = c.kubectl_ok(&["get", "pods", "-A"]);
    assert!(all.contains(&name), "{all}");
    // Deleting the mirror does not stop the static pod: it comes back.
    let uid = p["metadata"]["uid"].as_str().unwrap().to_string();
    c.kubectl_ok(&["delete", "pod", &name, "-n", "default", "--wait=false"]);
    c.wait_json(&["pod", &name, "-n", "default"], T, "a new mirror", |p| {
        p["metadata"]["uid"].as_str() != Some(uid.as_str()) && p["status"]["phase"] == "Running"
    });
    // Removing the manifest removes the mirror.
    a.remove_manifest("static.yaml");
    let deadline = Instant::now() + T;
    while c.get_json(&["pod", &name, "-n", "default"]).is_some() {
        assert!(Instant::now() < deadline, "the mirror pod stayed");
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn a_killed_agent_goes_not_ready_and_a_restarted_one_adopts_its_pods() {
    let l = label();
    let mut a = Agent::start_node(&l, &[]);
    let ns = Namespace::new();
    let c = cluster();
    c.apply(
        &ns.name,
        &pod_yaml("keep", &l, "", "    command: [sleep, '3600']\n"),
    );
    let p = wait_pod(&ns, "keep", "Running", running_ready);
    let cid = p["status"]["containerStatuses"][0]["containerID"].clone();
    let node = a.node_name();
    a.kill9();
    // The controller-manager sees the lease run out (40 s).
    c.wait_json(
        &["node", &node],
        Duration::from_secs(120),
        "NotReady",
        |n| {
            n["status"]["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x["type"] == "Ready" && x["status"] == "Unknown")
        },
    );
    a.spawn();
    c.wait_json(&["node", &node], T, "Ready again", |n| {
        n["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["type"] == "Ready" && x["status"] == "True")
    });
    let p = wait_pod(&ns, "keep", "Running and Ready", running_ready);
    let cs = &p["status"]["containerStatuses"][0];
    assert_eq!(cs["restartCount"], 0, "no restart");
    assert_eq!(cs["containerID"], cid, "the same container");
    let pods = c.get_json(&["pods", "-n", &ns.name]).unwrap();
    assert_eq!(pods["items"].as_array().unwrap().len(), 1, "no duplicate");
    assert_eq!(a.pods().len(), 1);
}

#[test]
fn a_pod_deleted_while_the_agent_was_down_is_cleaned_up() {
    let l = label();
    let mut a = Agent::start_node(&l, &[]);
    let ns = Namespace::new();
    let c = cluster();
    c.apply(
        &ns.name,
        &pod_yaml("gone", &l, "", "    command: [sleep, '3600']\n"),
    );
    wait_pod(&ns, "gone", "Running", running_ready);
    a.kill9();
    // Graceful deletion leaves the object Terminating for the node to
    // finish; force it, as an admin would with a dead node.
    c.kubectl_ok(&[
        "delete",
        "pod",
        "gone",
        "-n",
        &ns.name,
        "--grace-period=0",
        "--force",
    ]);
    a.spawn();
    let deadline = Instant::now() + T;
    while !a.pods().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the pod still runs: {:?}",
            a.pods()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn an_unreachable_api_server_at_start_is_waited_for() {
    let l = label();
    // The node's link to the control plane is down when it starts.
    let a = Agent::start_node_offline(&l, &[]);
    let c = cluster();
    std::thread::sleep(Duration::from_secs(4));
    assert!(c.get_json(&["node", &a.node_name()]).is_none());
    assert!(
        a.log().contains("register node"),
        "it says why: {}",
        a.log()
    );
    let o = a.in_netns(&["ip", "link", "set", "eth0", "up"]);
    assert!(o.status.success());
    let o = a.in_netns(&[
        "ip",
        "route",
        "replace",
        "default",
        "via",
        &c.env("BRIDGE_IP"),
    ]);
    assert!(o.status.success());
    c.wait_json(&["node", &a.node_name()], T, "Ready", |n| {
        n["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|x| x["type"] == "Ready" && x["status"] == "True")
        })
    });
}

#[test]
fn a_pod_with_an_unsupported_field_fails_naming_it_and_others_run() {
    let l = label();
    let a = Agent::start_node(&l, &[]);
    let ns = Namespace::new();
    let c = cluster();
    c.apply(
        &ns.name,
        &pod_yaml(
            "bad",
            &l,
            "  volumes:\n  - name: share\n    nfs: {server: 192.0.2.1, path: /x}\n",
            "    command: [sleep, '3600']\n",
        ),
    );
    c.apply(
        &ns.name,
        &pod_yaml("good", &l, "", "    command: [sleep, '3600']\n"),
    );
    let p = wait_pod(&ns, "bad", "Failed", |p| p["status"]["phase"] == "Failed");
    assert_eq!(p["status"]["reason"], "UnsupportedField");
    assert_eq!(
        p["status"]["message"],
        "spec.volumes[0].nfs.path: not supported"
    );
    wait_pod(&ns, "good", "Running", running_ready);
    assert_eq!(column(&ns, "bad", "STATUS"), "UnsupportedField");
    // A pod asking for more than the node has fails admission.
    c.apply(
        &ns.name,
        &pod_yaml(
            "huge",
            &l,
            &format!("  nodeName: {}\n", a.node_name()),
            "    command: [sleep, '3600']\n    resources: {requests: {cpu: '500'}}\n",
        )
        .replace("  nodeSelector:", "  #nodeSelector:"),
    );
    let p = wait_pod(&ns, "huge", "Failed", |p| p["status"]["phase"] == "Failed");
    assert_eq!(p["status"]["reason"], "OutOfcpu");
    assert!(p["status"]["message"]
        .as_str()
        .unwrap()
        .starts_with("Node didn't have enough resource: cpu, requested: 500000"));
}

#[test]
fn two_nodes_take_a_deployment_and_their_pods_reach_each_other() {
    let l = label();
    let a = Agent::start_node(&l, &[]);
    let b = Agent::start_node(&l, &[]);
    a.route_to(&b);
    let ns = Namespace::new();
    let c = cluster();
    c.apply(
        &ns.name,
        &format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web}}\nspec:\n  replicas: 4\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec:\n      nodeSelector: {{skiff-test: {l}}}\n      terminationGracePeriodSeconds: 2\n      containers:\n      - name: httpd\n        image: localhost/busybox:1\n        imagePullPolicy: IfNotPresent\n        command: [httpd, -f, -p, '8080', -h, /www]\n        readinessProbe: {{httpGet: {{path: /index.html, port: 8080}}, periodSeconds: 1}}\n"
        ),
    );
    c.wait_json(
        &["deployment", "web", "-n", &ns.name],
        Duration::from_secs(120),
        "4 available replicas",
        |d| d["status"]["availableReplicas"] == 4,
    );
    let pods = c.get_json(&["pods", "-n", &ns.name]).unwrap();
    let pods = pods["items"].as_array().unwrap();
    assert_eq!(pods.len(), 4);
    let on = |n: &Agent| -> Vec<(String, String)> {
        pods.iter()
            .filter(|p| p["spec"]["nodeName"] == n.node_name().as_str())
            .map(|p| {
                (
                    p["metadata"]["name"].as_str().unwrap().to_string(),
                    p["status"]["podIP"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let (on_a, on_b) = (on(&a), on(&b));
    assert!(
        !on_a.is_empty() && !on_b.is_empty(),
        "the scheduler used both nodes: {on_a:?} {on_b:?}"
    );
    assert_eq!(on_a.len() + on_b.len(), 4);
    // A pod on one node reaches a pod on the other by IP, both ways.
    for (from, to, node) in [(&on_a[0], &on_b[0], &a), (&on_b[0], &on_a[0], &b)] {
        let got = exec(
            node,
            &ns.name,
            &from.0,
            &[
                "wget",
                "-q",
                "-O",
                "-",
                &format!("http://{}:8080/index.html", to.1),
            ],
        );
        assert!(got.contains("hello from a skiff pod"), "{got}");
    }
}

/// The agent's established TCP connections to the API server, from the
/// kernel's tables of its network namespace (the node's own).
fn api_connections(a: &Agent) -> usize {
    // 6443 is the test API server's port, in hex as /proc/net/tcp has it.
    ["tcp", "tcp6"]
        .iter()
        .filter_map(|t| std::fs::read_to_string(format!("/proc/{}/net/{t}", a.pid())).ok())
        .map(|table| {
            table
                .lines()
                .skip(1)
                .filter(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    f.len() > 3 && f[2].ends_with(":192B") && f[3] == "01"
                })
                .count()
        })
        .sum()
}

#[test]
fn a_burst_of_pods_leaves_no_pile_of_api_connections() {
    let l = label();
    let a = Agent::start_node(&l, &[]);
    let ns = Namespace::new();
    let c = cluster();
    // The node's own start-up requests settle first.
    std::thread::sleep(Duration::from_secs(2));
    let before = api_connections(&a);
    // Every pod start makes several requests at once (its token, status
    // patches, events); twelve pods together need many connections.
    let yaml: Vec<String> = (0..12)
        .map(|i| {
            pod_yaml(
                &format!("burst-{i}"),
                &l,
                "",
                "    command: [sleep, '3600']\n",
            )
        })
        .collect();
    c.apply(&ns.name, &yaml.join("---\n"));
    for i in 0..12 {
        wait_pod(&ns, &format!("burst-{i}"), "Ready", running_ready);
    }
    // The agent speaks HTTP/2 to the API server: the burst's requests, and
    // the new watch of the namespace's kube-root-ca.crt, are streams of
    // the connections the node already had, and no connection is added
    // for them. (Over HTTP/1.1 every request in flight needed a connection
    // of its own, and the pool kept four of them afterwards.) A connection
    // being replaced may count twice for a moment: look for a few seconds.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut after = api_connections(&a);
    while after > before && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        after = api_connections(&a);
    }
    assert!(after > 0 && after <= before, "{before} -> {after}");
}
