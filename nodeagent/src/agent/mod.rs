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
pub mod node;
pub mod reasons;
pub mod sources;
pub mod state;
pub mod status;

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
    pub manifests: PathBuf,
    pub data_dir: PathBuf,
    pub state_dir: PathBuf,
    pub pod_cidr: String,
    pub cni_bin_dir: PathBuf,
    pub cni_conf_dir: PathBuf,
    /// The `skiff` runtime binary.
    pub runtime: PathBuf,
    /// The binary that runs `monitor` and `pause`: `skiff-monitor` when it
    /// sits next to the agent (small, so cheap to keep resident per
    /// container), else the agent itself.
    pub exe: PathBuf,
    pub node_name: String,
    pub restart_backoff: Policy,
    pub image_backoff: Policy,
    pub log_max_size: u64,
    pub log_max_files: u32,
    /// Registries reached over plain HTTP or with unverified TLS.
    pub insecure_registries: Vec<String>,
    /// Per-registry CA certificates, `<dir>/<host>/ca.crt`.
    pub certs_dir: PathBuf,
    /// What pods' resolv.conf is made from.
    pub dns: engine::etc_files::NodeDns,
}

impl Config {
    pub fn layout(&self) -> Layout {
        Layout {
            state_dir: self.state_dir.clone(),
            data_dir: self.data_dir.clone(),
        }
    }
    pub fn runtime_root(&self) -> PathBuf {
        self.layout().runtime_root()
    }
}

/// Probe counters for `/metrics`.
#[derive(Debug, Default, Clone)]
pub struct ProbeStats {
    pub total: u64,
    pub seconds_sum: f64,
}

/// What `/metrics` counts besides pod status.
#[derive(Default)]
pub struct Metrics {
    /// (namespace, pod, container, probe, result) → counters.
    pub probes: BTreeMap<(String, String, String, &'static str, &'static str), ProbeStats>,
    /// Seconds from first seeing a pod to all its containers running.
    pub start_latencies: Vec<f64>,
}

pub struct Agent {
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
    pub events: Mutex<events::Events>,
    pub metrics: Mutex<Metrics>,
    pub http: reqwest::Client,
    pub cni: Result<Cni, String>,
    pub cgroup_v2: bool,
    pub host_ip: String,
    /// Node mode (`--kubeconfig`): the API client and what node mode's
    /// tasks share.
    pub node: Option<node::NodeHandle>,
}

impl Agent {
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
            cfg,
            http: crate::probe::http_client(),
            cni,
        }))
    }

    pub fn metrics(&self) -> std::sync::MutexGuard<'_, Metrics> {
        self.metrics.lock().unwrap_or_else(|e| e.into_inner())
    }

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
    engine::Engine::adopt(&agent);
    node::start(&agent);
    tokio::spawn(reap_orphans());
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
