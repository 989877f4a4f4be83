//! The pod worker: one task per pod that drives it towards its spec.
//!
//! Like kubelet's `SyncPod`, each pass of the loop looks at the record and
//! does the next thing needed: make the sandbox; run the init containers
//! one at a time, each to successful completion; start every app
//! container ([`super::start`]); restart exited containers as
//! `restartPolicy` says, held back by the CrashLoopBackOff delay
//! ([`crate::backoff`]); and when nothing will run again, take the sandbox
//! down (the pod is Succeeded or Failed). Then it sleeps until a container
//! exits, a probe asks for a restart, a back-off ends, or the pod is
//! stopped; stopping is [`super::stop`].

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::mpsc;

use super::super::events::Kind as EventKind;
use super::super::Agent;
use super::start::{start_if_due, Due};
use super::{adopt, deadline, grace_period, projected, restart_policy, sandbox, stop, Local, Msg};

/// The worker of pod `uid`: adopt what a previous agent left, then sync
/// the pod pass after pass, handling what `rx` brings in between, until
/// the pod is stopped; then tear it down and forget it. `tx` is the
/// worker's own sender, handed to the watchers and probes it starts.
pub async fn run(
    agent: Arc<Agent>,
    uid: String,
    tx: mpsc::UnboundedSender<Msg>,
    mut rx: mpsc::UnboundedReceiver<Msg>,
) {
    let mut local = Local::default();
    let Some(rec) = agent.status.record(&uid) else {
        return;
    };
    if let Some(why) = &rec.invalid {
        agent.event(&uid, EventKind::Warning, "FailedCreate", why.clone(), None);
        while let Some(m) = rx.recv().await {
            if matches!(m, Msg::Stop { .. }) {
                break;
            }
        }
        finish(&agent, &uid, &tx);
        return;
    }
    // The steps are boxed: a future is as large as its largest await, and
    // this one lives as long as the pod, mostly waiting for a message. Boxed,
    // a step's ~24 KiB of state exists only while the step runs.
    Box::pin(adopt::adopt(&agent, &uid, &tx, &mut local, &rec)).await;
    Box::pin(adopt::check_network(&agent, &uid, &tx, &rec)).await;
    drop(rec);
    loop {
        let wake = if agent.status.record(&uid).is_some_and(|r| r.terminating) {
            break;
        } else {
            Box::pin(sync(&agent, &uid, &tx, &mut local)).await
        };
        let msg = match wake {
            Some(d) => tokio::select! {
                m = rx.recv() => m,
                _ = tokio::time::sleep(d) => Some(Msg::Wake),
            },
            None => rx.recv().await,
        };
        let Some(msg) = msg else { break };
        Box::pin(handle(&agent, &uid, &tx, &mut local, msg)).await;
        // Take every message already queued before the next pass.
        while let Ok(m) = rx.try_recv() {
            Box::pin(handle(&agent, &uid, &tx, &mut local, m)).await;
        }
    }
    Box::pin(stop::teardown(&agent, &uid, &tx, &mut rx, &mut local)).await;
    finish(&agent, &uid, &tx);
}

async fn handle(
    agent: &Arc<Agent>,
    uid: &str,
    tx: &mpsc::UnboundedSender<Msg>,
    local: &mut Local,
    msg: Msg,
) {
    match msg {
        Msg::Exited { id } => stop::exited(agent, uid, tx, local, &id).await,
        Msg::Kill { id, reason, grace } => {
            let Some(rec) = agent.status.record(uid) else {
                return;
            };
            let Some(c) = rec
                .containers
                .iter()
                .find(|c| c.current.as_ref().is_some_and(|i| i.id == id))
            else {
                return;
            };
            let field = format!("spec.containers{{{}}}", c.name);
            agent.event(uid, EventKind::Normal, "Killing", reason, Some(&field));
            stop::stop_probes(local, &id);
            let grace = grace.unwrap_or_else(|| grace_period(&rec));
            if let Some(inst) = c.current.clone() {
                let hook = stop::pre_stop_of(agent, &rec, &inst);
                stop::stop_instance(agent, &inst, grace, hook).await;
            }
        }
        Msg::Stop { grace } => {
            agent.status.update(uid, |r| {
                r.terminating = true;
                r.deleted_at.get_or_insert_with(Timestamp::now);
                if let Some(g) = grace {
                    r.deletion_grace = Some(g.as_secs());
                }
            });
        }
        Msg::Wake => {}
    }
}

/// The worker is done: forget the pod (unless a new worker took over).
fn finish(agent: &Arc<Agent>, uid: &str, tx: &mpsc::UnboundedSender<Msg>) {
    if agent.engine.finished(uid, tx) {
        crate::agent::heap::work_done();
        agent.traces.end(uid);
        if let Some(r) = agent.status.remove(uid) {
            // Its probes' counters go with it, as kubelet's prober workers
            // delete their metric labels when they stop; unless a new pod
            // of the same name runs already (they are counted by name).
            if agent.status.find(&r.namespace, &r.name).is_none() {
                agent.metrics().forget_pod(&r.namespace, &r.name);
            }
        }
    }
}

/// One pass; returns how long to sleep at most before the next.
async fn sync(
    agent: &Arc<Agent>,
    uid: &str,
    tx: &mpsc::UnboundedSender<Msg>,
    local: &mut Local,
) -> Option<Duration> {
    let rec = agent.status.record(uid)?;
    if rec.finished {
        return None;
    }
    // Projected volumes (secrets, config maps, the downward API, tokens)
    // are fetched while the sandbox is made, and written before any
    // container starts; their task keeps them current after.
    if projected::has_projected(&rec) && local.volumes.is_none() {
        local.volumes = Some(projected::VolumeTask::start(agent, uid, tx.clone()));
    }
    if rec.sandbox.is_none() {
        // Recorded first, so that a kill half-way is undone on adoption.
        let (rec, plan) = agent.status.update(uid, |r| {
            r.sandbox_count += 1;
            let plan = sandbox::plan(agent, r);
            r.sandbox = Some(plan.clone());
            (r.clone(), plan)
        })?;
        agent.traces.begin(uid, &rec.namespace, &rec.name);
        match sandbox::create(agent, &rec, plan).await {
            Ok(sb) => {
                let ip = match &sb.cni_result {
                    Some(r) => crate::cni::pod_ip(r),
                    None => Some(agent.host_ip.clone()),
                };
                adopt::watch_sandbox(agent, tx, &sb);
                agent.status.update(uid, |r| {
                    r.sandbox = Some(sb);
                    r.pod_ip = ip;
                    r.sandbox_error = None;
                    r.start_time.get_or_insert_with(Timestamp::now);
                    r.set_condition("PodReadyToStartContainers", true, None);
                });
            }
            Err(e) => {
                agent.event(
                    uid,
                    EventKind::Warning,
                    "FailedCreatePodSandBox",
                    e.clone(),
                    None,
                );
                agent.status.update(uid, |r| {
                    r.sandbox = None;
                    r.sandbox_error = Some(e);
                    r.set_condition("PodReadyToStartContainers", false, None);
                });
                return Some(Duration::from_secs(5));
            }
        }
    }
    if let Some(task) = &local.volumes {
        if !*task.ready.borrow() {
            // The task wakes the worker when they are there.
            return Some(Duration::from_secs(5));
        }
    }
    let until = match deadline::check(agent, uid, local).await {
        deadline::Deadline::Exceeded(wait) => return wait,
        deadline::Deadline::Ahead(d) => d,
    };
    let rec = agent.status.record(uid)?;
    let policy = restart_policy(&rec).to_string();
    let now = Timestamp::now();
    let mut wake: Option<Duration> = None;
    let mut soonest = |d: Duration| {
        wake = Some(wake.map_or(d, |w: Duration| w.min(d)));
    };
    if let Some(d) = until {
        soonest(d);
    }

    // Init containers, in order, each to success.
    for c in &rec.init {
        if c.current.is_some() {
            return wake;
        }
        if let Some(t) = &c.last_state {
            if t.exit_code == 0 && c.terminated().is_some() {
                continue;
            }
            if policy == "Never" {
                // A failed init container fails the pod.
                return finish_pod(agent, uid, local).await;
            }
        }
        match start_if_due(agent, uid, tx, local, true, &c.name, now).await {
            Due::Started | Due::Failed => return Some(Duration::ZERO),
            Due::Later(d) => soonest(d),
        }
        return wake;
    }
    if !rec.conditions.get("Initialized").is_some_and(|c| c.status) {
        agent
            .status
            .update(uid, |r| r.set_condition("Initialized", true, None));
    }

    // App containers.
    let mut all_done = true;
    for c in &rec.containers {
        if c.current.is_some() {
            all_done = false;
            continue;
        }
        let restart = match &c.last_state {
            None => true,
            Some(t) => match policy.as_str() {
                "Always" => true,
                "OnFailure" => t.exit_code != 0,
                _ => false,
            },
        };
        if !restart {
            continue;
        }
        all_done = false;
        match start_if_due(agent, uid, tx, local, false, &c.name, now).await {
            Due::Started => {}
            Due::Failed => soonest(Duration::ZERO),
            Due::Later(d) => soonest(d),
        }
    }
    if all_done {
        return finish_pod(agent, uid, local).await;
    }
    if !local.latency_recorded {
        if let Some(r) = agent.status.record(uid) {
            if r.containers.iter().all(|c| c.running()) {
                local.latency_recorded = true;
                let secs = (Timestamp::now().as_millisecond() - r.created_at.as_millisecond())
                    as f64
                    / 1000.0;
                let mut m = agent.metrics();
                m.pod_starts.total += 1;
                m.pod_starts.seconds_sum += secs;
            }
        }
    }
    wake
}

/// Every container is done for good: take the sandbox down.
pub async fn finish_pod(agent: &Arc<Agent>, uid: &str, local: &mut Local) -> Option<Duration> {
    let rec = agent.status.record(uid)?;
    for (id, hs) in local.probes.drain() {
        let _ = id;
        hs.iter().for_each(|h| h.abort());
    }
    if let Some(sb) = &rec.sandbox {
        sandbox::remove(agent, &rec, sb).await;
    }
    agent.status.update(uid, |r| {
        r.sandbox = None;
        r.finished = true;
        r.set_condition("PodReadyToStartContainers", false, None);
    });
    None
}
