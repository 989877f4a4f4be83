//! Ends: a container instance that exited (recorded, cleaned up, left to
//! the next pass to restart), a pause process that died (kubelet makes a
//! new sandbox, and so new containers), a container stopped on purpose
//! (SIGTERM, the grace period, SIGKILL), and the whole pod taken down.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::mpsc;

use super::super::events::Kind as EventKind;
use super::super::reasons::TerminatedReason;
use super::super::state::{CState, Instance, PodRecord, Terminated};
use super::super::Agent;
use super::{bundle, container, grace_period, hooks, sandbox, Local, Msg};
use crate::monitor::{self, Exited};

/// An instance ended: record how, clean up, and let `sync` decide.
pub async fn exited(
    agent: &Arc<Agent>,
    uid: &str,
    tx: &mpsc::UnboundedSender<Msg>,
    local: &mut Local,
    id: &str,
) {
    let Some(rec) = agent.status.record(uid) else {
        return;
    };
    if rec.sandbox.as_ref().is_some_and(|s| s.id == id) {
        if rec.terminating || rec.finished {
            return;
        }
        // The pause process died: kubelet makes a new sandbox, which means
        // new containers too.
        agent.event(
            uid,
            EventKind::Normal,
            "SandboxChanged",
            "Pod sandbox changed, it will be killed and re-created.".into(),
            None,
        );
        let grace = Duration::ZERO;
        for c in rec.init.iter().chain(&rec.containers) {
            if let Some(inst) = &c.current {
                stop_probes(local, &inst.id);
                stop_instance(agent, inst, grace, None).await;
            }
        }
        if let Some(sb) = &rec.sandbox {
            sandbox::remove(agent, &rec, sb).await;
        }
        agent.status.update(uid, |r| r.sandbox = None);
        // Do not spin if the sandbox keeps dying.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let _ = tx.send(Msg::Wake);
        return;
    }
    let found = rec
        .init
        .iter()
        .map(|c| (true, c))
        .chain(rec.containers.iter().map(|c| (false, c)))
        .find(|(_, c)| c.current.as_ref().is_some_and(|i| i.id == id));
    let Some((init, c)) = found else {
        tracing::debug!("pod {}: exit of unknown instance {id}", rec.key());
        return;
    };
    let inst = c.current.clone().expect("found by its instance");
    tracing::debug!("pod {}: container {} ({id}) exited", rec.key(), c.name);
    stop_probes(local, id);
    let exit: Exited = monitor::read_json(&inst.dir.join("exit.json")).unwrap_or(Exited {
        exit_code: 255,
        signal: None,
        started_at: Some(inst.started_at),
        finished_at: Timestamp::now(),
        error: Some("exit status lost".into()),
    });
    let oom = container::oom_killed(&format!("{}/{id}", sandbox::cgroup_parent(uid)), id);
    let reason = if oom {
        TerminatedReason::OomKilled
    } else if exit.exit_code == 0 {
        TerminatedReason::Completed
    } else {
        TerminatedReason::Error
    };
    let message = exit
        .error
        .clone()
        .or_else(|| termination_message(&rec, init, &c.name, &inst, exit.exit_code));
    let term = Terminated {
        exit_code: exit.exit_code,
        signal: exit.signal,
        reason,
        message,
        started_at: exit.started_at.or(Some(inst.started_at)),
        finished_at: exit.finished_at,
        container_id: Some(format!("skiff://{id}")),
    };
    bundle::cleanup_instance(agent, id, &inst.bundle, &inst.dir).await;
    agent.status.update(uid, |r| {
        if let Some(c) = r.container_mut(init, &c.name) {
            c.previous = c.last_state.take();
            c.last_state = Some(term.clone());
            c.state = CState::Terminated(term);
            c.current = None;
            c.ready = false;
            c.started = false;
        }
    });
}

/// Most bytes of a termination message (kubelet's 4096), and of the log
/// tail used instead with `FallbackToLogsOnError` (2048, 80 lines).
const MESSAGE_MAX: usize = 4096;
const LOG_TAIL_MAX: usize = 2048;
const LOG_TAIL_LINES: usize = 80;

/// The container's termination message: what it wrote to its
/// `terminationMessagePath`, or with `FallbackToLogsOnError` and a failed
/// exit, the end of its log (kubelet's `findContainerStatus` rules).
fn termination_message(
    rec: &PodRecord,
    init: bool,
    name: &str,
    inst: &Instance,
    exit_code: i32,
) -> Option<String> {
    let spec = super::container_spec(rec, init, name)?;
    let from_file = Some(bundle::termination_message_path(&spec))
        .filter(|p| !p.is_empty())
        .and_then(|_| std::fs::read(bundle::termination_log(&inst.dir)).ok())
        .filter(|d| !d.is_empty())
        .map(|mut d| {
            d.truncate(MESSAGE_MAX);
            String::from_utf8_lossy(&d).into_owned()
        });
    if from_file.is_some() {
        return from_file;
    }
    if spec.termination_message_policy.as_deref() != Some("FallbackToLogsOnError") || exit_code == 0
    {
        return None;
    }
    let log = std::fs::read_to_string(&inst.log).ok()?;
    let lines: Vec<String> = log
        .lines()
        .filter_map(|l| crate::cri_log::parse(l).map(|r| r.text.to_string()))
        .collect();
    let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
    let start = tail.len().saturating_sub(LOG_TAIL_MAX);
    let start = (start..=tail.len())
        .find(|i| tail.is_char_boundary(*i))
        .unwrap_or(0);
    Some(tail[start..].to_string()).filter(|t| !t.is_empty())
}

/// Abort the probes of instance `id` (a container id).
pub fn stop_probes(local: &mut Local, id: &str) {
    if let Some(hs) = local.probes.remove(id) {
        hs.iter().for_each(|h| h.abort());
    }
}

/// The preStop hook of the container whose instance is `inst`.
pub fn pre_stop_of(agent: &Agent, rec: &PodRecord, inst: &Instance) -> Option<hooks::PreStop> {
    let (init, c) = rec
        .init
        .iter()
        .map(|c| (true, c))
        .chain(rec.containers.iter().map(|c| (false, c)))
        .find(|(_, c)| c.current.as_ref().is_some_and(|i| i.id == inst.id))?;
    let spec = super::container_spec(rec, init, &c.name)?;
    hooks::pre_stop(
        agent,
        rec,
        &spec,
        &inst.id,
        &super::start::field_path(init, &c.name),
    )
}

/// The preStop hook (if any) within `grace`, then SIGTERM, up to what is
/// left of `grace` for the exit, then SIGKILL; returns once the
/// instance's exit is recorded (by its monitor or the watcher).
pub async fn stop_instance(
    agent: &Arc<Agent>,
    inst: &Instance,
    grace: Duration,
    pre_stop: Option<hooks::PreStop>,
) {
    let exit_file = inst.dir.join("exit.json");
    let gone = || exit_file.exists();
    let grace = match pre_stop {
        Some(p) if !gone() => hooks::run_pre_stop(agent, &p, grace).await,
        _ => grace,
    };
    if !gone() {
        container::signal(agent, &inst.id, "TERM").await;
        let deadline = tokio::time::Instant::now() + grace;
        while !gone() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    if !gone() {
        container::signal(agent, &inst.id, "KILL").await;
        for _ in 0..500 {
            if gone() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Stop everything the pod has, within its grace period.
pub async fn teardown(
    agent: &Arc<Agent>,
    uid: &str,
    tx: &mpsc::UnboundedSender<Msg>,
    rx: &mut mpsc::UnboundedReceiver<Msg>,
    local: &mut Local,
) {
    let Some(rec) = agent.status.record(uid) else {
        return;
    };
    for (_, hs) in local.probes.drain() {
        hs.iter().for_each(|h| h.abort());
    }
    let grace = grace_period(&rec);
    let mut stops = Vec::new();
    for (init, c) in rec
        .init
        .iter()
        .map(|c| (true, c))
        .chain(rec.containers.iter().map(|c| (false, c)))
    {
        if let Some(inst) = c.current.clone() {
            let field = format!(
                "spec.{}{{{}}}",
                if init { "initContainers" } else { "containers" },
                c.name
            );
            agent.event(
                uid,
                EventKind::Normal,
                "Killing",
                format!("Stopping container {}", c.name),
                Some(&field),
            );
            let hook = pre_stop_of(agent, &rec, &inst);
            let agent = agent.clone();
            stops.push(tokio::spawn(async move {
                stop_instance(&agent, &inst, grace, hook).await
            }));
        }
    }
    for s in stops {
        let _ = s.await;
    }
    // Record the exits (the watchers report them).
    let running = |r: &PodRecord| {
        r.init
            .iter()
            .chain(&r.containers)
            .filter(|c| c.current.is_some())
            .count()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while agent.status.record(uid).is_some_and(|r| running(&r) > 0)
        && tokio::time::Instant::now() < deadline
    {
        match tokio::time::timeout(Duration::from_millis(200), rx.recv()).await {
            Ok(Some(Msg::Exited { id })) => exited(agent, uid, tx, local, &id).await,
            Ok(None) => break,
            _ => {}
        }
    }
    let Some(rec) = agent.status.record(uid) else {
        return;
    };
    for c in rec.init.iter().chain(&rec.containers) {
        if let (None, Some(l)) = (&c.current, &c.launching) {
            bundle::cleanup_instance(agent, &l.id, &l.bundle, &l.monitor_dir).await;
        }
        if let Some(inst) = &c.current {
            tracing::warn!(
                "pod {}: container {} ({}) did not stop; cleaning up",
                rec.key(),
                c.name,
                inst.id
            );
            bundle::cleanup_instance(agent, &inst.id, &inst.bundle, &inst.dir).await;
        }
    }
    if let Some(sb) = &rec.sandbox {
        sandbox::remove(agent, &rec, sb).await;
    }
    // Volumes: their task stops, the objects they followed are no longer
    // watched for this pod, and their files (secrets, tokens) go.
    local.volumes = None;
    if let Some(n) = &agent.node {
        n.objects.release(uid);
    }
    sandbox::remove_volumes(agent, &rec);
    let layout = agent.cfg.layout();
    let _ = std::fs::remove_dir_all(layout.pod_logs(&rec));
    let _ = std::fs::remove_dir_all(layout.pod_dir(uid));
}
