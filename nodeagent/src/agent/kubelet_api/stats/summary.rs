//! The Summary API's types (`k8s.io/kubelet/pkg/apis/stats/v1alpha1`),
//! serialized with kubelet's JSON names: what `/stats/summary` answers and
//! metrics-server reads.

use jiff::Timestamp;
use serde::Serialize;

/// CPU usage.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CpuStats {
    /// When it was read.
    pub time: Timestamp,
    /// Cores in use, in billionths, over the last interval.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_nano_cores: Option<u64>,
    /// CPU time used so far, in nanoseconds.
    pub usage_core_nano_seconds: u64,
}

/// Memory usage.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemoryStats {
    /// When it was read.
    pub time: Timestamp,
    /// Bytes left before the limit (or the node's memory).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available_bytes: Option<u64>,
    /// All memory in use, page cache included.
    pub usage_bytes: u64,
    /// Usage minus inactive file pages.
    pub working_set_bytes: u64,
    /// Anonymous memory and swap cache.
    pub rss_bytes: u64,
    /// Page faults.
    pub page_faults: u64,
    /// Major page faults.
    pub major_page_faults: u64,
}

/// A file system's usage.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FsStats {
    /// When it was read.
    pub time: Timestamp,
    /// Bytes free for unprivileged users.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available_bytes: Option<u64>,
    /// Its size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity_bytes: Option<u64>,
    /// Bytes used (by the whole file system, or by what the entry is
    /// about: a container's logs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub used_bytes: Option<u64>,
    /// Inodes free.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inodes_free: Option<u64>,
    /// Inodes in all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inodes: Option<u64>,
    /// Inodes used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inodes_used: Option<u64>,
}

/// One network interface's counters.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InterfaceStats {
    /// The interface.
    pub name: String,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Receive errors.
    pub rx_errors: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Send errors.
    pub tx_errors: u64,
}

/// A network namespace's counters: the default interface's, and all.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NetworkStats {
    /// When it was read.
    pub time: Timestamp,
    /// The default interface (`eth0`).
    #[serde(flatten)]
    pub default: InterfaceStats,
    /// Every interface but loopback.
    pub interfaces: Vec<InterfaceStats>,
}

/// Process limits of the node.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RlimitStats {
    /// When it was read.
    pub time: Timestamp,
    /// The highest pid.
    pub maxpid: u64,
    /// Processes (threads) now.
    pub curproc: u64,
}

/// The node.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStats {
    /// Its name.
    pub node_name: String,
    /// When it booted.
    pub start_time: Timestamp,
    /// CPU.
    pub cpu: CpuStats,
    /// Memory.
    pub memory: MemoryStats,
    /// Network.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkStats>,
    /// The file system of the agent's data.
    pub fs: FsStats,
    /// The images' file system.
    pub runtime: RuntimeStats,
    /// Process limits.
    pub rlimit: RlimitStats,
}

/// The runtime's file systems.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeStats {
    /// Where images and container layers live.
    pub image_fs: FsStats,
}

/// A pod's reference.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PodRef {
    /// Name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Uid.
    pub uid: String,
}

/// A container.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStats {
    /// Its name in the pod.
    pub name: String,
    /// When the running instance started.
    pub start_time: Timestamp,
    /// CPU.
    pub cpu: CpuStats,
    /// Memory.
    pub memory: MemoryStats,
    /// Its writable layer's file system.
    pub rootfs: FsStats,
    /// Its log files.
    pub logs: FsStats,
}

/// Process count.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ProcessStats {
    /// Processes in the pod.
    pub process_count: u64,
}

/// A pod.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodStats {
    /// Which pod.
    pub pod_ref: PodRef,
    /// When the agent started it.
    pub start_time: Timestamp,
    /// Its running containers.
    pub containers: Vec<ContainerStats>,
    /// CPU of all its containers.
    pub cpu: CpuStats,
    /// Memory of all its containers.
    pub memory: MemoryStats,
    /// Its network namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkStats>,
    /// Processes (kubelet's JSON name is snake case here).
    #[serde(rename = "process_stats")]
    pub process_stats: ProcessStats,
}

/// The whole answer.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    /// The node.
    pub node: NodeStats,
    /// Its pods.
    pub pods: Vec<PodStats>,
}
