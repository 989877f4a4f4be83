//! Admission on the node: can this node run this pod at all?
//!
//! The scheduler picks a node whose allocatable resources fit a pod's
//! requests, but it works from a picture of the node that may be out of
//! date, and anyone may bind a pod to a node directly (`spec.nodeName`).
//! So kubelet checks again before it runs a pod
//! (pkg/kubelet/lifecycle/predicate.go): a pod whose requests do not fit
//! what is left of the node's allocatable cpu, memory and pod count is
//! rejected. A rejected pod is not retried: it goes to phase `Failed` with
//! the reason `OutOf<resource>` (`OutOfcpu`, `OutOfmemory`, `OutOfpods`)
//! and a message giving the numbers, and its controller makes another.
//!
//! Sysctls are checked too (pkg/kubelet/sysctl): only those known to be
//! namespaced (they change the pod, not the node) and safe (they cannot
//! hurt other pods) are allowed, and none of the network ones for a pod
//! on the host's network. Anything else is `SysctlForbidden`.
//!
//! A pod's request for a resource is the larger of the sum over its app
//! containers and the largest single init container (init containers run
//! one at a time, before the app containers). Pods that ended or are being
//! removed use nothing.

use k8s_openapi::api::core::v1::{Container, Pod};

use super::reasons::PodFailureReason;
use super::state::PodRecord;
use crate::quantity;

/// What a pod asks for: millicores, bytes, and one pod.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Requests {
    /// CPU, in millicores (`500m` is 500).
    pub cpu_milli: u64,
    /// Memory, in bytes.
    pub memory: u64,
}

fn container_requests(c: &Container) -> Requests {
    let get = |k: &str| {
        let r = c.resources.as_ref()?;
        // A limit without a request requests the limit (API defaulting).
        r.requests
            .as_ref()
            .and_then(|m| m.get(k))
            .or_else(|| r.limits.as_ref().and_then(|m| m.get(k)))
            .map(|q| q.0.clone())
    };
    Requests {
        cpu_milli: get("cpu")
            .and_then(|q| quantity::millicores(&q).ok())
            .unwrap_or(0),
        memory: get("memory")
            .and_then(|q| quantity::bytes(&q).ok())
            .unwrap_or(0),
    }
}

/// The pod's effective requests.
pub fn pod_requests(pod: &Pod) -> Requests {
    let Some(spec) = &pod.spec else {
        return Requests::default();
    };
    let mut sum = Requests::default();
    for c in &spec.containers {
        let r = container_requests(c);
        sum.cpu_milli += r.cpu_milli;
        sum.memory += r.memory;
    }
    for c in spec.init_containers.iter().flatten() {
        let r = container_requests(c);
        sum.cpu_milli = sum.cpu_milli.max(r.cpu_milli);
        sum.memory = sum.memory.max(r.memory);
    }
    sum
}

/// The sysctls kubelet 1.20 allows without `--allowed-unsafe-sysctls`.
pub const SAFE_SYSCTLS: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
];

/// Check the pod's sysctls, with kubelet's messages.
pub fn sysctls(pod: &Pod) -> Result<(), (PodFailureReason, String)> {
    let Some(spec) = &pod.spec else {
        return Ok(());
    };
    let host_net = spec.host_network.unwrap_or(false);
    let list = spec
        .security_context
        .as_ref()
        .and_then(|s| s.sysctls.as_ref());
    for s in list.into_iter().flatten() {
        if !SAFE_SYSCTLS.contains(&s.name.as_str()) {
            return Err((
                PodFailureReason::SysctlForbidden,
                format!("forbidden sysctl: {:?} not whitelisted", s.name),
            ));
        }
        if host_net && s.name.starts_with("net.") {
            return Err((
                PodFailureReason::SysctlForbidden,
                format!(
                    "forbidden sysctl: {:?} not allowed with host net enabled",
                    s.name
                ),
            ));
        }
    }
    Ok(())
}

/// What the node can give pods.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Allocatable {
    /// Allocatable CPU, in millicores.
    pub cpu_milli: u64,
    /// Allocatable memory, in bytes.
    pub memory: u64,
    /// Most pods the node runs at once (`--max-pods`).
    pub pods: u64,
}

/// Admit `pod` next to the active pods `others`, or say why not (reason
/// and kubelet's message).
pub fn admit(
    pod: &Pod,
    others: &[PodRecord],
    node: Allocatable,
) -> Result<(), (PodFailureReason, String)> {
    let active: Vec<&Pod> = others
        .iter()
        .filter(|r| !r.finished && !r.terminating && r.invalid.is_none())
        .filter_map(|r| r.pod.as_ref())
        .collect();
    let want = pod_requests(pod);
    let mut used = Requests::default();
    for p in &active {
        let r = pod_requests(p);
        used.cpu_milli += r.cpu_milli;
        used.memory += r.memory;
    }
    let checks = [
        (
            PodFailureReason::OutOfPods,
            "pods",
            1,
            active.len() as u64,
            node.pods,
        ),
        (
            PodFailureReason::OutOfCpu,
            "cpu",
            want.cpu_milli,
            used.cpu_milli,
            node.cpu_milli,
        ),
        (
            PodFailureReason::OutOfMemory,
            "memory",
            want.memory,
            used.memory,
            node.memory,
        ),
    ];
    for (reason, name, requested, used, capacity) in checks {
        if requested > 0 && used + requested > capacity {
            return Err((
                reason,
                format!(
                    "Node didn't have enough resource: {name}, requested: {requested}, used: {used}, capacity: {capacity}"
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::sources::{DesiredPod, Source};

    fn pod(cpu: &str, mem: &str, init_cpu: Option<&str>) -> Pod {
        let mut spec = serde_json::json!({
            "containers": [
                {"name": "a", "image": "x", "resources": {"requests": {"cpu": cpu, "memory": mem}}},
                {"name": "b", "image": "x", "resources": {"limits": {"cpu": cpu}}}
            ]
        });
        if let Some(c) = init_cpu {
            spec["initContainers"] = serde_json::json!([{"name": "i", "image": "x", "resources": {"requests": {"cpu": c}}}]);
        }
        serde_json::from_value(serde_json::json!({"metadata": {"name": "p"}, "spec": spec}))
            .unwrap()
    }

    fn running(p: Pod) -> PodRecord {
        DesiredPod {
            uid: "u".into(),
            namespace: "default".into(),
            name: "p".into(),
            source: Source::ApiServer,
            file: Default::default(),
            pod: Ok(p),
            spec_hash: "h".into(),
            deleting: None,
            rejected: None,
        }
        .into_record()
    }

    const NODE: Allocatable = Allocatable {
        cpu_milli: 2000,
        memory: 1 << 30,
        pods: 3,
    };

    #[test]
    fn only_safe_namespaced_sysctls() {
        let with = |name: &str, host: bool| -> Pod {
            serde_json::from_value(serde_json::json!({"metadata": {"name": "p"}, "spec": {
                "hostNetwork": host,
                "securityContext": {"sysctls": [{"name": name, "value": "1"}]},
                "containers": [{"name": "c"}]}}))
            .unwrap()
        };
        assert!(sysctls(&with("net.ipv4.tcp_syncookies", false)).is_ok());
        let (r, m) = sysctls(&with("kernel.msgmax", false)).unwrap_err();
        assert_eq!(r.as_str(), "SysctlForbidden");
        assert_eq!(m, "forbidden sysctl: \"kernel.msgmax\" not whitelisted");
        assert!(sysctls(&with("net.ipv4.tcp_syncookies", true)).is_err());
        assert!(sysctls(&with("kernel.shm_rmid_forced", true)).is_ok());
    }

    #[test]
    fn requests_sum_app_containers_and_take_the_largest_init() {
        let r = pod_requests(&pod("250m", "64Mi", None));
        assert_eq!(r.cpu_milli, 500, "a limit alone requests the limit");
        assert_eq!(r.memory, 64 << 20);
        assert_eq!(pod_requests(&pod("250m", "0", Some("1"))).cpu_milli, 1000);
    }

    #[test]
    fn pods_that_do_not_fit_are_refused_with_kubelets_words() {
        let others = vec![running(pod("500m", "100Mi", None))];
        assert!(admit(&pod("500m", "100Mi", None), &others, NODE).is_ok());
        let (reason, msg) = admit(&pod("1", "100Mi", None), &others, NODE).unwrap_err();
        assert_eq!(reason.as_str(), "OutOfcpu");
        assert_eq!(
            msg,
            "Node didn't have enough resource: cpu, requested: 2000, used: 1000, capacity: 2000"
        );
        let (reason, _) = admit(&pod("1m", "1Gi", None), &others, NODE).unwrap_err();
        assert_eq!(reason.as_str(), "OutOfmemory");
        let full = vec![
            running(pod("1m", "1", None)),
            running(pod("1m", "1", None)),
            running(pod("1m", "1", None)),
        ];
        let (reason, msg) = admit(&pod("1m", "1", None), &full, NODE).unwrap_err();
        assert_eq!(reason.as_str(), "OutOfpods");
        assert!(msg.contains("pods, requested: 1, used: 3, capacity: 3"));
        // A pod that ended uses nothing.
        let mut done = full.clone();
        done[0].finished = true;
        assert!(admit(&pod("1m", "1", None), &done, NODE).is_ok());
    }
}
