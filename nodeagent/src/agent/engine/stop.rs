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
use super::{bundle, container, grace_period, sandbox, Local, Msg};
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
                stop_instance(agent, inst, grace).await;
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
    let term = Terminated {
        exit_code: exit.exit_code,
        signal: exit.signal,
        reason,
        message: exit.error.clone(),
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

pub fn stop_probes(local: &mut Local, id: &str) {
    if let Some(hs) = local.probes.remove(id) {
        hs.iter().for_each(|h| h.abort());
    }
}

/// SIGTERM, up to `grace` for the exit, then SIGKILL; returns once the
/// instance's exit is recorded (by its monitor or the watcher).
pub async fn stop_instance(agent: &Arc<Agent>, inst: &Instance, grace: Duration) {
    let exit_file = inst.dir.join("exit.json");
    let gone = || exit_file.exists();
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
            let agent = agent.clone();
            stops.push(tokio::spawn(async move {
                stop_instance(&agent, &inst, grace).await
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
    sandbox::remove_volumes(agent, &rec);
    let layout = agent.cfg.layout();
    let _ = std::fs::remove_dir_all(layout.pod_logs(&rec));
    let _ = std::fs::remove_dir_all(layout.pod_dir(uid));
}
