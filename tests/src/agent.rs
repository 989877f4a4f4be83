//! A private `skiff-agent serve` for one test.
//!
//! Each [`Agent`] gets its own network namespace (made with `ip netns add`,
//! so the CNI bridge and any iptables rule live there and never touch the
//! host's), its own manifest, data and state directories, a CNI network
//! with a unique name, bridge and IPAM directory, and the busybox test
//! image imported into its store as `localhost/busybox:1`. The agent runs
//! inside the namespace (`nsenter --net`), with short back-offs.
//!
//! Dropping it removes every manifest, waits for the agent to stop the
//! pods, stops the agent and deletes the namespace; [`Agent::assert_clean`]
//! checks that nothing was left behind.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{agent_bin, poll, skiff_bin, unique_id};

/// The busybox image (every applet, httpd, a /www page), built once.
pub fn busybox_image() -> &'static Path {
    static IMAGE: OnceLock<PathBuf> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let dir = crate::process_dir("skiff-agent-image");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/busybox-image.sh");
        let out = Command::new("bash")
            .arg(&script)
            .arg(&dir)
            .arg("1")
            .output()
            .expect("run busybox-image.sh");
        assert!(
            out.status.success(),
            "busybox-image.sh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        dir
    })
}

pub struct Agent {
    pub dir: tempfile::TempDir,
    pub netns: String,
    pub network: String,
    /// The CNI network's pod subnet.
    pub subnet: String,
    /// Node mode: the agent is a node of the test cluster.
    pub node: Option<NodeSide>,
    child: Option<Child>,
    extra_args: Vec<String>,
    /// Every pod uid `pods()` has seen: their cgroups must go with them.
    seen: std::cell::RefCell<std::collections::BTreeSet<String>>,
}

/// What a node-mode agent is to the cluster.
pub struct NodeSide {
    /// The Node's name.
    pub name: String,
    /// Its address on the control plane's bridge.
    pub ip: String,
    /// The value of its `skiff-test` label, which the test's pods select.
    pub label: String,
}

impl Agent {
    pub fn start() -> Agent {
        Agent::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Agent {
        let mut a = Agent::prepare(extra, None);
        a.spawn();
        a
    }

    /// An agent that joins the test cluster ([`crate::k8s::cluster`]) as a
    /// node labelled `skiff-test=<label>`, and waits for it to be Ready.
    pub fn start_node(label: &str, extra: &[&str]) -> Agent {
        let mut a = Agent::prepare(extra, Some(label));
        a.spawn();
        let name = a.node_name();
        crate::k8s::cluster().wait_json(
            &["node", &name],
            Duration::from_secs(120),
            "the node to be Ready",
            |n| {
                n["status"]["conditions"].as_array().is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
            },
        );
        a
    }

    /// A node whose link to the control plane is down when it starts (the
    /// test brings `eth0` up); not waited for.
    pub fn start_node_offline(label: &str, extra: &[&str]) -> Agent {
        let mut a = Agent::prepare(extra, Some(label));
        let o = a.in_netns(&["ip", "link", "set", "eth0", "down"]);
        assert!(o.status.success());
        a.spawn();
        a
    }

    /// The node's name (node mode).
    pub fn node_name(&self) -> String {
        self.node
            .as_ref()
            .map(|n| n.name.clone())
            .unwrap_or_default()
    }

    /// Route this node's namespace to `other`'s pod subnet (and back), so
    /// pods on the two nodes reach each other by IP.
    pub fn route_to(&self, other: &Agent) {
        let (Some(a), Some(b)) = (&self.node, &other.node) else {
            panic!("route_to: both agents must be nodes");
        };
        for (from, to, via) in [(self, other, &b.ip), (other, self, &a.ip)] {
            let o = from.in_netns(&["ip", "route", "replace", &to.subnet, "via", via]);
            assert!(
                o.status.success(),
                "route: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }

    fn prepare(extra: &[&str], node_label: Option<&str>) -> Agent {
        // Before anything is made: a missing binary panics here, and the
        // network namespace below would have no owner to remove it.
        agent_bin();
        let dir = tempfile::Builder::new()
            .prefix("skiff-agent-t-")
            .tempdir()
            .unwrap();
        let id = unique_id();
        // Bridge names are at most 15 bytes.
        let n: u64 = id
            .bytes()
            .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64));
        let network = format!("sk{:x}", n % 0xffff_ffff);
        let netns = format!("skiff-agent-{network}");
        let st = Command::new("ip")
            .args(["netns", "add", &netns])
            .status()
            .unwrap();
        assert!(st.success(), "ip netns add {netns}");
        Command::new("ip")
            .args(["-n", &netns, "link", "set", "lo", "up"])
            .status()
            .unwrap();
        for d in ["manifests", "data", "state", "cni", "ipam"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        // A /24 per agent from a name-derived second octet keeps parallel
        // agents apart (they are in different namespaces anyway).
        let subnet = format!("10.{}.{}.0/24", 100 + (n % 100), (n >> 8) % 250);
        let conf = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": network,
            "plugins": [{
                "type": "bridge",
                "bridge": network,
                "isGateway": true,
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "dataDir": dir.path().join("ipam"),
                    "ranges": [[{"subnet": subnet}]],
                    "routes": [{"dst": "0.0.0.0/0"}]
                }
            }]
        });
        std::fs::write(
            dir.path().join("cni/10-test.conflist"),
            serde_json::to_vec_pretty(&conf).unwrap(),
        )
        .unwrap();
        let image = busybox_image();
        let out = Command::new(agent_bin())
            .args(["image", "--data-dir"])
            .arg(dir.path().join("data"))
            .arg("import")
            .arg(format!("oci:{}:1", image.display()))
            .args(["--name", "localhost/busybox:1"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "import: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let node = node_label.map(|label| {
            let c = crate::k8s::cluster();
            let ip = c.attach(&netns);
            // The control plane reaches the node's pods through the node.
            let o = c.exec(&["ip", "route", "replace", &subnet, "via", &ip]);
            assert!(
                o.status.success(),
                "route: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            let name = format!("n-{network}");
            c.node_kubeconfig(&name, &dir.path().join("kubeconfig"));
            NodeSide {
                name,
                ip,
                label: label.to_string(),
            }
        });
        Agent {
            dir,
            netns,
            network,
            subnet,
            node,
            child: None,
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
            seen: Default::default(),
        }
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    pub fn socket(&self) -> String {
        format!("unix://{}", self.path("agent.sock").display())
    }

    /// Start (or restart) the agent process.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("agent.log"))
            .unwrap();
        let child = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.netns))
            .arg(agent_bin())
            .arg("serve")
            .arg("--manifests")
            .arg(self.path("manifests"))
            .arg("--data-dir")
            .arg(self.path("data"))
            .arg("--state-dir")
            .arg(self.path("state"))
            .arg("--listen")
            .arg(self.socket())
            .arg("--cni-conf-dir")
            .arg(self.path("cni"))
            .arg("--runtime")
            .arg(skiff_bin())
            .args(self.node_args())
            .args(["--test-backoff", "1s,4s"])
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        // A restarted agent in the TCG VM, with the tests beside it, can
        // take many seconds to come up.
        poll(Duration::from_secs(90), "agent answers /healthz", || {
            self.cli(&["get", "pods", "-A"])
                .status
                .success()
                .then_some(())
        });
    }

    /// `--node-name`, and in node mode the cluster flags.
    fn node_args(&self) -> Vec<String> {
        match &self.node {
            None => vec!["--node-name".into(), "test-node".into()],
            Some(n) => vec![
                "--node-name".into(),
                n.name.clone(),
                "--kubeconfig".into(),
                self.path("kubeconfig").display().to_string(),
                "--node-labels".into(),
                format!("skiff-test={}", n.label),
                "--node-ip".into(),
                n.ip.clone(),
                // The kubelet API trusts the cluster CA's client
                // certificates (the API server's kubelet client).
                "--client-ca-file".into(),
                crate::k8s::cluster().env("CA_CERT"),
            ],
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    /// kill -9 the agent (its pods keep running).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        // Right after the subcommand: `exec ... -- CMD` ends the flags.
        Command::new(agent_bin())
            .args(&args[..1])
            .arg("--listen")
            .arg(self.socket())
            .args(&args[1..])
            .output()
            .unwrap()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path("agent.log")).unwrap_or_default()
    }

    /// Write a manifest file.
    pub fn manifest(&self, name: &str, text: &str) {
        let tmp = self.path(&format!("manifests/.{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.path(&format!("manifests/{name}"))).unwrap();
    }

    pub fn remove_manifest(&self, name: &str) {
        std::fs::remove_file(self.path(&format!("manifests/{name}"))).unwrap();
    }

    /// `GET /pods` items.
    pub fn pods(&self) -> Vec<Value> {
        let out = self.cli(&["get", "pods", "-A", "-o", "json"]);
        assert!(
            out.status.success(),
            "get pods: {}\nagent log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let items = v["items"].as_array().cloned().unwrap_or_default();
        for p in &items {
            if let Some(uid) = p["metadata"]["uid"].as_str() {
                self.seen.borrow_mut().insert(uid.to_string());
            }
        }
        items
    }

    pub fn pod(&self, name: &str) -> Option<Value> {
        self.pods()
            .into_iter()
            .find(|p| p["metadata"]["name"] == name)
    }

    /// Poll the pod until `f` says yes (timeout with the pod and log).
    pub fn wait_pod(
        &self,
        name: &str,
        timeout: Duration,
        what: &str,
        f: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let p = self.pod(name);
            if let Some(p) = &p {
                if f(p) {
                    return p.clone();
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for pod {name}: {what}\npod: {}\nagent log:\n{}",
                    serde_json::to_string_pretty(&p).unwrap(),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn http(&self, path: &str) -> String {
        let out = Command::new("curl")
            .args(["-sf", "--unix-socket"])
            .arg(self.path("agent.sock"))
            .arg(format!("http://agent{path}"))
            .output()
            .unwrap();
        assert!(out.status.success(), "GET {path} failed");
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// Run a command in the agent's network namespace.
    pub fn in_netns(&self, args: &[&str]) -> std::process::Output {
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.netns))
            .args(args)
            .output()
            .unwrap()
    }

    /// Remove every manifest (and in node mode, every pod bound to the
    /// node, which is cordoned first) and wait until the agent has no pods.
    pub fn stop_all(&self) {
        for e in std::fs::read_dir(self.path("manifests")).unwrap().flatten() {
            let _ = std::fs::remove_file(e.path());
        }
        if let Some(n) = &self.node {
            let c = crate::k8s::cluster();
            let _ = c.kubectl(&["cordon", &n.name]);
            let _ = c.kubectl(&[
                "delete",
                "pods",
                "--all-namespaces",
                "--field-selector",
                &format!("spec.nodeName={}", n.name),
                "--grace-period=1",
                "--wait=false",
            ]);
        }
        if self.child.is_some() {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !self.pods().is_empty() {
                assert!(
                    Instant::now() < deadline,
                    "pods still there 60 s after their manifests went: {:?}\nagent log:\n{}",
                    self.pods()
                        .iter()
                        .map(|p| p["metadata"]["name"].to_string())
                        .collect::<Vec<_>>(),
                    self.log()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    /// Nothing of this agent's pods is left: mounts, runtime state, netns
    /// pins, veths, IPAM reservations, monitors, cgroups.
    pub fn assert_clean(&self) {
        let root = self.dir.path().display().to_string();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let left: Vec<&str> = mounts.lines().filter(|l| l.contains(&root)).collect();
        assert!(
            left.is_empty(),
            "mounts left: {left:#?}\nagent log:\n{}",
            self.log()
        );
        let out = Command::new(skiff_bin())
            .arg("--root")
            .arg(self.path("state/runtime"))
            .args(["list", "-q"])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "",
            "containers left"
        );
        let links = self.in_netns(&["ip", "-o", "link"]);
        let links = String::from_utf8_lossy(&links.stdout);
        assert!(!links.contains("veth"), "veths left: {links}");
        let ipam = self.path(&format!("ipam/{}", self.network));
        let reserved: Vec<String> = std::fs::read_dir(&ipam)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.file_name().to_string_lossy().to_string())
                    .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
                    .collect()
            })
            .unwrap_or_default();
        assert!(reserved.is_empty(), "IPAM reservations left: {reserved:?}");
        let state_pods = std::fs::read_dir(self.path("state/pods"))
            .map(|rd| rd.count())
            .unwrap_or(0);
        assert_eq!(state_pods, 0, "pod records left");
        let seen: Vec<String> = self.seen.borrow().iter().cloned().collect();
        let cgroups = crate::find_cgroups(&seen);
        assert!(cgroups.is_empty(), "pod cgroups left: {cgroups:?}");
        let ps = Command::new("pgrep").args(["-f", &root]).output().unwrap();
        // (monitors are `skiff-monitor monitor ... --dir <root>/...`)
        let ps = String::from_utf8_lossy(&ps.stdout).to_string();
        let others: Vec<&str> = ps
            .lines()
            .filter(|p| p.parse::<i32>().ok() != Some(self.pid()))
            .collect();
        if !others.is_empty() {
            let ps = Command::new("ps")
                .args(["-o", "pid,ppid,stat,args", "-p", &others.join(",")])
                .output()
                .unwrap();
            panic!(
                "processes left:\n{}\nagent log:\n{}",
                String::from_utf8_lossy(&ps.stdout),
                self.log()
            );
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "---- last lines of the agent's log ({}) ----\n{}\n----",
                self.node_name(),
                lines[lines.len().saturating_sub(60)..].join("\n")
            );
        }
        if self.child.is_none() {
            self.spawn();
        }
        self.stop_all();
        self.kill9();
        // A failed test may leave pods: take down what the runtime knows.
        let root = self.path("state/runtime");
        if let Ok(out) = Command::new(skiff_bin())
            .arg("--root")
            .arg(&root)
            .args(["list", "-q"])
            .output()
        {
            for id in String::from_utf8_lossy(&out.stdout).lines() {
                let _ = Command::new(skiff_bin())
                    .arg("--root")
                    .arg(&root)
                    .args(["delete", "--force", id])
                    .status();
            }
        }
        crate::unmount_below(self.dir.path());
        if let Some(n) = &self.node {
            let c = crate::k8s::cluster();
            let _ = c.kubectl(&["delete", "node", &n.name, "--wait=false"]);
            let _ = c.exec(&["ip", "route", "del", &self.subnet]);
        }
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.netns])
            .status();
    }
}

/// The named container's status in a pod.
pub fn container<'a>(pod: &'a Value, name: &str) -> &'a Value {
    for list in ["containerStatuses", "initContainerStatuses"] {
        if let Some(c) = pod["status"][list]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["name"] == name))
        {
            return c;
        }
    }
    &Value::Null
}

/// A condition's status ("True"/"False").
pub fn condition(pod: &Value, kind: &str) -> String {
    pod["status"]["conditions"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["type"] == kind))
        .and_then(|c| c["status"].as_str())
        .unwrap_or("")
        .to_string()
}

pub fn phase(pod: &Value) -> String {
    pod["status"]["phase"].as_str().unwrap_or("").to_string()
}

/// A pod manifest with the test image, from a YAML body below `spec:`
/// containers; `IMAGE` in it stands for the test image.
/// Pods get a 2 s grace period unless the body sets one.
pub fn pod_yaml(name: &str, spec: &str) -> String {
    let grace = if spec.contains("terminationGracePeriodSeconds") {
        ""
    } else {
        "  terminationGracePeriodSeconds: 2\n"
    };
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n{grace}{}",
        spec.replace("IMAGE", "localhost/busybox:1")
    )
}

/// How long the helpers below wait for what they poll.
const WAIT: Duration = Duration::from_secs(60);

/// A JSON string, or "" for anything else.
pub fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

pub fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

pub fn events(a: &Agent) -> String {
    a.http("/events")
}

pub fn runtime_pid(a: &Agent, container_id: &str) -> i64 {
    let id = container_id.trim_start_matches("skiff://");
    let out = std::process::Command::new(crate::skiff_bin())
        .arg("--root")
        .arg(a.path("state/runtime"))
        .args(["state", id])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    v["pid"].as_i64().unwrap_or(0)
}

pub fn poll_metric(a: &Agent, needle: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let m = a.http("/metrics");
        if m.lines().any(|l| l.contains(needle) && !l.ends_with(" 0")) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "metric {needle} never appeared:\n{m}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The output of `skiff-agent logs ARGS` once `done` holds for it: a
/// container's output reaches its log file shortly after it is written
/// (the monitor copies it), not by the time the container counts as ready.
pub fn logs_when(a: &Agent, args: &[&str], done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + WAIT;
    let cmd: Vec<&str> = std::iter::once("logs")
        .chain(args.iter().copied())
        .collect();
    loop {
        let out = stdout(&a.cli(&cmd));
        if done(&out) {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "logs {args:?}: never complete: {out:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn poll_until(f: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out");
        std::thread::sleep(Duration::from_millis(100));
    }
}
