//! The pod engine: one worker per pod makes the node match what the
//! sources want (kubelet's pod workers, pkg/kubelet/pod_workers.go).
//!
//! The engine is told of pods by the sources through [`PodUpdate`]s: an
//! added pod gets a worker ([`worker::run`]); a changed one has its worker
//! stopped and a new one started once the old one is done; a removed one
//! is stopped. A worker owns everything its pod has on the node:
//!
//! | step | module |
//! |---|---|
//! | the sandbox: netns, CNI, pause container | [`sandbox`] |
//! | volumes, and keeping projected ones current | [`volumes`], [`atomic_writer`] |
//! | /etc/hosts, /etc/hostname, resolv.conf | [`etc_files`] |
//! | a container's environment | [`env`] |
//! | postStart and preStop hooks | [`hooks`] |
//! | the image, by pull policy | [`image`] |
//! | the bundle: rootfs snapshot and `config.json` | [`bundle`], [`spec`] |
//! | starting a container, its back-offs | [`start`] |
//! | the monitor of each container instance | [`container`] |
//! | probes | [`probes`] |
//! | exits, stops, teardown | [`stop`] |
//! | adopting what a previous agent left | [`adopt`] |
//!
//! Workers change their pod's record only through the status manager
//! ([`super::status`]), which persists it and tells the sinks.

pub mod adopt;
pub mod atomic_writer;
pub mod bundle;
pub mod container;
pub mod deadline;
pub mod env;
pub mod etc_files;
pub mod hooks;
pub mod image;
pub mod probes;
pub mod projected;
pub mod sandbox;
pub mod spec;
pub mod start;
pub mod stop;
pub mod volumes;
pub mod worker;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Container;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::sources::{DesiredPod, PodUpdate};
use super::state::PodRecord;
use super::Agent;

/// What a pod worker is told.
#[derive(Debug)]
pub enum Msg {
    /// A container instance's monitor (or the instance) ended.
    Exited {
        /// The container id of the instance (or of the pod's sandbox) that
        /// ended.
        id: String,
    },
    /// A liveness or startup probe failed: kill and maybe restart.
    Kill {
        /// The instance to kill, by container id.
        id: String,
        /// The `Killing` event's message (`Container c failed liveness probe,
        /// will be restarted`).
        reason: String,
        /// The probe's `terminationGracePeriodSeconds`, if it has one.
        grace: Option<Duration>,
    },
    /// Stop the pod (removed, or changed and to be recreated), within
    /// `grace` when its deletion asked for a grace period of its own.
    Stop {
        /// The grace period the deletion gave, if any; else the spec's
        /// `terminationGracePeriodSeconds` applies.
        grace: Option<Duration>,
    },
    /// Look again (a probe result changed...).
    Wake,
}

/// The engine's handle on one worker.
struct Worker {
    tx: mpsc::UnboundedSender<Msg>,
    /// Becomes true when the worker has finished (pod torn down).
    done: watch::Receiver<bool>,
    spec_hash: String,
    /// Told to stop; a pod that comes back needs a new worker.
    stopping: bool,
}

/// What a worker holds besides the record: probe tasks per instance.
#[derive(Default)]
pub struct Local {
    /// The probe tasks of each running instance, by container id; aborted
    /// when the instance stops.
    pub probes: HashMap<String, Vec<JoinHandle<()>>>,
    /// The pod's start latency (from first seen to every container running)
    /// has gone into `/metrics`.
    pub latency_recorded: bool,
    /// The task that writes the pod's projected volumes.
    pub volumes: Option<projected::VolumeTask>,
}

/// The workers, by pod uid.
#[derive(Default)]
pub struct Engine {
    workers: Mutex<HashMap<String, Worker>>,
}

impl Engine {
    fn workers(&self) -> std::sync::MutexGuard<'_, HashMap<String, Worker>> {
        self.workers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Make the node follow one change of the sources.
    pub fn apply(agent: &Arc<Agent>, update: PodUpdate) {
        match update {
            PodUpdate::Add(pod) => Engine::desire(agent, pod, false),
            PodUpdate::Update(pod) => Engine::desire(agent, pod, true),
            PodUpdate::Remove { uid, grace } => {
                agent.engine.stop(&uid, grace);
            }
        }
    }

    /// A pod the sources want: keep its worker if it runs this very spec
    /// (and `changed` is not set), else stop the old one and start a new
    /// worker after it.
    fn desire(agent: &Arc<Agent>, pod: DesiredPod, changed: bool) {
        let previous = {
            let mut ws = agent.engine.workers();
            match ws.get_mut(&pod.uid) {
                Some(w) if !changed && !w.stopping && w.spec_hash == pod.spec_hash => return,
                Some(w) => {
                    if !w.stopping {
                        let _ = w.tx.send(Msg::Stop { grace: None });
                        w.stopping = true;
                    }
                    Some(w.done.clone())
                }
                None => None,
            }
        };
        let mut pod = pod;
        if previous.is_none() {
            admit(agent, &mut pod);
        }
        let rec = pod.into_record();
        if previous.is_some() {
            tracing::info!("pod {} changed: recreating", rec.key());
        } else {
            tracing::info!("pod {} added from {}", rec.key(), rec.origin());
        }
        start_worker(agent, rec, previous);
    }

    /// Tell the pod's worker to stop (it tears the pod down and finishes),
    /// within `grace` if given. False when the pod has no worker.
    pub fn stop(&self, uid: &str, grace: Option<Duration>) -> bool {
        match self.workers().get_mut(uid) {
            Some(w) => {
                if !w.stopping || grace.is_some() {
                    let _ = w.tx.send(Msg::Stop { grace });
                    w.stopping = true;
                }
                true
            }
            None => false,
        }
    }

    /// Records from a previous run: the pods they describe are handed to
    /// workers that adopt what is still running.
    pub fn adopt(agent: &Arc<Agent>) {
        for rec in super::state::load_all(&agent.cfg.layout()) {
            tracing::info!("adopting pod {} ({})", rec.key(), rec.uid);
            start_worker(agent, rec, None);
        }
    }

    /// The uids with a worker, and their spec hashes.
    pub fn running(&self) -> Vec<(String, String)> {
        self.workers()
            .iter()
            .map(|(u, w)| (u.clone(), w.spec_hash.clone()))
            .collect()
    }

    /// The worker with sender `tx` is done: forget it (unless a new worker
    /// took its place). Returns whether it was still the pod's worker.
    fn finished(&self, uid: &str, tx: &mpsc::UnboundedSender<Msg>) -> bool {
        let mut ws = self.workers();
        if ws.get(uid).is_some_and(|w| w.tx.same_channel(tx)) {
            ws.remove(uid);
            return true;
        }
        false
    }
}

/// Admission of a pod new to the node ([`super::admission`]): a pod whose
/// sysctls are not safe is refused; in node mode, so is a pod from the API
/// server that does not fit. A refused pod fails.
fn admit(agent: &Agent, pod: &mut DesiredPod) {
    let Ok(p) = &pod.pod else {
        return;
    };
    let mut verdict = super::admission::sysctls(p);
    if let (Ok(()), Some(node)) = (&verdict, &agent.node) {
        if pod.source == super::sources::Source::ApiServer {
            let cap =
                super::node::register::Capacity::read(agent, node.config.max_pods).allocatable();
            let alloc = super::admission::Allocatable {
                cpu_milli: cap.cpus * 1000,
                memory: cap.memory,
                pods: cap.pods as u64,
            };
            verdict = super::admission::admit(p, &agent.status.list(), alloc);
        }
    }
    if let Err((reason, message)) = verdict {
        tracing::info!(
            "pod {}/{} rejected: {reason}: {message}",
            pod.namespace,
            pod.name
        );
        pod.pod = Err(message);
        pod.rejected = Some(reason);
    }
}

/// Start a worker for `rec`, after `after` (an older worker of the same
/// uid) has finished.
fn start_worker(agent: &Arc<Agent>, rec: PodRecord, after: Option<watch::Receiver<bool>>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let (done_tx, done) = watch::channel(false);
    let uid = rec.uid.clone();
    agent.engine.workers().insert(
        uid.clone(),
        Worker {
            tx: tx.clone(),
            done,
            spec_hash: rec.spec_hash.clone(),
            stopping: false,
        },
    );
    // A record to insert once the older worker is done. Boxed, so that the
    // task, which lives as long as the pod, holds a pointer rather than the
    // record's own size for all that time.
    let mut later = match after {
        None => {
            agent.status.insert(rec);
            None
        }
        Some(prev) => Some((prev, Box::new(rec))),
    };
    let agent = agent.clone();
    tokio::spawn(async move {
        if let Some((mut prev, rec)) = later.take() {
            let _ = prev.wait_for(|d| *d).await;
            agent.status.save(&rec);
            agent.status.insert(*rec);
        }
        worker::run(agent.clone(), uid.clone(), tx, rx).await;
        let _ = done_tx.send(true);
    });
}

/// The container `name` of the pod's spec.
fn container_spec(rec: &PodRecord, init: bool, name: &str) -> Option<Container> {
    let spec = rec.pod.as_ref()?.spec.as_ref()?;
    let list = if init {
        spec.init_containers.as_deref().unwrap_or(&[])
    } else {
        &spec.containers[..]
    };
    list.iter().find(|c| c.name == name).cloned()
}

/// `spec.restartPolicy`, `Always` when unset.
fn restart_policy(rec: &PodRecord) -> &str {
    rec.pod
        .as_ref()
        .and_then(|p| p.spec.as_ref())
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always")
}

/// The grace period of a stop: what the deletion asked for, else
/// `spec.terminationGracePeriodSeconds`, 30 s when unset.
fn grace_period(rec: &PodRecord) -> Duration {
    if let Some(g) = rec.deletion_grace {
        return Duration::from_secs(g);
    }
    let s = rec
        .pod
        .as_ref()
        .and_then(|p| p.spec.as_ref())
        .and_then(|s| s.termination_grace_period_seconds)
        .unwrap_or(30);
    Duration::from_secs(s.max(0) as u64)
}
