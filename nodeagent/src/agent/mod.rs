//! The pod daemon: `skiff-agent serve`.
//!
//! Its shape follows kubelet's: a *config source* (the manifest directory,
//! watched with inotify(7)) says which pods should exist; one *pod worker*
//! task per pod drives that pod towards its spec (sandbox, init containers,
//! app containers, restarts, probes); the *status* of every pod is computed
//! from the workers' records; and an HTTP API reports it. Everything a
//! worker learns is written to its record on disk first ([`state`]), so a
//! restarted agent can adopt what is running.

pub mod api;
mod container;
pub mod events;
mod pod;
mod sandbox;
pub mod spec;
pub mod state;
pub mod status;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::backoff::Policy;
use crate::cni::Cni;
use crate::manifest;
use state::PodRecord;

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
}

impl Config {
    pub fn runtime_root(&self) -> PathBuf {
        self.state_dir.join("runtime")
    }
    pub fn log_dir(&self) -> PathBuf {
        self.data_dir.join("pod-logs")
    }
}

/// What a pod worker is told.
#[derive(Debug)]
pub enum Msg {
    /// A container instance's monitor (or the instance) ended.
    Exited { id: String },
    /// A liveness or startup probe failed: kill and maybe restart.
    Kill {
        id: String,
        reason: String,
        /// The probe's `terminationGracePeriodSeconds`, if it has one.
        grace: Option<Duration>,
    },
    /// Stop the pod (manifest removed or changed, agent told to delete).
    Stop,
    /// Look again (a probe result changed...).
    Wake,
}

pub(crate) struct Worker {
    pub tx: mpsc::UnboundedSender<Msg>,
    /// Becomes true when the worker has finished (pod torn down).
    pub done: watch::Receiver<bool>,
    pub spec_hash: String,
    pub file: PathBuf,
    /// Told to stop; a manifest that comes back needs a new worker.
    pub stopping: bool,
}

/// Probe counters for `/metrics`.
#[derive(Debug, Default, Clone)]
pub struct ProbeStats {
    pub total: u64,
    pub seconds_sum: f64,
}

#[derive(Default)]
pub struct Inner {
    pub pods: BTreeMap<String, PodRecord>,
    pub(crate) workers: HashMap<String, Worker>,
    pub events: events::Events,
    /// (namespace, pod, container, probe, result) → counters.
    pub probes: BTreeMap<(String, String, String, &'static str, &'static str), ProbeStats>,
    /// Seconds from first seeing a pod to all its containers running.
    pub start_latencies: Vec<f64>,
}

pub struct Agent {
    pub cfg: Config,
    /// The image store in `--data-dir`, opened once.
    pub store: Arc<skiff_images::store::Store>,
    pub inner: Mutex<Inner>,
    pub http: reqwest::Client,
    pub cni: Result<Cni, String>,
    pub cgroup_v2: bool,
    pub host_ip: String,
    /// Woken whenever a log or status may have changed (for followers).
    pub changed: tokio::sync::Notify,
    /// Parsed manifest files by path, with the (mtime, size, inode) they
    /// were parsed at: the periodic rescan re-parses only what changed.
    manifest_cache: Mutex<HashMap<PathBuf, (ManifestStamp, Vec<manifest::Doc>)>>,
}

type ManifestStamp = (std::time::SystemTime, u64, u64);

impl Agent {
    pub fn new(cfg: Config) -> Result<Arc<Agent>, skiff_images::store::StoreError> {
        let store = Arc::new(skiff_images::store::Store::open(&cfg.data_dir)?);
        let cni = crate::cni::load_or_default(&cfg.cni_conf_dir, &cfg.pod_cidr)
            .map(|network| Cni {
                bin_dir: cfg.cni_bin_dir.clone(),
                network,
            })
            .map_err(|e| e.to_string());
        Ok(Arc::new(Agent {
            store,
            cgroup_v2: nix::sys::statfs::statfs("/sys/fs/cgroup")
                .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC),
            host_ip: host_ip(),
            cfg,
            inner: Mutex::new(Inner::default()),
            http: crate::probe::http_client(),
            cni,
            changed: tokio::sync::Notify::new(),
            manifest_cache: Mutex::new(HashMap::new()),
        }))
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Change a pod's record, save it, and wake followers.
    pub fn update<R>(&self, uid: &str, f: impl FnOnce(&mut PodRecord) -> R) -> Option<R> {
        let (r, saved) = {
            let mut g = self.lock();
            let rec = g.pods.get_mut(uid)?;
            let r = f(rec);
            (r, rec.clone())
        };
        if let Err(e) = saved.save(&self.cfg.state_dir) {
            tracing::warn!("save pod {}: {e}", saved.key());
        }
        self.changed.notify_waiters();
        Some(r)
    }

    pub fn record(&self, uid: &str) -> Option<PodRecord> {
        self.lock().pods.get(uid).cloned()
    }

    pub fn event(
        &self,
        uid: &str,
        kind: events::Kind,
        reason: &str,
        message: String,
        field: Option<&str>,
    ) {
        let mut g = self.lock();
        let (ns, name) = g
            .pods
            .get(uid)
            .map(|p| (p.namespace.clone(), p.name.clone()))
            .unwrap_or_default();
        tracing::info!("{ns}/{name}: {reason}: {message}");
        g.events.push(&ns, &name, uid, kind, reason, message, field);
        drop(g);
        self.changed.notify_waiters();
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

/// Run the agent until SIGTERM or SIGINT.
pub async fn serve(cfg: Config, listen: api::Listen) -> anyhow::Result<()> {
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
    let agent = Agent::new(cfg)?;
    if let Err(e) = &agent.cni {
        tracing::warn!("pod networking unavailable: {e}");
    }
    let server = api::serve(agent.clone(), listen).await?;
    adopt(&agent);
    tokio::spawn(reap_orphans());
    let watcher = tokio::spawn(watch_manifests(agent.clone()));
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

/// Records from a previous run: the pods they describe are handed to
/// workers that adopt what is still running.
fn adopt(agent: &Arc<Agent>) {
    for rec in state::load_all(&agent.cfg.state_dir) {
        tracing::info!("adopting pod {} ({})", rec.key(), rec.uid);
        start_worker(agent, rec, None);
    }
}

fn start_worker(agent: &Arc<Agent>, rec: PodRecord, after: Option<watch::Receiver<bool>>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let (done_tx, done) = watch::channel(false);
    let uid = rec.uid.clone();
    {
        let mut g = agent.lock();
        g.workers.insert(
            uid.clone(),
            Worker {
                tx: tx.clone(),
                done,
                spec_hash: rec.spec_hash.clone(),
                file: rec.file.clone(),
                stopping: false,
            },
        );
        if after.is_none() {
            g.pods.insert(uid.clone(), rec.clone());
        }
    }
    let agent = agent.clone();
    tokio::spawn(async move {
        if let Some(mut prev) = after {
            let _ = prev.wait_for(|d| *d).await;
            agent.lock().pods.insert(uid.clone(), rec.clone());
            let _ = rec.save(&agent.cfg.state_dir);
        }
        pod::run(agent.clone(), uid.clone(), tx, rx).await;
        let _ = done_tx.send(true);
    });
}

/// Watch the manifest directory (inotify, plus a rescan every 10 s as
/// kubelet does) and reconcile on every change.
async fn watch_manifests(agent: Arc<Agent>) {
    use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
    use std::os::fd::AsFd;
    let ino = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
        .ok()
        .filter(|i| {
            i.add_watch(
                &agent.cfg.manifests,
                AddWatchFlags::IN_CREATE
                    | AddWatchFlags::IN_CLOSE_WRITE
                    | AddWatchFlags::IN_DELETE
                    | AddWatchFlags::IN_MOVED_FROM
                    | AddWatchFlags::IN_MOVED_TO
                    | AddWatchFlags::IN_MODIFY,
            )
            .is_ok()
        });
    // Readiness is watched on a duplicate of the inotify fd (same open
    // file), events are read through `ino`.
    let afd = ino.as_ref().and_then(|i| {
        let fd = i.as_fd().try_clone_to_owned().ok()?;
        // SAFETY: the AsyncFd owns this duplicate for as long as it lives.
        unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
        }
        .ok()
    });
    let drain = || {
        if let Some(i) = &ino {
            while i.read_events().is_ok_and(|e| !e.is_empty()) {}
        }
    };
    loop {
        reconcile(&agent);
        match &afd {
            Some(afd) => {
                tokio::select! {
                    r = afd.readable() => {
                        if let Ok(mut g) = r {
                            drain();
                            g.clear_ready();
                        }
                        // Let a burst of writes settle.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        drain();
                    }
                    _ = tokio::time::sleep(Duration::from_secs(10)) => {}
                }
            }
            None => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
}

/// The manifest files kubelet would read: regular files not starting
/// with a dot.
fn manifest_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.path())
        .collect();
    v.sort();
    v
}

/// Make the running pods match the manifests.
pub fn reconcile(agent: &Arc<Agent>) {
    let mut desired: BTreeMap<String, PodRecord> = BTreeMap::new();
    let mut seen_names = BTreeMap::new();
    let files = manifest_files(&agent.cfg.manifests);
    let mut cache = agent
        .manifest_cache
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    cache.retain(|f, _| files.contains(f));
    for file in files {
        use std::os::unix::fs::MetadataExt;
        let stamp: Option<ManifestStamp> = std::fs::metadata(&file)
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len(), m.ino())));
        let docs = match (stamp, cache.get(&file)) {
            (Some(s), Some((cached, docs))) if *cached == s => docs.clone(),
            _ => {
                let text = match std::fs::read_to_string(&file) {
                    Ok(t) => t,
                    Err(e) => {
                        tracing::warn!("read {}: {e}", file.display());
                        continue;
                    }
                };
                let docs = manifest::parse_file(&file, &text);
                if let Some(s) = stamp {
                    cache.insert(file.clone(), (s, docs.clone()));
                }
                docs
            }
        };
        for doc in docs {
            let key = format!("{}/{}", doc.namespace, doc.name);
            if let Some(other) = seen_names.insert(key.clone(), file.clone()) {
                tracing::warn!(
                    "{}: pod {key} is already defined in {}; ignored",
                    file.display(),
                    other.display()
                );
                continue;
            }
            let rec = new_record(&file, doc);
            desired.insert(rec.uid.clone(), rec);
        }
    }
    drop(cache);
    let (running, stale): (Vec<String>, Vec<String>) = {
        let g = agent.lock();
        let running = g.workers.keys().cloned().collect();
        let stale = g
            .workers
            .iter()
            .filter(|(uid, w)| {
                w.stopping
                    || desired
                        .get(*uid)
                        .is_none_or(|d| d.spec_hash != w.spec_hash || d.file != w.file)
            })
            .map(|(uid, _)| uid.clone())
            .collect();
        (running, stale)
    };
    for uid in &stale {
        let prev = {
            let mut g = agent.lock();
            g.workers.get_mut(uid).map(|w| {
                if !w.stopping {
                    let _ = w.tx.send(Msg::Stop);
                    w.stopping = true;
                }
                w.done.clone()
            })
        };
        if let Some(rec) = desired.remove(uid) {
            tracing::info!("pod {} changed: recreating", rec.key());
            start_worker(agent, rec, prev);
        }
    }
    for (uid, rec) in desired {
        if !running.contains(&uid) {
            tracing::info!("pod {} added from {}", rec.key(), rec.file.display());
            start_worker(agent, rec, None);
        }
    }
}

fn new_record(file: &Path, doc: manifest::Doc) -> PodRecord {
    let now = jiff::Timestamp::now();
    let (pod, invalid) = match doc.pod {
        Ok(p) => (Some(p), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let uid = match &pod {
        Some(p) => manifest::pod_uid(p, file),
        None => {
            let mut p = k8s_openapi::api::core::v1::Pod::default();
            p.metadata.name = Some(doc.name.clone());
            p.metadata.namespace = Some(doc.namespace.clone());
            manifest::pod_uid(&p, file)
        }
    };
    let spec_hash = match &pod {
        Some(p) => manifest::spec_hash(p),
        None => format!("invalid-{}", invalid.as_deref().unwrap_or("").len()),
    };
    let containers = |init: bool| -> Vec<state::ContainerRecord> {
        let Some(spec) = pod.as_ref().and_then(|p| p.spec.as_ref()) else {
            return Vec::new();
        };
        let list = if init {
            spec.init_containers.clone().unwrap_or_default()
        } else {
            spec.containers.clone()
        };
        let has_init = spec.init_containers.as_ref().is_some_and(|l| !l.is_empty());
        list.iter()
            .map(|c| {
                let reason = if !init && has_init {
                    "PodInitializing"
                } else {
                    "ContainerCreating"
                };
                state::ContainerRecord::new(&c.name, c.image.as_deref().unwrap_or(""), reason)
            })
            .collect()
    };
    PodRecord {
        uid,
        namespace: doc.namespace,
        name: doc.name,
        file: file.to_path_buf(),
        spec_hash,
        init: containers(true),
        containers: containers(false),
        pod,
        invalid,
        created_at: now,
        start_time: None,
        sandbox: None,
        pod_ip: None,
        conditions: BTreeMap::new(),
        terminating: false,
        deleted_at: None,
        sandbox_error: None,
        finished: false,
        sandbox_count: 0,
    }
}
