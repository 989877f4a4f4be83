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
//!   pods/<uid>/sandbox/             the pause container's bundle, pid file
//!                                   and runtime log (it has no monitor)
//!   pods/<uid>/containers/<id>/     a container instance's monitor
//!   pods/<uid>/etc/                 the pod's hosts and hostname files
//!   netns/<uid>                     the pinned network namespace
//!   runtime/                        `skiff --root`
//! <data-dir>/                       disk (/var/lib/skiff)
//!   pause                           the pause program (`crate::pause`)
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
    /// The state directory (`--state-dir`, a tmpfs): records, network
    /// namespace pins, monitors, the runtime's root.
    pub state_dir: PathBuf,
    /// The data directory (`--data-dir`, on disk): bundles, volumes, logs.
    pub data_dir: PathBuf,
}

impl Layout {
    /// `pods/<uid>` in the state directory: the pod's `pod.json`, and its
    /// instances' monitors.
    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.state_dir.join("pods").join(uid)
    }
    /// The pause container's bundle, `pods/<uid>/sandbox`, with its pid
    /// file and the runtime's log (`monitor/` inside, for a pause an older
    /// agent started under a monitor).
    pub fn sandbox_dir(&self, uid: &str) -> PathBuf {
        self.pod_dir(uid).join("sandbox")
    }
    /// The monitor directory of container instance `id` (`state.json`,
    /// `exit.json`, the FIFOs).
    pub fn monitor_dir(&self, uid: &str, id: &str) -> PathBuf {
        self.pod_dir(uid).join("containers").join(id)
    }
    /// The pod's hosts, hostname and resolv.conf, shared by its containers.
    pub fn etc_dir(&self, uid: &str) -> PathBuf {
        self.pod_dir(uid).join("etc")
    }
    /// Where the pod's network namespace is pinned: `netns/<uid>` in the state
    /// directory.
    pub fn netns(&self, uid: &str) -> PathBuf {
        self.state_dir.join("netns").join(uid)
    }
    /// `skiff --root`: the runtime's state of every container.
    pub fn runtime_root(&self) -> PathBuf {
        self.state_dir.join("runtime")
    }
    /// Everything of the pod's under the data directory.
    pub fn pod_data(&self, uid: &str) -> PathBuf {
        self.data_dir.join("pods").join(uid)
    }
    /// The bundle of container instance `id` (`config.json`, the rootfs
    /// overlay), on disk.
    pub fn bundle_dir(&self, uid: &str, id: &str) -> PathBuf {
        self.pod_data(uid).join("containers").join(id)
    }
    /// The pod's emptyDir volumes, one directory each, on disk.
    pub fn volumes_dir(&self, uid: &str) -> PathBuf {
        self.pod_data(uid).join("volumes")
    }
    /// `pod-logs` in the data directory: Skiff's `/var/log/pods`.
    pub fn log_root(&self) -> PathBuf {
        self.data_dir.join("pod-logs")
    }
    /// kubelet's `/var/log/pods/<ns>_<name>_<uid>`.
    pub fn pod_logs(&self, rec: &PodRecord) -> PathBuf {
        self.log_root()
            .join(format!("{}_{}_{}", rec.namespace, rec.name, rec.uid))
    }
    /// The CRI log of attempt `restart` of `container`:
    /// `<container>/<restart>.log` in the pod's log directory.
    pub fn log_file(&self, rec: &PodRecord, container: &str, restart: u32) -> PathBuf {
        self.pod_logs(rec)
            .join(container)
            .join(format!("{restart}.log"))
    }
}

/// Everything the agent knows of one pod, saved as `pod.json` (see the
/// module docs); its `v1` status is computed from it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PodRecord {
    /// The pod's uid (`metadata.uid`; derived from file and name for a static
    /// pod).
    pub uid: String,
    /// The pod's namespace.
    pub namespace: String,
    /// The pod's name.
    pub name: String,
    /// The source that wants the pod.
    #[serde(default)]
    pub source: Source,
    /// Its manifest file, for a static pod.
    #[serde(default)]
    pub file: PathBuf,
    /// A hash of the pod's spec, 16 hex digits (`manifest::spec_hash`): a
    /// change makes a new pod. Shown as the `kubernetes.io/config.hash`
    /// annotation.
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
    /// When the agent first saw the pod (shown as its `creationTimestamp`).
    pub created_at: Timestamp,
    /// When its sandbox first became ready (`status.startTime`).
    #[serde(default)]
    pub start_time: Option<Timestamp>,
    /// The pod's sandbox, from the moment its making begins until it is taken
    /// down (or its making failed).
    #[serde(default)]
    pub sandbox: Option<Sandbox>,
    /// The pod's IP (`status.podIP`): the first IPv4 address of the CNI
    /// result, or the node's for a hostNetwork pod.
    #[serde(default)]
    pub pod_ip: Option<String>,
    /// The pod's conditions by type (`Initialized`,
    /// `PodReadyToStartContainers`), kept for their transition times: the
    /// status computes each value afresh, and takes the time from here when
    /// the value agrees.
    #[serde(default)]
    pub conditions: BTreeMap<String, Condition>,
    /// The init containers' records, in spec order.
    #[serde(default)]
    pub init: Vec<ContainerRecord>,
    /// The app containers' records, in spec order.
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
    /// kubelet's reason (`DeadlineExceeded`...).
    pub reason: PodFailureReason,
    /// kubelet's message, in a sentence.
    pub message: String,
}

/// A pod sandbox (CRI's `PodSandbox`): the pinned network namespace, its
/// CNI attachment, and the pause container that holds the namespaces.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sandbox {
    /// The pause container's id (`k8s_POD_...`, see
    /// `engine::sandbox::sandbox_id`).
    pub id: String,
    /// The pause container's bundle directory (`Layout::sandbox_dir`).
    pub dir: PathBuf,
    /// Pinned network namespace (none for hostNetwork pods).
    pub netns: Option<PathBuf>,
    /// The pause process's pid, on the host; 0 until it runs.
    pub pid: i32,
    /// The pid of the pause container's monitor, for a sandbox an older
    /// agent made; 0 since the pause runs without one.
    pub monitor_pid: i32,
    /// The CNI `ADD` result (interfaces, `ips`, routes), kept for `CHECK` and
    /// `DEL`.
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

/// One pod condition as last set (a `v1` `PodCondition`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Condition {
    /// Whether the condition holds (`True` or `False` in the API).
    pub status: bool,
    /// When `status` last changed (`lastTransitionTime`).
    pub last_transition: Timestamp,
    /// A CamelCase word for why.
    #[serde(default)]
    pub reason: Option<String>,
    /// Why, in a sentence.
    #[serde(default)]
    pub message: Option<String>,
}

/// A container's state, kubelet's `ContainerState`: waiting, running or
/// terminated.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum CState {
    /// Not running: not started yet, or held back.
    Waiting {
        /// Why (`ContainerCreating`, `CrashLoopBackOff`...).
        reason: WaitingReason,
        /// The details, such as a pull's error.
        #[serde(default)]
        message: Option<String>,
    },
    /// The current instance runs.
    Running {
        /// When it started.
        started_at: Timestamp,
    },
    /// The last instance ended, and none runs now.
    Terminated(Terminated),
}

/// How an instance ended (a `v1` `ContainerStateTerminated`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Terminated {
    /// Its exit status: 128 + the signal's number when a signal killed it,
    /// 128 when it could not start, 255 when the status was lost.
    pub exit_code: i32,
    /// The signal that killed it, if one did.
    #[serde(default)]
    pub signal: Option<i32>,
    /// `Completed`, `Error`, `OOMKilled` or `StartError`.
    pub reason: TerminatedReason,
    /// The termination message (the file at `terminationMessagePath`, or the
    /// log's tail with `FallbackToLogsOnError`), or the runtime's error.
    #[serde(default)]
    pub message: Option<String>,
    /// When it started; `None` if it never did.
    #[serde(default)]
    pub started_at: Option<Timestamp>,
    /// When it ended.
    pub finished_at: Timestamp,
    /// The instance's id, as `skiff://<id>` (`containerID`).
    #[serde(default)]
    pub container_id: Option<String>,
}

/// One running (or just exited) instance of a container.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Instance {
    /// The container's id in the runtime (`k8s_<container>_<pod>_...`).
    pub id: String,
    /// Its bundle directory, on disk.
    pub bundle: PathBuf,
    /// The monitor's directory (state.json, exit.json).
    pub dir: PathBuf,
    /// Its CRI log file.
    pub log: PathBuf,
    /// The container's init pid, on the host.
    pub pid: i32,
    /// The pid of its monitor.
    pub monitor_pid: i32,
    /// When it started, as its monitor reported.
    pub started_at: Timestamp,
}

/// Everything the agent knows of one container of a pod, across its
/// restarts: its `v1` `ContainerStatus` is computed from it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// The container's name in the spec.
    pub name: String,
    /// The image, as the spec names it.
    pub image: String,
    /// The image the last attempt ran, as `registry/repository@digest`
    /// (`imageID`).
    #[serde(default)]
    pub image_id: Option<String>,
    /// Restarts so far (kubelet's `restartCount`).
    pub restart_count: u32,
    /// The current state.
    pub state: CState,
    /// The latest termination.
    #[serde(default)]
    pub last_state: Option<Terminated>,
    /// The one before it (kubelet's lastState while the state is
    /// terminated).
    #[serde(default)]
    pub previous: Option<Terminated>,
    /// The instance running now (or just exited, its exit not yet handled).
    #[serde(default)]
    pub current: Option<Instance>,
    /// The readiness probe's last result; not used when there is no readiness
    /// probe.
    #[serde(default)]
    pub ready: bool,
    /// The instance counts as started (`started`): at once without a startup
    /// probe, else once that passes.
    #[serde(default)]
    pub started: bool,
    /// The CrashLoopBackOff entry: how long restarts are held back.
    #[serde(default)]
    pub backoff: Backoff,
    /// The ImagePullBackOff entry: how long pulls are held back after
    /// failures.
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
    /// The container id the attempt uses.
    pub id: String,
    /// The attempt's number (the restart count it will have).
    pub restart: u32,
    /// The image it runs (`registry/repository@digest`).
    pub image_id: String,
    /// Its bundle directory, on disk.
    pub bundle: PathBuf,
    /// Its monitor's directory.
    pub monitor_dir: PathBuf,
    /// Its CRI log file.
    pub log: PathBuf,
}

impl ContainerRecord {
    /// A container not started yet, waiting with `reason`.
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

    /// Whether its state is running.
    pub fn running(&self) -> bool {
        matches!(self.state, CState::Running { .. })
    }

    /// How it ended, when its state is terminated.
    pub fn terminated(&self) -> Option<&Terminated> {
        match &self.state {
            CState::Terminated(t) => Some(t),
            _ => None,
        }
    }
}

impl CState {
    /// Waiting for `reason`, with an optional message.
    pub fn waiting(reason: WaitingReason, message: Option<String>) -> CState {
        CState::Waiting { reason, message }
    }
}

impl PodRecord {
    /// `namespace/name`, for messages and lookups.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Why the pod is refused (`status.reason`), when it is.
    pub fn failure_reason(&self) -> PodFailureReason {
        match (self.rejected, &self.source) {
            (Some(r), _) => r,
            (None, Source::File) => PodFailureReason::InvalidManifest,
            (None, Source::ApiServer) => PodFailureReason::UnsupportedField,
        }
    }

    /// Where the pod came from, for messages.
    pub fn origin(&self) -> String {
        match self.source {
            Source::File => self.file.display().to_string(),
            Source::ApiServer => "the API server".to_string(),
        }
    }

    /// The record of init container (`init`) or app container `name`, to
    /// change.
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

    /// Write `pod.json` into the pod's directory (made if needed),
    /// atomically.
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
