//! A real Kubernetes control plane for node-mode tests.
//!
//! [`cluster`] starts one per test binary with `tests/k8s/control-plane.sh`
//! (etcd, kube-apiserver, kube-controller-manager and kube-scheduler of
//! Kubernetes 1.20, built from Debian's source package, all inside a
//! network namespace of their own) and stops it when the binary exits.
//! Tests share it and keep apart by namespace ([`Namespace`]) and by node:
//! each test's agents are nodes of their own ([`crate::agent::Agent::start_node`]),
//! labelled `skiff-test=<id>`, and the test's pods select that label, so
//! the real scheduler places them on the test's nodes only.
//!
//! Addresses: the control plane's bridge is 10.201.0.1/24 in its
//! namespace; each node's namespace is plugged into it with the next free
//! address ([`Cluster::attach`]), and the control plane gets a route to the
//! node's pod subnet through it, so the API server reaches pods and pods
//! reach the API server.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::unique_id;

/// The control plane of this test binary.
pub struct Cluster {
    /// Its state directory (certificates, logs, kubeconfigs).
    pub dir: PathBuf,
    /// `NAME=value` from `DIR/env`.
    env: Vec<(String, String)>,
    next_ip: AtomicU32,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("k8s/control-plane.sh")
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();

extern "C" fn tear_down() {
    if let Some(c) = CLUSTER.get() {
        let _ = Command::new("bash")
            .arg(script())
            .arg("down")
            .arg(&c.dir)
            .output();
        let _ = std::fs::remove_dir_all(&c.dir);
    }
}

/// The shared control plane, started on first use.
pub fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("skiff-k8s-{}", unique_id()));
        let t0 = Instant::now();
        let out = Command::new("bash")
            .arg(script())
            .arg("up")
            .arg(&dir)
            .output()
            .expect("run control-plane.sh");
        assert!(
            out.status.success(),
            "control-plane.sh up failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // SAFETY: registers a plain extern "C" function to run at exit;
        // it touches only the static above.
        unsafe {
            libc::atexit(tear_down);
        }
        eprintln!("control plane up in {:.1} s", t0.elapsed().as_secs_f64());
        let env = std::fs::read_to_string(dir.join("env"))
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.trim_matches('\'').to_string()))
            .collect();
        Cluster {
            dir,
            env,
            next_ip: AtomicU32::new(10),
        }
    })
}

impl Cluster {
    pub fn env(&self, key: &str) -> String {
        self.env
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }

    /// `https://10.201.0.1:6443`.
    pub fn apiserver(&self) -> String {
        self.env("APISERVER")
    }

    /// kubectl as cluster admin (inside the control plane's namespace), to
    /// spawn.
    pub fn kubectl_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", self.env("NETNS_PATH")))
            .arg(self.env("KUBECTL"))
            .arg("--kubeconfig")
            .arg(self.env("KUBECONFIG"))
            .args(args);
        c
    }

    /// Run kubectl as cluster admin (inside the control plane's namespace).
    pub fn kubectl(&self, args: &[&str]) -> Output {
        Command::new("nsenter")
            .arg(format!("--net={}", self.env("NETNS_PATH")))
            .arg(self.env("KUBECTL"))
            .arg("--kubeconfig")
            .arg(self.env("KUBECONFIG"))
            .args(args)
            .output()
            .expect("run kubectl")
    }

    /// kubectl that must succeed; its stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// kubectl with a manifest on stdin.
    pub fn kubectl_stdin(&self, args: &[&str], input: &str) -> Output {
        use std::io::Write;
        let mut child = Command::new("nsenter")
            .arg(format!("--net={}", self.env("NETNS_PATH")))
            .arg(self.env("KUBECTL"))
            .arg("--kubeconfig")
            .arg(self.env("KUBECONFIG"))
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run kubectl");
        let _ = child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes());
        child.wait_with_output().expect("kubectl")
    }

    /// `kubectl apply -f -` that must succeed.
    pub fn apply(&self, ns: &str, yaml: &str) {
        let out = self.kubectl_stdin(&["apply", "-n", ns, "-f", "-"], yaml);
        assert!(
            out.status.success(),
            "kubectl apply: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A JSON merge patch of a pod's `status` subresource, as cluster
    /// admin (curl with the admin's certificate: kubectl 1.20 cannot patch a
    /// subresource). Panics unless the API server accepts it.
    pub fn patch_pod_status(&self, ns: &str, name: &str, patch: &Value) {
        let pki = self.dir.join("pki");
        let url = format!(
            "{}/api/v1/namespaces/{ns}/pods/{name}/status",
            self.apiserver()
        );
        let out = Command::new("nsenter")
            .arg(format!("--net={}", self.env("NETNS_PATH")))
            .args(["curl", "-sS", "--fail-with-body", "-X", "PATCH"])
            .args(["-H", "Content-Type: application/merge-patch+json"])
            .arg("--cacert")
            .arg(self.env("CA_CERT"))
            .arg("--cert")
            .arg(pki.join("admin.crt"))
            .arg("--key")
            .arg(pki.join("admin.key"))
            .arg("--data")
            .arg(patch.to_string())
            .arg(&url)
            .output()
            .expect("curl");
        assert!(
            out.status.success(),
            "PATCH {url}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `kubectl get ... -o json`.
    pub fn get_json(&self, args: &[&str]) -> Option<Value> {
        let mut a: Vec<&str> = vec!["get"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["-o", "json"]);
        let out = self.kubectl(&a);
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    /// Poll `kubectl get ARGS -o json` until `f` says yes.
    pub fn wait_json(
        &self,
        args: &[&str],
        timeout: Duration,
        what: &str,
        f: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.get_json(args);
            if let Some(v) = &v {
                if f(v) {
                    return v.clone();
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what}: kubectl get {}:\n{}\n{}",
                    args.join(" "),
                    serde_json::to_string_pretty(&v).unwrap_or_default(),
                    self.slow_requests()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// What etcd and the API server said about slow requests (etcd's
    /// "took too long", the API server's `Trace[...]` of requests over
    /// its threshold, timeouts): for a failure's message, since a wait that
    /// timed out may be the control plane's slowness rather than the node's.
    pub fn slow_requests(&self) -> String {
        let mut out = String::new();
        for name in ["etcd", "kube-apiserver"] {
            let log = std::fs::read_to_string(self.dir.join("logs").join(format!("{name}.log")))
                .unwrap_or_default();
            let slow: Vec<&str> = log
                .lines()
                .filter(|l| {
                    ["took too long", "slow", "Trace[", "timeout", "Timeout"]
                        .iter()
                        .any(|w| l.contains(w))
                })
                .collect();
            out.push_str(&format!(
                "---- {name}: last slow-request lines ----\n{}\n",
                slow[slow.len().saturating_sub(15)..].join("\n")
            ));
        }
        out
    }

    /// A kubeconfig for node `name` (`system:node:NAME`, group
    /// `system:nodes`), written to `out`.
    pub fn node_kubeconfig(&self, name: &str, out: &Path) {
        let o = Command::new("bash")
            .arg(script())
            .args(["node-kubeconfig"])
            .arg(&self.dir)
            .arg(name)
            .arg(out)
            .output()
            .expect("node-kubeconfig");
        assert!(
            o.status.success(),
            "node-kubeconfig: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    /// Plug network namespace `netns` into the control plane's bridge;
    /// returns its address there.
    pub fn attach(&self, netns: &str) -> String {
        let n = self.next_ip.fetch_add(1, Ordering::SeqCst);
        assert!(n < 250, "out of node addresses");
        let subnet = self.env("BRIDGE_IP");
        let base = subnet
            .rsplit_once('.')
            .map(|(b, _)| b)
            .unwrap_or("10.201.0");
        let ip = format!("{base}.{n}");
        let o = Command::new("bash")
            .arg(script())
            .arg("attach")
            .arg(&self.dir)
            .arg(netns)
            .arg(format!("{ip}/24"))
            .output()
            .expect("attach");
        assert!(
            o.status.success(),
            "attach: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        ip
    }

    /// Run a command in the control plane's network namespace.
    pub fn exec(&self, args: &[&str]) -> Output {
        Command::new("nsenter")
            .arg(format!("--net={}", self.env("NETNS_PATH")))
            .args(args)
            .output()
            .expect("nsenter")
    }

    /// The control plane's logs, for failure messages.
    pub fn logs(&self, component: &str) -> String {
        let text = std::fs::read_to_string(self.dir.join(format!("logs/{component}.log")))
            .unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

/// A namespace of the shared cluster for one test; deleted on drop.
pub struct Namespace {
    pub name: String,
}

impl Namespace {
    pub fn new() -> Namespace {
        let c = cluster();
        let id = unique_id().to_lowercase().replace(['_', '.'], "-");
        let name = format!("t-{}", id.trim_start_matches("skiff-t-"));
        c.kubectl_ok(&["create", "namespace", &name]);
        // Pods cannot be created before the namespace's default service
        // account exists (the ServiceAccount admission plugin).
        c.wait_json(
            &["serviceaccount", "default", "-n", &name],
            Duration::from_secs(60),
            "the default service account",
            |_| true,
        );
        Namespace { name }
    }
}

impl Default for Namespace {
    fn default() -> Self {
        Namespace::new()
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = cluster().kubectl(&["delete", "namespace", &self.name, "--wait=false"]);
    }
}

/// A pod manifest for the test image, placed on nodes labelled
/// `skiff-test=<label>`; `extra` is more of the pod spec (YAML, indented
/// two spaces) and `container` more of its one container (four spaces).
pub fn pod_yaml(name: &str, label: &str, extra: &str, container: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{app: {name}}}\nspec:\n  nodeSelector: {{skiff-test: {label}}}\n  terminationGracePeriodSeconds: 5\n{extra}  containers:\n  - name: main\n    image: localhost/busybox:1\n    imagePullPolicy: IfNotPresent\n{container}"
    )
}

/// A pod's condition `kind` is "True".
pub fn condition_true(pod: &Value, kind: &str) -> bool {
    pod["status"]["conditions"].as_array().is_some_and(|cs| {
        cs.iter()
            .any(|c| c["type"] == kind && c["status"] == "True")
    })
}
