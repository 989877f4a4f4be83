//! Container lifecycle hooks: `postStart` and `preStop`
//! (kubelet's pkg/kubelet/lifecycle/handlers.go, and "Container Lifecycle
//! Hooks" in the Kubernetes docs).
//!
//! A hook is a handler like a probe's (a command run in the container, or
//! an HTTP GET) run at one moment of the container's life:
//!
//! - **postStart** right after the container started. kubelet waits for
//!   it before the container counts as running, and a hook that fails
//!   gets the container killed (`FailedPostStartHook`); the restart
//!   policy then decides.
//! - **preStop** before every kill that is not the container's own exit:
//!   a deletion, a failed liveness probe, a pod update. It runs within
//!   the grace period; what is left of it (at least 2 s) then goes to
//!   SIGTERM before SIGKILL. A failure is reported
//!   (`FailedPreStopHook`) and the kill goes on.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Probe};

use super::super::events::Kind as EventKind;
use super::super::state::PodRecord;
use super::super::Agent;
use crate::probe::{self, Outcome, Target};

/// What a preStop hook needs, taken before the container is stopped.
#[derive(Debug, Clone)]
pub struct PreStop {
    /// The container's `lifecycle.preStop` handler (`exec`, `httpGet`,
    /// `tcpSocket` or `sleep`).
    pub handler: LifecycleHandler,
    /// Where the handler reaches the container: the pod's IP and ports, and
    /// the runtime for `exec`.
    pub target: Target,
    /// For the failure event: the pod uid, container and field path.
    pub uid: String,
    /// The container's name.
    pub container: String,
    /// The container's `fieldPath` (`spec.containers{name}`).
    pub field: String,
}

/// Where the hooks of container `c` of the pod reach it.
fn target(agent: &Agent, rec: &PodRecord, c: &Container, id: &str) -> Target {
    Target {
        pod_ip: rec.pod_ip.clone().unwrap_or_default(),
        ports: c.ports.clone().unwrap_or_default(),
        skiff: agent.cfg.runtime.clone(),
        root: agent.cfg.runtime_root(),
        container_id: id.to_string(),
    }
}

/// The preStop hook of container `c` (instance `id`), if it has one.
pub fn pre_stop(
    agent: &Agent,
    rec: &PodRecord,
    c: &Container,
    id: &str,
    field: &str,
) -> Option<PreStop> {
    let handler = c.lifecycle.as_ref()?.pre_stop.clone()?;
    Some(PreStop {
        handler,
        target: target(agent, rec, c, id),
        uid: rec.uid.clone(),
        container: c.name.clone(),
        field: field.to_string(),
    })
}

/// Run a handler, for at most `timeout`.
async fn run(
    agent: &Agent,
    h: &LifecycleHandler,
    t: &Target,
    timeout: Duration,
) -> Result<(), String> {
    if let Some(s) = &h.sleep {
        tokio::time::sleep(Duration::from_secs(s.seconds.max(0) as u64).min(timeout)).await;
        return Ok(());
    }
    let probe = Probe {
        exec: h.exec.clone(),
        http_get: h.http_get.clone(),
        tcp_socket: h.tcp_socket.clone(),
        timeout_seconds: Some(timeout.as_secs().clamp(1, i32::MAX as u64) as i32),
        ..Default::default()
    };
    match probe::attempt(&probe, t, &agent.http).await {
        Outcome::Success => Ok(()),
        Outcome::Failure(e) => Err(e),
    }
}

/// kubelet's words for a failed hook.
fn failure(h: &LifecycleHandler, container: &str, pod: &str, err: &str) -> String {
    match (&h.exec, &h.http_get) {
        (Some(e), _) => format!(
            "Exec lifecycle hook ({:?}) for Container {container:?} in Pod {pod:?} failed - error: {err}",
            e.command.clone().unwrap_or_default()
        ),
        (None, Some(g)) => format!(
            "HTTP lifecycle hook ({}) for Container {container:?} in Pod {pod:?} failed - error: {err}",
            g.path.as_deref().unwrap_or("/")
        ),
        _ => format!("lifecycle hook for Container {container:?} in Pod {pod:?} failed - error: {err}"),
    }
}

fn pod_name(rec: &PodRecord) -> String {
    format!("{}_{}({})", rec.name, rec.namespace, rec.uid)
}

/// Run container `c`'s postStart hook (instance `id`); `Err` with the
/// event message when it failed (the caller kills the container).
pub async fn post_start(
    agent: &Agent,
    rec: &PodRecord,
    c: &Container,
    id: &str,
    field: &str,
) -> Result<(), String> {
    let Some(h) = c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) else {
        return Ok(());
    };
    let t = target(agent, rec, c, id);
    // kubelet gives postStart no deadline of its own; two minutes keeps
    // a stuck hook from holding the pod forever.
    if let Err(e) = run(agent, h, &t, Duration::from_secs(120)).await {
        let msg = failure(h, &c.name, &pod_name(rec), &e);
        agent.event(
            &rec.uid,
            EventKind::Warning,
            "FailedPostStartHook",
            msg.clone(),
            Some(field),
        );
        return Err(msg);
    }
    Ok(())
}

/// Run a preStop hook within `grace`; returns the grace left for SIGTERM
/// (at least 2 s, as kubelet gives).
pub async fn run_pre_stop(agent: &Agent, p: &PreStop, grace: Duration) -> Duration {
    if grace.is_zero() {
        return grace;
    }
    let started = tokio::time::Instant::now();
    if let Err(e) = run(agent, &p.handler, &p.target, grace).await {
        let pod = agent
            .status
            .record(&p.uid)
            .map(|r| pod_name(&r))
            .unwrap_or_default();
        agent.event(
            &p.uid,
            EventKind::Warning,
            "FailedPreStopHook",
            failure(&p.handler, &p.container, &pod, &e),
            Some(&p.field),
        );
    }
    grace
        .saturating_sub(started.elapsed())
        .max(Duration::from_secs(2))
}
