//! The pod daemon: `skiff-agent serve`.
//!
//! Its shape follows kubelet's, in three parts:
//!
//! - **sources** ([`sources`]) say which pods should exist: the manifest
//!   directory, watched with inotify(7), and in node mode the API server's
//!   pods bound to this node; their sets become add, update and remove
//!   operations;
//! - **the pod engine** ([`engine`]) runs one worker per pod that drives it
//!   towards its spec (sandbox, init containers, app containers, restarts,
//!   probes);
//! - **the status manager** ([`status`]) owns every pod's record: workers
//!   change records only through it, and it hands each change to the
//!   sinks (the state files, the HTTP API of [`api`], subscribers such
//!   as node mode's `pods/status` reporter in [`node`]).
//!
//! Everything a worker learns is written to its record on disk first
//! ([`state`]), so a restarted agent can adopt what is running.

pub mod admission;
pub mod api;
pub mod engine;
pub mod events;
pub mod heap;
pub mod kubelet_api;
pub mod node;
pub mod reasons;
pub mod sources;
pub mod state;
pub mod status;
pub mod trace;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::backoff::Policy;
use crate::cni::Cni;
use state::Layout;

/// `skiff-agent serve`'s settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// The static pods' manifest directory (`--manifests`; kubelet's
    /// `--pod-manifest-path`).
    pub manifests: PathBuf,
    /// Disk storage: images, container bundles, emptyDir volumes and logs
    /// (`--data-dir`, default `/var/lib/skiff`).
    pub data_dir: PathBuf,
    /// Runtime state, on a tmpfs: pod records, network namespace pins,
    /// monitors and the runtime's root (`--state-dir`, default
    /// `/run/skiff/agent`).
    pub state_dir: PathBuf,
    /// The subnet of the default bridge network, written when `cni_conf_dir`
    /// holds no configuration (`--pod-cidr`, e.g. `10.88.0.0/16`).
    pub pod_cidr: String,
    /// Where the CNI plugin executables are (`--cni-bin-dir`; CNI's
    /// `CNI_PATH`).
    pub cni_bin_dir: PathBuf,
    /// Where CNI network configurations are read from, the first by file name
    /// (`--cni-conf-dir`).
    pub cni_conf_dir: PathBuf,
    /// The `skiff` runtime binary.
    pub runtime: PathBuf,
    /// The binary that runs `monitor`: `skiff-monitor` when it sits next to
    /// the agent (small, so cheap to keep resident per container), else the
    /// agent itself.
    pub exe: PathBuf,
    /// The node's name, reported as each pod's `spec.nodeName` (`--node-name`;
    /// default the host name, lower-cased).
    pub node_name: String,
    /// The CrashLoopBackOff delays between restarts of a container (10 s
    /// doubling to 5 min).
    pub restart_backoff: Policy,
    /// The ImagePullBackOff delays after failed pulls (the same values as
    /// `restart_backoff`).
    pub image_backoff: Policy,
    /// Bytes a container's log file may reach before it is rotated
    /// (`--container-log-max-size`; kubelet's `containerLogMaxSize`); 0 never
    /// rotates.
    pub log_max_size: u64,
    /// How many rotated files (`<restart>.log.1`, `.2`...) a container's log
    /// keeps besides the live one (`--container-log-max-files`).
    pub log_max_files: u32,
    /// Registries reached over plain HTTP or with unverified TLS.
    pub insecure_registries: Vec<String>,
    /// Per-registry CA certificates, `<dir>/<host>/ca.crt`.
    pub certs_dir: PathBuf,
    /// What pods' resolv.conf is made from.
    pub dns: engine::etc_files::NodeDns,
    /// Where a timeline of each pod start is written (`--trace-dir`; see
    /// [`trace`]); `None`: nowhere.
    pub trace_dir: Option<PathBuf>,
}

impl Config {
    /// Where the agent keeps everything, from `state_dir` and `data_dir`.
    pub fn layout(&self) -> Layout {
        Layout {
            state_dir: self.state_dir.clone(),
            data_dir: self.data_dir.clone(),
        }
    }
    /// The `skiff --root` of the pods' containers: `runtime/` in the state
    /// directory.
    pub fn runtime_root(&self) -> PathBuf {
        self.layout().runtime_root()
    }
}

/// A Prometheus summary's count and sum, for `/metrics`.
#[derive(Debug, Default, Clone)]
pub struct ProbeStats {
    /// Events counted (probe attempts, pod starts).
    pub total: u64,
    /// The time they took, summed, in seconds.
    pub seconds_sum: f64,
}

/// What `/metrics` counts besides pod status.
#[derive(Default)]
pub struct Metrics {
    /// (namespace, pod, container, probe, result) → counters.
    pub probes: BTreeMap<(String, String, String, &'static str, &'static str), ProbeStats>,
    /// Seconds from first seeing a pod to all its containers running: how
    /// many pods, and their sum (all that the summary shows).
    pub pod_starts: ProbeStats,
}

impl Metrics {
    /// Drop the counters of pod `namespace/name`, which is gone: kept, they
    /// would grow with every pod name the node ever ran.
    pub fn forget_pod(&mut self, namespace: &str, name: &str) {
        self.probes
            .retain(|(ns, pod, ..), _| !(ns == namespace && pod == name));
    }
}

/// The running agent: its settings and everything its tasks share. One
/// `Arc<Agent>` is handed to the HTTP API, the sources, the pod workers and
/// node mode.
pub struct Agent {
    /// The settings it was started with.
    pub cfg: Config,
    /// The image store in `--data-dir`, opened once.
    pub store: Arc<skiff_images::store::Store>,
    /// Every pod's record: the status manager.
    pub status: status::StatusManager,
    /// The pod workers.
    pub engine: engine::Engine,
    /// Each source's last set of pods.
    pub config: sources::PodConfig,
    /// Parsed manifest files.
    pub file_cache: sources::file::Cache,
    /// Recent events about pods, for `/events` (see `Agent::event`).
    pub events: Mutex<events::Events>,
    /// What `/metrics` counts besides pod status.
    pub metrics: Mutex<Metrics>,
    /// The client of `httpGet` probes and hooks (`crate::probe::http_client`):
    /// no proxy, no redirects followed, certificates not verified.
    pub http: reqwest::Client,
    /// The CNI plugins and network that pods are wired with, or why pod
    /// networking is unavailable (a sandbox that needs a network then fails).
    pub cni: Result<Cni, String>,
    /// Whether `/sys/fs/cgroup` is the unified cgroup v2 hierarchy, which the
    /// containers' runtime specs follow (cgroup namespace, resource limits).
    pub cgroup_v2: bool,
    /// The node's address: every pod's `status.hostIP`, and the pod IP of a
    /// hostNetwork pod (`--node-ip` in node mode, else the source address of
    /// the default route).
    pub host_ip: String,
    /// Node mode (`--kubeconfig`): the API client and what node mode's
    /// tasks share.
    pub node: Option<node::NodeHandle>,
    /// The last CPU reading of each cgroup, for the rates the kubelet
    /// API's stats report.
    pub stats_samples: kubelet_api::stats::Samples,
    /// The pod-start traces being written (`--trace-dir`).
    pub traces: trace::Traces,
}

impl Agent {
    /// Set up an agent from its settings: open the image store, load (or
    /// write) the CNI configuration, find the host's address. No task is
    /// started yet.
    pub fn new(
        cfg: Config,
        node: Option<node::NodeHandle>,
    ) -> Result<Arc<Agent>, skiff_images::store::StoreError> {
        let store = Arc::new(skiff_images::store::Store::open(&cfg.data_dir)?);
        let cni = crate::cni::load_or_default(&cfg.cni_conf_dir, &cfg.pod_cidr)
            .map(|network| Cni {
                bin_dir: cfg.cni_bin_dir.clone(),
                network,
            })
            .map_err(|e| e.to_string());
        let host_ip = node
            .as_ref()
            .and_then(|n| n.config.ip.clone())
            .unwrap_or_else(host_ip);
        Ok(Arc::new(Agent {
            node,
            store,
            cgroup_v2: nix::sys::statfs::statfs("/sys/fs/cgroup")
                .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC),
            status: status::StatusManager::new(
                cfg.layout(),
                cfg.node_name.clone(),
                host_ip.clone(),
            ),
            host_ip,
            engine: engine::Engine::default(),
            config: sources::PodConfig::default(),
            file_cache: sources::file::Cache::default(),
            events: Mutex::new(events::Events::default()),
            metrics: Mutex::new(Metrics::default()),
            http: crate::probe::http_client(),
            cni,
            stats_samples: Default::default(),
            traces: trace::Traces::new(cfg.trace_dir.clone()).unwrap_or_else(|e| {
                tracing::warn!("--trace-dir: {e}; not tracing pod starts");
                trace::Traces::default()
            }),
            cfg,
        }))
    }

    /// The metrics, locked; a lock poisoned by a panicking holder is taken
    /// all the same.
    pub fn metrics(&self) -> std::sync::MutexGuard<'_, Metrics> {
        self.metrics.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The events, locked; a lock poisoned by a panicking holder is taken all
    /// the same.
    pub fn events(&self) -> std::sync::MutexGuard<'_, events::Events> {
        self.events.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Record an event about pod `uid` (and log it).
    pub fn event(
        &self,
        uid: &str,
        kind: events::Kind,
        reason: &str,
        message: String,
        field: Option<&str>,
    ) {
        let (ns, name) = self
            .status
            .record(uid)
            .map(|p| (p.namespace, p.name))
            .unwrap_or_default();
        tracing::info!("{ns}/{name}: {reason}: {message}");
        let event = self
            .events()
            .push(&ns, &name, uid, kind, reason, message, field);
        if let Some(n) = &self.node {
            n.shared.post_event(event);
        }
        self.status.changed.notify_waiters();
    }
}

/// The address pods with hostNetwork report: the first global IPv4 of
/// this network namespace, else loopback.
fn host_ip() -> String {
    // A UDP "connect" picks the source address the routing table would use
    // without sending anything.
    std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| {
            s.connect("10.255.255.255:9")?;
            s.local_addr()
        })
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|_| "127.0.0.1".into())
}

/// Run the agent until SIGTERM or SIGINT; a node of a cluster when
/// `node` is given.
pub async fn serve(
    cfg: Config,
    listen: api::Listen,
    node: Option<node::NodeConfig>,
) -> anyhow::Result<()> {
    use anyhow::Context;
    for d in [&cfg.state_dir, &cfg.data_dir, &cfg.manifests] {
        std::fs::create_dir_all(d).with_context(|| format!("create {}", d.display()))?;
    }
    // The state directory holds sockets and records: root only.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&cfg.state_dir, std::fs::Permissions::from_mode(0o700))?;
    crate::pause::install(&cfg.data_dir)?;
    // Containers whose monitor dies are re-parented here, so their exit
    // status can still be collected (see monitor.rs).
    nix::sys::prctl::set_child_subreaper(true).context("set child subreaper")?;
    let node = match node {
        Some(n) => Some(node::NodeHandle::new(n).await?),
        None => None,
    };
    let agent = Agent::new(cfg, node)?;
    if let Err(e) = &agent.cni {
        tracing::warn!("pod networking unavailable: {e}");
    }
    let server = api::serve(agent.clone(), listen).await?;
    let _kubelet_api = kubelet_api::serve(agent.clone()).await?;
    engine::Engine::adopt(&agent);
    node::start(&agent);
    tokio::spawn(reap_orphans());
    tokio::spawn(heap::trim_periodically());
    let watcher = tokio::spawn(sources::file::watch(agent.clone()));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
        r = server => { r??; }
    }
    // Like kubelet, leave the pods running: a restarted agent adopts them.
    watcher.abort();
    tracing::info!("agent stopping; pods keep running");
    Ok(())
}

/// The agent is a child subreaper, so processes orphaned below it become
/// its children: the container of a dead monitor (collected by its
/// watcher), but also a command a timed-out exec probe started inside a
/// container, whose `skiff exec` was killed. Such a zombie must be reaped,
/// or the container's PID namespace cannot finish dying (its init waits
/// for every process in it). Children the agent waits for itself (tokio's
/// commands, monitors) are reaped at once; a zombie child still there on
/// the next pass is nobody's, and is reaped here.
async fn reap_orphans() {
    use nix::sys::wait::{waitpid, WaitPidFlag};
    let mut seen: std::collections::HashSet<i32> = Default::default();
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        // Our children, thread by thread (/proc/PID/task/TID/children,
        // see proc(5)), then the state of each.
        let mut zombies = std::collections::HashSet::new();
        let children: Vec<i32> = std::fs::read_dir("/proc/self/task")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
            .flat_map(|s| {
                s.split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect::<Vec<i32>>()
            })
            .collect();
        for pid in children {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // pid (comm) state ...: comm may hold spaces, so look after its
            // closing parenthesis.
            let state = stat
                .rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().next());
            if state == Some("Z") {
                zombies.insert(pid);
            }
        }
        for pid in zombies.intersection(&seen) {
            let _ = waitpid(nix::unistd::Pid::from_raw(*pid), Some(WaitPidFlag::WNOHANG));
        }
        seen = zombies;
    }
}
