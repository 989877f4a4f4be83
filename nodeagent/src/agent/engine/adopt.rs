//! Picking up what a previous agent left running: the sandbox and every
//! container instance of a pod's record are watched again, and probes of
//! running app containers restarted where they were (started, ready). An
//! adopted sandbox's network is checked with CNI CHECK.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::mpsc;

use super::super::events::Kind as EventKind;
use super::super::state::{self, Instance, Launching, PodRecord};
use super::super::Agent;
use super::{bundle, container, container_spec, probes, sandbox, start, Local, Msg};
use crate::monitor::{read_json, Started};

/// Pick up what a previous agent left running; undo what it left half
/// made.
pub async fn adopt(
    agent: &Arc<Agent>,
    uid: &str,
    tx: &mpsc::UnboundedSender<Msg>,
    local: &mut Local,
    rec: &PodRecord,
) {
    match &rec.sandbox {
        Some(sb) if !sb.complete => {
            tracing::info!(
                "pod {}: removing the sandbox a previous agent left half made",
                rec.key()
            );
            sandbox::remove(agent, rec, sb).await;
            agent.status.update(uid, |r| r.sandbox = None);
        }
        Some(sb) => watch_sandbox(agent, tx, sb),
        None => {}
    }
    for (init, c) in rec
        .init
        .iter()
        .map(|c| (true, c))
        .chain(rec.containers.iter().map(|c| (false, c)))
    {
        if let (None, Some(l)) = (&c.current, &c.launching) {
            settle_launch(agent, rec, init, &c.name, l).await;
        }
    }
    let Some(rec) = &agent.status.record(uid) else {
        return;
    };
    let pod_ip = rec.pod_ip.clone().unwrap_or_default();
    for (init, list) in [(true, &rec.init), (false, &rec.containers)] {
        for c in list {
            let Some(inst) = &c.current else { continue };
            container::watch(
                agent,
                tx.clone(),
                inst.id.clone(),
                inst.dir.clone(),
                inst.pid,
                inst.monitor_pid,
                Some(inst.log.clone()),
            );
            if !init {
                if let Some(spec) = container_spec(rec, false, &c.name) {
                    let h = probes::start_probes(
                        agent, uid, tx, &spec, inst, &pod_ip, c.started, c.ready, false,
                    );
                    local.probes.insert(inst.id.clone(), h);
                }
            }
        }
    }
}

/// An adopted sandbox's network is verified with CNI CHECK; if the
/// plugins find it broken (a veth or address gone while the agent was
/// down), the sandbox is replaced as if its pause process had died.
pub async fn check_network(
    agent: &Arc<Agent>,
    uid: &str,
    tx: &mpsc::UnboundedSender<Msg>,
    rec: &PodRecord,
) {
    let (Some(sb), Ok(cni)) = (&rec.sandbox, &agent.cni) else {
        return;
    };
    let (Some(netns), Some(result)) = (&sb.netns, &sb.cni_result) else {
        return;
    };
    let a = sandbox::attachment(rec, netns, &sb.id);
    if let Err(e) = cni.check(&a, result).await {
        agent.event(
            uid,
            EventKind::Warning,
            "FailedCNICheck",
            e.to_string(),
            None,
        );
        let _ = tx.send(Msg::Exited { id: sb.id.clone() });
    }
}

/// Watch the sandbox's pause container: its end is the sandbox's end. A
/// pause an older agent started under a monitor is watched through it, as
/// any container; since then the pause runs without one
/// ([`super::sandbox`]), and is watched itself.
pub fn watch_sandbox(agent: &Arc<Agent>, tx: &mpsc::UnboundedSender<Msg>, sb: &state::Sandbox) {
    if sb.monitor_pid > 0 {
        container::watch(
            agent,
            tx.clone(),
            sb.id.clone(),
            sb.dir.join("monitor"),
            sb.pid,
            sb.monitor_pid,
            None,
        );
    } else {
        container::watch_unmonitored(tx.clone(), sb.id.clone(), sb.pid);
    }
}

/// A start the previous agent did not see through: if its container runs,
/// it becomes the current instance (and the start counts now); if not,
/// what the attempt made is removed and the container will start again,
/// with nothing counted. A monitor still creating the container is given
/// time to say how it went.
async fn settle_launch(agent: &Arc<Agent>, rec: &PodRecord, init: bool, name: &str, l: &Launching) {
    let monitor_pid = crate::monitor::read_pid(&l.monitor_dir).unwrap_or(0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let started = loop {
        let started: Option<Started> = read_json(&l.monitor_dir.join("state.json"));
        let exited = l.monitor_dir.join("exit.json").exists();
        if started.is_some() || exited || !container::alive(monitor_pid) {
            break started.filter(|s| !exited && container::alive(s.pid));
        }
        if tokio::time::Instant::now() > deadline {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let Some(s) = started else {
        tracing::info!("pod {}: removing the unfinished start {}", rec.key(), l.id);
        if monitor_pid > 0 {
            container::signal(agent, &l.id, "KILL").await;
        }
        bundle::cleanup_instance(agent, &l.id, &l.bundle, &l.monitor_dir).await;
        agent.status.update(&rec.uid, |r| {
            if let Some(c) = r.container_mut(init, name) {
                c.launching = None;
            }
        });
        return;
    };
    tracing::info!(
        "pod {}: adopting {} (started while the agent was away)",
        rec.key(),
        l.id
    );
    let inst = Instance {
        id: l.id.clone(),
        bundle: l.bundle.clone(),
        dir: l.monitor_dir.clone(),
        log: l.log.clone(),
        pid: s.pid,
        monitor_pid,
        started_at: s.started_at,
    };
    let has_startup = container_spec(rec, init, name).is_some_and(|c| c.startup_probe.is_some());
    let backoff = agent.cfg.restart_backoff;
    agent.status.update(&rec.uid, |r| {
        if let Some(c) = r.container_mut(init, name) {
            start::become_current(
                c,
                &backoff,
                Timestamp::now(),
                &l.image_id,
                l.restart,
                inst,
                has_startup,
            );
        }
    });
}
