//! The Node object: registration, then its status kept true
//! (kubelet's pkg/kubelet/kubelet_node_status.go).
//!
//! Registration creates the Node named after this agent, with the labels
//! every node carries (`kubernetes.io/hostname`, `kubernetes.io/os`,
//! `kubernetes.io/arch`), those of `--node-labels`, and the taints of
//! `--register-with-taints`. A Node of that name already there (this node
//! before a restart) is adopted.
//!
//! The status is computed every 10 s and sent through the `nodes/status`
//! subresource when it changed, and at least every 5 minutes: kubelet's
//! `nodeStatusReportFrequency` since heartbeats moved to the Lease. It
//! says what the node has (capacity, and allocatable: capacity less the
//! hard eviction thresholds), where it is (InternalIP, Hostname, the
//! kubelet port), what it is (kernel, OS image, runtime and kubelet
//! versions, machine and boot ids), which images it holds, and four
//! conditions with kubelet's reasons and messages.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{
    ContainerImage, DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints,
    NodeSpec, NodeStatus, NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Patch, PatchParams, PostParams};
use kube::Api;

use super::{Backoff, NodeHandle};
use crate::agent::Agent;

/// The kubelet version the node reports (the API it was written against).
pub const KUBELET_VERSION: &str = concat!("v1.20.2-skiff-", env!("CARGO_PKG_VERSION"));

/// kubelet's default hard eviction thresholds, taken off capacity for
/// allocatable: `memory.available<100Mi`, `nodefs.available<10%`.
const EVICTION_MEMORY: u64 = 100 << 20;

/// At most this many images are reported (kubelet's `nodeStatusMaxImages`).
const MAX_IMAGES: usize = 50;

/// What the machine has, read from the kernel.
#[derive(Debug, Clone, PartialEq)]
pub struct Capacity {
    /// CPUs online.
    pub cpus: u64,
    /// Memory, in bytes (`MemTotal`).
    pub memory: u64,
    /// The size of the data directory's file system, in bytes.
    pub ephemeral_storage: u64,
    /// Most pods the node runs (`--max-pods`).
    pub pods: u32,
}

impl Capacity {
    /// CPUs online, `MemTotal`, and the size of the data directory's file
    /// system.
    pub fn read(agent: &Agent, max_pods: u32) -> Capacity {
        // SAFETY: sysconf reads a value and has no memory effects.
        let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as u64;
        let memory = meminfo("MemTotal").unwrap_or(0);
        let ephemeral_storage = nix::sys::statvfs::statvfs(&agent.cfg.data_dir)
            .map(|s| s.blocks() * s.fragment_size())
            .unwrap_or(0);
        Capacity {
            cpus,
            memory,
            ephemeral_storage,
            pods: max_pods,
        }
    }

    /// Allocatable: capacity less the hard eviction thresholds.
    pub fn allocatable(&self) -> Capacity {
        Capacity {
            memory: self.memory.saturating_sub(EVICTION_MEMORY),
            ephemeral_storage: self.ephemeral_storage - self.ephemeral_storage / 10,
            ..self.clone()
        }
    }

    fn quantities(&self) -> BTreeMap<String, Quantity> {
        BTreeMap::from([
            ("cpu".to_string(), Quantity(self.cpus.to_string())),
            (
                "memory".to_string(),
                Quantity(format!("{}Ki", self.memory >> 10)),
            ),
            (
                "ephemeral-storage".to_string(),
                Quantity(format!("{}Ki", self.ephemeral_storage >> 10)),
            ),
            ("pods".to_string(), Quantity(self.pods.to_string())),
            ("hugepages-2Mi".to_string(), Quantity("0".into())),
            ("hugepages-1Gi".to_string(), Quantity("0".into())),
        ])
    }
}

/// A `/proc/meminfo` value, in bytes.
pub fn meminfo(key: &str) -> Option<u64> {
    std::fs::read_to_string("/proc/meminfo")
        .ok()?
        .lines()
        .find_map(|l| {
            let rest = l.strip_prefix(key)?.strip_prefix(':')?;
            rest.split_whitespace().next()?.parse::<u64>().ok()
        })
        .map(|kib| kib * 1024)
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// `PRETTY_NAME` of /etc/os-release.
fn os_image() -> String {
    std::fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".into())
}

fn system_info() -> NodeSystemInfo {
    let uname = nix::sys::utsname::uname().ok();
    NodeSystemInfo {
        machine_id: read_trimmed("/etc/machine-id"),
        system_uuid: read_trimmed("/sys/class/dmi/id/product_uuid"),
        boot_id: read_trimmed("/proc/sys/kernel/random/boot_id"),
        kernel_version: uname
            .as_ref()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default(),
        os_image: os_image(),
        container_runtime_version: format!("skiff://{}", env!("CARGO_PKG_VERSION")),
        kubelet_version: KUBELET_VERSION.into(),
        kube_proxy_version: KUBELET_VERSION.into(),
        operating_system: "linux".into(),
        architecture: "amd64".into(),
        ..Default::default()
    }
}

/// One condition: its type, whether it holds, kubelet's reason and message.
type Cond = (&'static str, bool, &'static str, &'static str);

/// The four conditions, as kubelet words them.
fn conditions(agent: &Agent) -> Vec<Cond> {
    let memory_pressure = meminfo("MemAvailable").is_some_and(|a| a < EVICTION_MEMORY);
    let disk_pressure = nix::sys::statvfs::statvfs(&agent.cfg.data_dir)
        .is_ok_and(|s| s.blocks() > 0 && s.blocks_available() * 10 < s.blocks());
    let ready = agent.cni.is_ok();
    vec![
        if memory_pressure {
            (
                "MemoryPressure",
                true,
                "KubeletHasInsufficientMemory",
                "kubelet has insufficient memory available",
            )
        } else {
            (
                "MemoryPressure",
                false,
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            )
        },
        if disk_pressure {
            (
                "DiskPressure",
                true,
                "KubeletHasDiskPressure",
                "kubelet has disk pressure",
            )
        } else {
            (
                "DiskPressure",
                false,
                "KubeletHasNoDiskPressure",
                "kubelet has no disk pressure",
            )
        },
        (
            "PIDPressure",
            false,
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available",
        ),
        if ready {
            (
                "Ready",
                true,
                "KubeletReady",
                "kubelet is posting ready status",
            )
        } else {
            ("Ready", false, "KubeletNotReady", "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:network plugin is not ready: cni config uninitialized")
        },
    ]
}

/// The images in the store, largest first, at most [`MAX_IMAGES`].
fn images(agent: &Agent) -> Vec<ContainerImage> {
    let mut list: Vec<ContainerImage> = agent
        .store
        .images()
        .unwrap_or_default()
        .into_iter()
        .map(|r| {
            let repo = r.name.rsplit_once(':').map_or(r.name.as_str(), |(n, _)| n);
            ContainerImage {
                names: Some(vec![format!("{repo}@{}", r.manifest), r.name.clone()]),
                size_bytes: Some(r.size as i64),
            }
        })
        .collect();
    list.sort_by_key(|i| std::cmp::Reverse(i.size_bytes));
    list.truncate(MAX_IMAGES);
    list
}

/// Everything of the status but the condition times.
#[derive(Debug, Clone, PartialEq)]
struct Facts {
    capacity: Capacity,
    conditions: Vec<Cond>,
    images: Vec<ContainerImage>,
    info: NodeSystemInfo,
}

fn facts(agent: &Agent, node: &NodeHandle) -> Facts {
    Facts {
        capacity: Capacity::read(agent, node.config.max_pods),
        conditions: conditions(agent),
        images: images(agent),
        info: system_info(),
    }
}

/// The status to send: the facts, with heartbeat and transition times.
fn status(
    agent: &Agent,
    node: &NodeHandle,
    f: &Facts,
    transitions: &BTreeMap<&'static str, (bool, jiff::Timestamp)>,
) -> NodeStatus {
    let now = jiff::Timestamp::now();
    NodeStatus {
        capacity: Some(f.capacity.quantities()),
        allocatable: Some(f.capacity.allocatable().quantities()),
        conditions: Some(
            f.conditions
                .iter()
                .map(|(kind, holds, reason, message)| NodeCondition {
                    type_: kind.to_string(),
                    status: if *holds { "True" } else { "False" }.into(),
                    reason: Some(reason.to_string()),
                    message: Some(message.to_string()),
                    last_heartbeat_time: Some(Time(now)),
                    last_transition_time: Some(Time(
                        transitions.get(kind).map_or(now, |(_, t)| *t),
                    )),
                })
                .collect(),
        ),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: agent.host_ip.clone(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: agent.cfg.node_name.clone(),
            },
        ]),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint {
                port: node.config.kubelet_port as i32,
            }),
        }),
        node_info: Some(f.info.clone()),
        images: Some(f.images.clone()),
        ..Default::default()
    }
}

/// The Node as registration creates it.
fn new_node(agent: &Agent, node: &NodeHandle) -> Node {
    let name = agent.cfg.node_name.clone();
    let mut labels = BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), name.clone()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        ("kubernetes.io/arch".to_string(), "amd64".to_string()),
        ("beta.kubernetes.io/os".to_string(), "linux".to_string()),
        ("beta.kubernetes.io/arch".to_string(), "amd64".to_string()),
    ]);
    labels.extend(node.config.labels.clone());
    Node {
        metadata: ObjectMeta {
            name: Some(name),
            labels: Some(labels),
            annotations: Some(BTreeMap::from([(
                "volumes.kubernetes.io/controller-managed-attach-detach".to_string(),
                "true".to_string(),
            )])),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            taints: (!node.config.taints.is_empty()).then(|| node.config.taints.clone()),
            ..Default::default()
        }),
        status: None,
    }
}

/// Create the Node, or adopt the one of our name; retried until the API
/// server answers. Returns the Node's uid.
async fn register(agent: &Agent, node: &NodeHandle) -> String {
    let nodes: Api<Node> = Api::all(node.client.clone());
    let want = new_node(agent, node);
    let name = agent.cfg.node_name.clone();
    let mut backoff = Backoff::default();
    loop {
        let created = match nodes.create(&PostParams::default(), &want).await {
            Ok(n) => {
                tracing::info!("registered node {name}");
                Ok(n)
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {
                // Ours from before: our labels over what it has.
                let patch = serde_json::json!({"metadata": {"labels": want.metadata.labels}});
                let r = nodes
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await;
                if r.is_ok() {
                    tracing::info!("adopted node {name}");
                }
                r
            }
            Err(e) => Err(e),
        };
        match created {
            Ok(n) => return n.metadata.uid.unwrap_or_default(),
            Err(e) => {
                tracing::warn!("register node {name}: {e}");
                backoff.wait().await;
            }
        }
    }
}

/// Register, then keep the status true for as long as the agent runs.
pub async fn run(agent: Arc<Agent>) {
    let Some(node) = agent.node.as_ref() else {
        return;
    };
    let uid = register(&agent, node).await;
    let _ = node.shared.node_uid.set(uid);
    let mut nodes: Api<Node> = Api::all(node.client.clone());
    let name = agent.cfg.node_name.clone();
    let mut last: Option<(Facts, Instant)> = None;
    let mut transitions: BTreeMap<&'static str, (bool, jiff::Timestamp)> = BTreeMap::new();
    let mut backoff = Backoff::default();
    loop {
        let f = facts(&agent, node);
        let now = jiff::Timestamp::now();
        for (kind, holds, _, _) in &f.conditions {
            let t = transitions.entry(kind).or_insert((*holds, now));
            if t.0 != *holds {
                *t = (*holds, now);
            }
        }
        let due = last
            .as_ref()
            .is_none_or(|(prev, at)| *prev != f || at.elapsed() >= Duration::from_secs(300));
        if due {
            let st = status(&agent, node, &f, &transitions);
            let patch = serde_json::json!({ "status": st });
            // Bounded as the lease's renewal is (see `lease`).
            let (params, patch) = (PatchParams::default(), Patch::Merge(&patch));
            let update = nodes.patch_status(&name, &params, &patch);
            match tokio::time::timeout(super::HEARTBEAT_TIMEOUT, update).await {
                Ok(Ok(_)) => {
                    last = Some((f, Instant::now()));
                    backoff.reset();
                }
                Ok(Err(e)) => {
                    tracing::warn!("update node {name} status: {e}");
                    backoff.wait().await;
                    continue;
                }
                Err(_) => {
                    tracing::warn!(
                        "update node {name} status: no answer within {:?}; retrying on new connections",
                        super::HEARTBEAT_TIMEOUT
                    );
                    // As the lease does (see `NodeHandle::fresh_client`).
                    if let Some(c) = node.fresh_client().await {
                        nodes = Api::all(c);
                    }
                    backoff.wait().await;
                    continue;
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocatable_is_capacity_less_eviction_thresholds() {
        let c = Capacity {
            cpus: 2,
            memory: 1 << 30,
            ephemeral_storage: 1000 << 20,
            pods: 110,
        };
        let a = c.allocatable();
        assert_eq!(a.memory, (1 << 30) - (100 << 20));
        assert_eq!(a.ephemeral_storage, 900 << 20);
        assert_eq!((a.cpus, a.pods), (2, 110));
        let q = a.quantities();
        assert_eq!(q["memory"].0, format!("{}Ki", a.memory >> 10));
        assert_eq!(q["pods"].0, "110");
        assert_eq!(q["cpu"].0, "2");
    }

    #[test]
    fn machine_facts_are_read() {
        assert!(meminfo("MemTotal").unwrap() > 0);
        assert!(!os_image().is_empty());
        let info = system_info();
        assert!(!info.kernel_version.is_empty());
        assert!(info.container_runtime_version.starts_with("skiff://"));
        assert_eq!(info.boot_id.len(), 36);
    }
}
