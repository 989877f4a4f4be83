//! What the agent keeps about each pod, in memory and on disk, and where
//! everything it keeps lives ([`Layout`]).
//!
//! Every pod has a record in `<state-dir>/pods/<uid>/pod.json`, rewritten
//! (atomically) whenever it changes: where the pod came from, its sandbox
//! (netns path, pause container, CNI result), and per container the restart
//! count, back-off, current instance (container id, monitor) and last
//! termination. A restarted agent reads these records to adopt what is
//! still running instead of starting it again.
//!
//! ```text
//! <state-dir>/                      tmpfs (/run/skiff/agent): gone at reboot,
//!   pods/<uid>/pod.json             like the processes it describes
//!   pods/<uid>/sandbox/             the pause container's bundle
//!   pods/<uid>/sandbox/monitor/     its monitor's state.json, exit.json
//!   pods/<uid>/containers/<id>/     a container instance's monitor
//!   pods/<uid>/etc/                 the pod's hosts and hostname files
//!   netns/<uid>                     the pinned network namespace
//!   runtime/                        `skiff --root`
//! <data-dir>/                       disk (/var/lib/skiff)
//!   pods/<uid>/containers/<id>/     a container's bundle (rootfs overlay)
//!   pods/<uid>/volumes/<name>/      emptyDir volumes
//!   pod-logs/<ns>_<name>_<uid>/<container>/<restart>.log
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use serde::{Deserialize, Serialize};

use super::reasons::{PodFailureReason, TerminatedReason, WaitingReason};
use super::sources::Source;
use crate::backoff::Backoff;

/// Where the agent keeps things: one place for every path of the layout
/// above.
#[derive(Debug, Clone)]
pub struct Layout {
    pub state_dir: PathBuf,
    pub data_dir: PathBuf,
}

impl Layout {
    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.state_dir.join("pods").join(uid)
    }
    pub fn sandbox_dir(&self, uid: &str) -> PathBuf {
        self.pod_dir(uid).join("sandbox")
    }
    pub fn monitor_dir(&self, uid: &str, id: &str) -> PathBuf {
        self.pod_dir(uid).join("containers").join(id)
    }
    pub fn etc_dir(&self, uid: &str) -> PathBuf {
        self.pod_dir(uid).join("etc")
    }
    pub fn netns(&self, uid: &str) -> PathBuf {
        self.state_dir.join("netns").join(uid)
    }
    pub fn runtime_root(&self) -> PathBuf {
        self.state_dir.join("runtime")
    }
    /// Everything of the pod's under the data directory.
    pub fn pod_data(&self, uid: &str) -> PathBuf {
        self.data_dir.join("pods").join(uid)
    }
    pub fn bundle_dir(&self, uid: &str, id: &str) -> PathBuf {
        self.pod_data(uid).join("containers").join(id)
    }
    pub fn volumes_dir(&self, uid: &str) -> PathBuf {
        self.pod_data(uid).join("volumes")
    }
    pub fn log_root(&self) -> PathBuf {
        self.data_dir.join("pod-logs")
    }
    /// kubelet's `/var/log/pods/<ns>_<name>_<uid>`.
    pub fn pod_logs(&self, rec: &PodRecord) -> PathBuf {
        self.log_root()
            .join(format!("{}_{}_{}", rec.namespace, rec.name, rec.uid))
    }
    pub fn log_file(&self, rec: &PodRecord, container: &str, restart: u32) -> PathBuf {
        self.pod_logs(rec)
            .join(container)
            .join(format!("{restart}.log"))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PodRecord {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    /// The source that wants the pod.
    #[serde(default)]
    pub source: Source,
    /// Its manifest file, for a static pod.
    #[serde(default)]
    pub file: PathBuf,
    pub spec_hash: String,
    /// The validated pod; `None` when the manifest was rejected.
    pub pod: Option<Pod>,
    /// Why the manifest was rejected.
    #[serde(default)]
    pub invalid: Option<String>,
    /// The reason the node gives for refusing it, when not the manifest's
    /// fault (`OutOfcpu`...).
    #[serde(default)]
    pub rejected: Option<PodFailureReason>,
    pub created_at: Timestamp,
    #[serde(default)]
    pub start_time: Option<Timestamp>,
    #[serde(default)]
    pub sandbox: Option<Sandbox>,
    #[serde(default)]
    pub pod_ip: Option<String>,
    #[serde(default)]
    pub conditions: BTreeMap<String, Condition>,
    #[serde(default)]
    pub init: Vec<ContainerRecord>,
    #[serde(default)]
    pub containers: Vec<ContainerRecord>,
    /// The pod is being stopped (manifest removed or changed).
    #[serde(default)]
    pub terminating: bool,
    /// When it was told to stop (its `deletionTimestamp`).
    #[serde(default)]
    pub deleted_at: Option<Timestamp>,
    /// The grace period its deletion asked for (`deletionGracePeriodSeconds`,
    /// `kubectl delete --grace-period`), over the spec's.
    #[serde(default)]
    pub deletion_grace: Option<u64>,
    /// The node failed the pod as a whole (`activeDeadlineSeconds`).
    #[serde(default)]
    pub failure: Option<PodFailure>,
    /// A pod-level failure that keeps it from running (sandbox, network).
    #[serde(default)]
    pub sandbox_error: Option<String>,
    /// Every container is done for good: the pod reached Succeeded or
    /// Failed and its sandbox is gone.
    #[serde(default)]
    pub finished: bool,
    /// Sandboxes made so far (each gets a new id).
    #[serde(default)]
    pub sandbox_count: u32,
}

/// Why the node failed a pod it was running (`status.reason`, `message`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PodFailure {
    pub reason: PodFailureReason,
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sandbox {
    pub id: String,
    pub dir: PathBuf,
    /// Pinned network namespace (none for hostNetwork pods).
    pub netns: Option<PathBuf>,
    pub pid: i32,
    pub monitor_pid: i32,
    #[serde(default)]
    pub cni_result: Option<serde_json::Value>,
    /// Every step of its making is done. A sandbox is recorded before its
    /// first step, so that an agent killed half-way knows what to take
    /// down: an incomplete one is removed, step by step, and made again.
    #[serde(default = "complete_by_default")]
    pub complete: bool,
}

/// Records written before this field existed were of complete sandboxes.
fn complete_by_default() -> bool {
    true
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Condition {
    pub status: bool,
    pub last_transition: Timestamp,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub message: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum CState {
    Waiting {
        reason: WaitingReason,
        #[serde(default)]
        message: Option<String>,
    },
    Running {
        started_at: Timestamp,
    },
    Terminated(Terminated),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Terminated {
    pub exit_code: i32,
    #[serde(default)]
    pub signal: Option<i32>,
    pub reason: TerminatedReason,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub started_at: Option<Timestamp>,
    pub finished_at: Timestamp,
    #[serde(default)]
    pub container_id: Option<String>,
}

/// One running (or just exited) instance of a container.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Instance {
    pub id: String,
    pub bundle: PathBuf,
    /// The monitor's directory (state.json, exit.json).
    pub dir: PathBuf,
    pub log: PathBuf,
    pub pid: i32,
    pub monitor_pid: i32,
    pub started_at: Timestamp,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub name: String,
    pub image: String,
    #[serde(default)]
    pub image_id: Option<String>,
    pub restart_count: u32,
    pub state: CState,
    /// The latest termination.
    #[serde(default)]
    pub last_state: Option<Terminated>,
    /// The one before it (kubelet's lastState while the state is
    /// terminated).
    #[serde(default)]
    pub previous: Option<Terminated>,
    #[serde(default)]
    pub current: Option<Instance>,
    #[serde(default)]
    pub ready: bool,
    #[serde(default)]
    pub started: bool,
    #[serde(default)]
    pub backoff: Backoff,
    #[serde(default)]
    pub image_backoff: Backoff,
    /// Log file of each attempt by restart number (for `logs --previous`).
    #[serde(default)]
    pub logs: BTreeMap<u32, PathBuf>,
    /// A start under way: recorded before its bundle is made, cleared when
    /// it has become `current` or failed. An agent killed in between finds
    /// it on adoption, and adopts the container if it runs, or removes what
    /// the attempt made.
    #[serde(default)]
    pub launching: Option<Launching>,
}

/// A container start under way (see [`ContainerRecord::launching`]).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Launching {
    pub id: String,
    pub restart: u32,
    pub image_id: String,
    pub bundle: PathBuf,
    pub monitor_dir: PathBuf,
    pub log: PathBuf,
}

impl ContainerRecord {
    pub fn new(name: &str, image: &str, reason: WaitingReason) -> ContainerRecord {
        ContainerRecord {
            name: name.to_string(),
            image: image.to_string(),
            image_id: None,
            restart_count: 0,
            state: CState::waiting(reason, None),
            last_state: None,
            previous: None,
            current: None,
            ready: false,
            started: false,
            backoff: Backoff::default(),
            image_backoff: Backoff::default(),
            logs: BTreeMap::new(),
            launching: None,
        }
    }

    pub fn running(&self) -> bool {
        matches!(self.state, CState::Running { .. })
    }

    pub fn terminated(&self) -> Option<&Terminated> {
        match &self.state {
            CState::Terminated(t) => Some(t),
            _ => None,
        }
    }
}

impl CState {
    pub fn waiting(reason: WaitingReason, message: Option<String>) -> CState {
        CState::Waiting { reason, message }
    }
}

impl PodRecord {
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Where the pod came from, for messages.
    /// Why the pod is refused (`status.reason`), when it is.
    pub fn failure_reason(&self) -> PodFailureReason {
        match (self.rejected, &self.source) {
            (Some(r), _) => r,
            (None, Source::File) => PodFailureReason::InvalidManifest,
            (None, Source::ApiServer) => PodFailureReason::UnsupportedField,
        }
    }

    pub fn origin(&self) -> String {
        match self.source {
            Source::File => self.file.display().to_string(),
            Source::ApiServer => "the API server".to_string(),
        }
    }

    pub fn container_mut(&mut self, init: bool, name: &str) -> Option<&mut ContainerRecord> {
        let list = if init {
            &mut self.init
        } else {
            &mut self.containers
        };
        list.iter_mut().find(|c| c.name == name)
    }

    /// Set a condition, moving its transition time only when it flips.
    pub fn set_condition(&mut self, kind: &str, status: bool, reason: Option<&str>) {
        let now = Timestamp::now();
        let c = self
            .conditions
            .entry(kind.to_string())
            .or_insert(Condition {
                status: !status,
                last_transition: now,
                reason: None,
                message: None,
            });
        if c.status != status {
            c.status = status;
            c.last_transition = now;
        }
        c.reason = reason.map(str::to_string);
    }

    pub fn save(&self, layout: &Layout) -> std::io::Result<()> {
        let dir = layout.pod_dir(&self.uid);
        std::fs::create_dir_all(&dir)?;
        crate::monitor::write_json(&dir, "pod.json", self)
    }
}

/// Every record saved in the state directory.
pub fn load_all(layout: &Layout) -> Vec<PodRecord> {
    let Ok(rd) = std::fs::read_dir(layout.state_dir.join("pods")) else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok())
        .filter_map(|e| crate::monitor::read_json(&e.path().join("pod.json")))
        .collect()
}
