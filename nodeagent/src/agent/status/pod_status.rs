//! Pod status as the Kubernetes API shows it, and `kubectl get pods`' STATUS.
//!
//! kubelet derives a pod's `phase` from its containers (Pending until every
//! init container has succeeded and every app container has started;
//! Running while any runs or will be restarted; Succeeded or Failed when
//! all have terminated for good), its conditions (`PodScheduled`,
//! `PodReadyToStartContainers`, `Initialized`, `ContainersReady`, `Ready`,
//! each with the time it last changed), and one `ContainerStatus` per
//! container with its state (waiting, running or terminated, with reason),
//! last state, restart count, readiness and ids. See "Pod Lifecycle" in the
//! Kubernetes docs.

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use super::super::sources::Source;
use super::super::state::{CState, ContainerRecord, PodRecord, Terminated};

/// The phase kubelet would report.
pub fn phase(r: &PodRecord) -> &'static str {
    if r.invalid.is_some() || (r.failure.is_some() && r.finished) {
        return "Failed";
    }
    let init_failed = r
        .init
        .iter()
        .any(|c| c.last_state.as_ref().is_some_and(|t| t.exit_code != 0) && c.current.is_none());
    if r.finished {
        let all_ok = !init_failed
            && r.containers
                .iter()
                .all(|c| c.last_state.as_ref().is_some_and(|t| t.exit_code == 0));
        return if all_ok { "Succeeded" } else { "Failed" };
    }
    let init_done = r
        .init
        .iter()
        .all(|c| c.last_state.as_ref().is_some_and(|t| t.exit_code == 0) && c.current.is_none());
    if !init_done {
        return "Pending";
    }
    if r.containers
        .iter()
        .any(|c| c.current.is_none() && c.last_state.is_none())
    {
        return "Pending";
    }
    "Running"
}

fn ready(r: &PodRecord, c: &ContainerRecord) -> bool {
    let has_readiness = r
        .pod
        .as_ref()
        .and_then(|p| p.spec.as_ref())
        .and_then(|s| s.containers.iter().find(|x| x.name == c.name))
        .is_some_and(|x| x.readiness_probe.is_some());
    c.running() && c.started && (!has_readiness || c.ready)
}

fn terminated(t: &Terminated) -> ContainerStateTerminated {
    ContainerStateTerminated {
        exit_code: t.exit_code,
        signal: t.signal,
        reason: Some(t.reason.to_string()),
        message: t.message.clone(),
        started_at: t.started_at.map(Time),
        finished_at: Some(Time(t.finished_at)),
        container_id: t.container_id.clone(),
    }
}

fn container_status(r: &PodRecord, c: &ContainerRecord, init: bool) -> ContainerStatus {
    let state = match &c.state {
        CState::Waiting { reason, message } => ContainerState {
            waiting: Some(ContainerStateWaiting {
                reason: Some(reason.to_string()),
                message: message.clone(),
            }),
            ..Default::default()
        },
        CState::Running { started_at } => ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(Time(*started_at)),
            }),
            ..Default::default()
        },
        CState::Terminated(t) => ContainerState {
            terminated: Some(terminated(t)),
            ..Default::default()
        },
    };
    // lastState is the termination before the current state.
    let last = match (&c.state, &c.last_state) {
        (CState::Terminated(_), _) => c.previous.as_ref().map(|t| ContainerState {
            terminated: Some(terminated(t)),
            ..Default::default()
        }),
        (_, Some(t)) => Some(ContainerState {
            terminated: Some(terminated(t)),
            ..Default::default()
        }),
        _ => None,
    };
    let ready = if init {
        c.terminated().is_some_and(|t| t.exit_code == 0)
    } else {
        ready(r, c)
    };
    ContainerStatus {
        name: c.name.clone(),
        image: c.image.clone(),
        image_id: c.image_id.clone().unwrap_or_default(),
        container_id: c
            .current
            .as_ref()
            .map(|i| format!("skiff://{}", i.id))
            .or_else(|| c.terminated().and_then(|t| t.container_id.clone())),
        ready,
        restart_count: c.restart_count as i32,
        started: Some(c.running() && c.started),
        state: Some(state),
        last_state: Some(last.unwrap_or_default()),
        ..Default::default()
    }
}

fn condition(
    r: &PodRecord,
    kind: &str,
    status: bool,
    reason: Option<String>,
    message: Option<String>,
) -> PodCondition {
    let t = r
        .conditions
        .get(kind)
        .filter(|c| c.status == status)
        .map(|c| c.last_transition)
        .unwrap_or(r.created_at);
    PodCondition {
        type_: kind.to_string(),
        status: if status { "True" } else { "False" }.into(),
        last_transition_time: Some(Time(t)),
        reason,
        message,
        ..Default::default()
    }
}

/// The full `v1` Pod, status included.
pub fn pod(r: &PodRecord, node: &str, host_ip: &str) -> Pod {
    let mut p = r.pod.clone().unwrap_or_default();
    let meta = ObjectMeta {
        name: Some(r.name.clone()),
        namespace: Some(r.namespace.clone()),
        uid: Some(r.uid.clone()),
        creation_timestamp: Some(Time(r.created_at)),
        annotations: {
            let mut a = p.metadata.annotations.clone().unwrap_or_default();
            match r.source {
                Source::File => {
                    a.insert("kubernetes.io/config.source".into(), "file".into());
                    a.insert(
                        "kubernetes.io/config.path".into(),
                        r.file.display().to_string(),
                    );
                }
                Source::ApiServer => {
                    a.insert("kubernetes.io/config.source".into(), "api".into());
                }
            }
            a.insert("kubernetes.io/config.hash".into(), r.spec_hash.clone());
            Some(a)
        },
        labels: p.metadata.labels.clone(),
        deletion_timestamp: r.deleted_at.map(Time),
        ..Default::default()
    };
    p.metadata = meta;
    if let Some(s) = p.spec.as_mut() {
        s.node_name = Some(node.to_string());
    }
    let phase = phase(r);
    let mut st = PodStatus {
        phase: Some(phase.into()),
        host_ip: Some(host_ip.to_string()),
        host_ips: None,
        start_time: r.start_time.map(Time),
        ..Default::default()
    };
    if let Some(why) = &r.invalid {
        st.reason = Some(r.failure_reason().to_string());
        st.message = Some(why.clone());
        p.status = Some(st);
        return p;
    }
    if let Some(ip) = &r.pod_ip {
        st.pod_ip = Some(ip.clone());
        st.pod_ips = Some(vec![PodIP { ip: ip.clone() }]);
    }
    let init_statuses: Vec<ContainerStatus> = r
        .init
        .iter()
        .map(|c| container_status(r, c, true))
        .collect();
    let statuses: Vec<ContainerStatus> = r
        .containers
        .iter()
        .map(|c| container_status(r, c, false))
        .collect();
    let incomplete: Vec<&str> = r
        .init
        .iter()
        .filter(|c| c.terminated().is_none_or(|t| t.exit_code != 0))
        .map(|c| c.name.as_str())
        .collect();
    let unready: Vec<&str> = statuses
        .iter()
        .filter(|s| !s.ready)
        .map(|s| s.name.as_str())
        .collect();
    let done = r.finished;
    let (ready, reason, msg) = if done {
        (false, Some("PodCompleted".to_string()), None)
    } else if unready.is_empty() {
        (true, None, None)
    } else {
        (
            false,
            Some("ContainersNotReady".to_string()),
            Some(format!(
                "containers with unready status: [{}]",
                unready.join(" ")
            )),
        )
    };
    let sandbox_ready = r.sandbox.as_ref().is_some_and(|s| s.complete);
    let init_ok = incomplete.is_empty();
    st.conditions = Some(vec![
        condition(r, "PodReadyToStartContainers", sandbox_ready, None, None),
        if init_ok {
            condition(r, "Initialized", true, None, None)
        } else {
            condition(
                r,
                "Initialized",
                false,
                Some("ContainersNotInitialized".into()),
                Some(format!(
                    "containers with incomplete status: [{}]",
                    incomplete.join(" ")
                )),
            )
        },
        condition(r, "Ready", ready, reason.clone(), msg.clone()),
        condition(r, "ContainersReady", ready, reason, msg),
        condition(r, "PodScheduled", true, None, None),
    ]);
    if !init_statuses.is_empty() {
        st.init_container_statuses = Some(init_statuses);
    }
    st.container_statuses = Some(statuses);
    if let Some(e) = &r.sandbox_error {
        st.message = Some(e.clone());
    }
    if let Some(f) = &r.failure {
        st.reason = Some(f.reason.to_string());
        st.message = Some(f.message.clone());
    }
    st.qos_class = Some(qos(&p).into());
    p.status = Some(st);
    p
}

/// The pod's QoS class, as the API server computes it.
fn qos(p: &Pod) -> &'static str {
    let Some(spec) = &p.spec else {
        return "BestEffort";
    };
    let all: Vec<_> = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .collect();
    let any = all.iter().any(|c| {
        c.resources.as_ref().is_some_and(|r| {
            r.limits.as_ref().is_some_and(|l| !l.is_empty())
                || r.requests.as_ref().is_some_and(|l| !l.is_empty())
        })
    });
    if !any {
        return "BestEffort";
    }
    let guaranteed = all.iter().all(|c| {
        let Some(r) = &c.resources else { return false };
        ["cpu", "memory"].iter().all(|k| {
            let l = r.limits.as_ref().and_then(|m| m.get(*k));
            let q = r.requests.as_ref().and_then(|m| m.get(*k)).or(l);
            l.is_some() && l == q
        })
    });
    if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// `kubectl get pods`' STATUS column for a pod (kubectl's printPod).
pub fn display_status(p: &Pod) -> String {
    if p.metadata.deletion_timestamp.is_some() {
        return "Terminating".into();
    }
    let st = p.status.clone().unwrap_or_default();
    let mut reason = st
        .reason
        .clone()
        .unwrap_or_else(|| st.phase.clone().unwrap_or_default());
    let inits = st.init_container_statuses.clone().unwrap_or_default();
    let n_init = inits.len();
    let mut initializing = false;
    for (i, c) in inits.iter().enumerate() {
        let s = c.state.clone().unwrap_or_default();
        if let Some(t) = &s.terminated {
            if t.exit_code == 0 {
                continue;
            }
            reason = match &t.reason {
                Some(r) if !r.is_empty() => format!("Init:{r}"),
                _ => match t.signal {
                    Some(sig) if sig != 0 => format!("Init:Signal:{sig}"),
                    _ => format!("Init:ExitCode:{}", t.exit_code),
                },
            };
        } else if let Some(w) = s.waiting.as_ref().filter(|w| {
            w.reason
                .as_deref()
                .is_some_and(|r| !r.is_empty() && r != "PodInitializing")
        }) {
            reason = format!("Init:{}", w.reason.clone().unwrap_or_default());
        } else {
            reason = format!("Init:{i}/{n_init}");
        }
        initializing = true;
        break;
    }
    if !initializing {
        let mut has_running = false;
        for c in st.container_statuses.iter().flatten().rev() {
            let s = c.state.clone().unwrap_or_default();
            if let Some(w) = s
                .waiting
                .as_ref()
                .and_then(|w| w.reason.clone())
                .filter(|r| !r.is_empty())
            {
                reason = w;
            } else if let Some(t) = &s.terminated {
                reason = match &t.reason {
                    Some(r) if !r.is_empty() => r.clone(),
                    _ => match t.signal {
                        Some(sig) if sig != 0 => format!("Signal:{sig}"),
                        _ => format!("ExitCode:{}", t.exit_code),
                    },
                };
            } else if c.ready && s.running.is_some() {
                has_running = true;
            }
        }
        if reason == "Completed" && has_running {
            reason = "Running".into();
        }
    }
    reason
}

/// READY column: ready/total app containers.
pub fn ready_column(p: &Pod) -> String {
    let st = p.status.clone().unwrap_or_default();
    let cs = st.container_statuses.unwrap_or_default();
    let total = p.spec.as_ref().map_or(cs.len(), |s| s.containers.len());
    format!("{}/{}", cs.iter().filter(|c| c.ready).count(), total)
}

/// RESTARTS column: the sum, with the age of the last restart.
pub fn restarts_column(p: &Pod) -> String {
    let st = p.status.clone().unwrap_or_default();
    let cs = st.container_statuses.unwrap_or_default();
    let n: i32 = cs.iter().map(|c| c.restart_count).sum();
    let last = cs
        .iter()
        .filter_map(|c| {
            c.last_state
                .as_ref()?
                .terminated
                .as_ref()?
                .finished_at
                .as_ref()
                .map(|t| t.0)
        })
        .max();
    match last {
        Some(t) if n > 0 => format!("{n} ({} ago)", age(t)),
        _ => n.to_string(),
    }
}

/// kubectl's short ages: 5s, 3m, 2h, 4d.
pub fn age(t: jiff::Timestamp) -> String {
    let s = (jiff::Timestamp::now().as_second() - t.as_second()).max(0);
    match s {
        0..120 => format!("{s}s"),
        120..7200 => format!("{}m", s / 60),
        7200..172800 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

#[cfg(test)]
#[path = "pod_status_tests.rs"]
mod tests;
